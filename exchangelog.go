package credentialsexchange

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyhook/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/internal/textcap"
)

// exchangeRecord gathers what one exchange did, for its one log line and
// its count: serveToken fills it as the exchange goes and finish writes it
// out when it is over, whichever way it ended. It holds no token and no
// secret: the scopes, claim names, client ID and audience are what the hook
// saw, and the cause is an error of ours whose text names neither.
type exchangeRecord struct {
	start time.Time
	// counted is set once the request is known to be an exchange (a
	// client credentials request, or one refused as ambiguous), not a
	// grant passed through.
	counted bool
	// clientID, audience and scopeBefore are those the hook saw once its
	// input was built; scopeBefore is nil until then.
	clientID    string
	audience    string
	scopeBefore []string
	result      *caddyhook.Result // nil unless the scripts succeeded

	outcome string
	status  int
	code    string // the OAuth error code sent, "" when issued
	// description is the error_description sent, as the client got it.
	description string
	cause       error
	where       *caddyhook.Location
	panicStack  zap.Field

	upstream, verify, scripts, sign time.Duration
}

// fail answers with an OAuth error caddyhook makes: denied for a 4xx,
// error for a 5xx.
func (rec *exchangeRecord) fail(w http.ResponseWriter, status int, code, description string, cause error) {
	writeOAuthError(w, status, code, description)
	rec.outcome = outcomeDenied
	if status >= 500 {
		rec.outcome = outcomeError
	}
	rec.status, rec.code, rec.description, rec.cause = status, code, description, cause
}

// failUpstream answers a 502 for what the upstream sent.
func (rec *exchangeRecord) failUpstream(w http.ResponseWriter, cause error) {
	writeUpstreamFailure(w)
	rec.outcome, rec.status, rec.code, rec.cause = outcomeUpstreamError, http.StatusBadGateway, codeServerError, cause
}

// failWith answers a failed exchange, never with a token: the scripts' own
// OAuth error, 502 for what the upstream sent, 500 for anything else.
func (rec *exchangeRecord) failWith(w http.ResponseWriter, err error) {
	var hookErr *caddyhook.Error
	var upErr upstreamFailure
	switch {
	case errors.As(err, &hookErr):
		rec.where = hookErr.Where
		rec.fail(w, oauthStatus(hookErr.Code), hookErr.Code, hookErr.Description, nil)
	case errors.As(err, &upErr):
		rec.failUpstream(w, err)
	default:
		rec.fail(w, http.StatusInternalServerError, codeServerError, "the token could not be issued", err)
	}
}

// replayed records the upstream's own error answer, sent on unchanged: a
// denial when it is a 4xx, with the code from its JSON error member; an
// upstream error when it is a 5xx.
func (rec *exchangeRecord) replayed(up *capture) {
	rec.status = up.statusCode()
	rec.outcome = outcomeDenied
	if rec.status >= 500 {
		rec.outcome = outcomeUpstreamError
	}
	var body struct {
		Error string `json:"error"`
	}
	if isJSON(up.header) && json.Unmarshal(up.body.Bytes(), &body) == nil {
		rec.code = textcap.Cap(body.Error, 64)
	}
	if rec.code == "" {
		rec.code = "other"
	}
	rec.cause = errors.New("the upstream's own error answer, passed on")
}

// finish counts the exchange and writes its one log line: info when a
// token went out or the client was denied, error when the exchange failed.
func (rec *exchangeRecord) finish(logger *zap.Logger, m *exchangeMetrics) {
	if rec.outcome == "" { // an answer no branch recorded: a bug
		rec.outcome, rec.code = outcomeError, codeServerError
	}
	m.exchanges.WithLabelValues(rec.outcome, errorLabel(rec.code)).Inc()

	level := zapcore.InfoLevel
	if rec.outcome == outcomeError || rec.outcome == outcomeUpstreamError {
		level = zapcore.ErrorLevel
	}
	ce := logger.Check(level, "credentials exchange")
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 24)
	fields = append(fields,
		zap.String("outcome", rec.outcome),
		zap.Int("status", rec.status),
		zap.String("client_id", textcap.Cap(rec.clientID, 256)),
		zap.String("audience", textcap.Cap(rec.audience, 512)),
	)
	fields = append(fields, scopeField("scope_before", rec.scopeBefore))
	if rec.result != nil {
		claims := make([]string, 0, len(rec.result.Claims))
		for name := range rec.result.Claims {
			claims = append(claims, name)
		}
		slices.Sort(claims)
		fields = append(fields, scopeField("scope_after", rec.result.Scope), zap.Strings("claims_added", claims))
		if rec.result.DroppedTotal > 0 {
			fields = append(fields, zap.Array("claims_dropped", droppedClaims(rec.result.Dropped)),
				zap.Int("claims_dropped_total", rec.result.DroppedTotal))
		}
	}
	if rec.code != "" {
		fields = append(fields, zap.String("error", rec.code))
	}
	// The description and the cause may quote what the client or the
	// upstream sent (a parameter's name, a Content-Type, a kid).
	if rec.description != "" {
		fields = append(fields, zap.String("error_description", textcap.Cap(rec.description, maxLoggedError)))
	}
	if rec.cause != nil {
		fields = append(fields, zap.String("cause", textcap.Cap(rec.cause.Error(), maxLoggedError)))
	}
	if w := rec.where; w != nil {
		fields = append(fields, zap.String("script", w.File), zap.Int("line", w.Line), zap.Int("column", w.Column),
			zap.String("js_stack", w.Stack))
	}
	if rec.panicStack.Key != "" {
		fields = append(fields, rec.panicStack)
	}
	fields = append(fields, zap.Object("duration", durations{rec, time.Since(rec.start)}))
	ce.Write(fields...)
}

// scopeField logs a scope as the token carries it, space-separated; a
// token without a scope logs as an absent field rather than "".
func scopeField(key string, scope []string) zap.Field {
	if scope == nil {
		return zap.Skip()
	}
	return zap.String(key, textcap.Cap(strings.Join(scope, " "), 2048))
}

// durations are the exchange's steps, in seconds as Caddy logs durations;
// a step the exchange did not reach is left out.
type durations struct {
	rec   *exchangeRecord
	total time.Duration
}

func (d durations) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, step := range []struct {
		name string
		d    time.Duration
	}{{"upstream", d.rec.upstream}, {"verify", d.rec.verify}, {"scripts", d.rec.scripts}, {"sign", d.rec.sign}} {
		if step.d > 0 {
			enc.AddDuration(step.name, step.d)
		}
	}
	enc.AddDuration("total", d.total)
	return nil
}

type droppedClaims []caddyhook.DroppedClaim

func (d droppedClaims) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, c := range d {
		_ = enc.AppendObject(droppedClaim(c))
	}
	return nil
}

type droppedClaim caddyhook.DroppedClaim

func (c droppedClaim) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("name", c.Name)
	enc.AddString("reason", c.Reason)
	enc.AddString("script", c.Script)
	return nil
}

// basicClientID is the client ID of HTTP Basic authentication, for a
// request whose body could not be read.
func basicClientID(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok {
		return decodeBasicUser(user)
	}
	return ""
}

// maxLoggedError bounds the error_description and cause of the log line.
const maxLoggedError = 2048

// Interface guards
var (
	_ zapcore.ObjectMarshaler = durations{}
	_ zapcore.ArrayMarshaler  = droppedClaims(nil)
	_ zapcore.ObjectMarshaler = droppedClaim{}
)
