package credentialsexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyhook/caddyhook/caddyhook"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestExchangeLogBoundsQuotedText: the cause and error_description of the
// exchange log line may quote what the upstream or the client chose (here a
// 100 KiB Content-Type and parameter name); the line keeps them bounded.
func TestExchangeLogBoundsQuotedText(t *testing.T) {
	huge := strings.Repeat("x", 100<<10)
	core, logs := observer.New(zapcore.InfoLevel)
	rec := &exchangeRecord{start: time.Now(), counted: true}
	rec.fail(httptest.NewRecorder(), 400, "invalid_request", "parameter "+huge+": not a string",
		upstreamErrorf("upstream token response is %q, not JSON", huge))
	rec.finish(zap.New(core), metrics())

	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log lines, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	for _, name := range []string{"cause", "error_description"} {
		v, _ := fields[name].(string)
		if v == "" {
			t.Errorf("no %s field", name)
		}
		if len(v) > 4<<10 {
			t.Errorf("%s is %d bytes", name, len(v))
		}
	}
}

// TestScriptErrorStatus: every OAuth error the scripts can produce is
// answered with the status caddyhook.Error carried before the root mapped
// codes to statuses itself: 400 for the client's errors (the injected
// InvalidRequestError and InvalidScopeError, api.access.deny with their
// codes), 500 for everything else, a deny code that is not ours included.
func TestScriptErrorStatus(t *testing.T) {
	const hookSrc = `module.exports = function (client, scope, audience, context, cb) { cb(new %s('refused')); };`
	const actionSrc = `exports.onExecuteCredentialsExchange = async (event, api) => { api.access.deny(%q, 'refused'); };`
	for _, tc := range []struct {
		kind   caddyhook.Kind
		src    string
		code   string
		status int
	}{
		{caddyhook.HookKind, fmt.Sprintf(hookSrc, "InvalidRequestError"), codeInvalidRequest, 400},
		{caddyhook.HookKind, fmt.Sprintf(hookSrc, "InvalidScopeError"), caddyhook.CodeInvalidScope, 400},
		{caddyhook.HookKind, fmt.Sprintf(hookSrc, "ServerError"), codeServerError, 500},
		{caddyhook.HookKind, fmt.Sprintf(hookSrc, "ExtensibilityUserError"), codeServerError, 500},
		{caddyhook.HookKind, fmt.Sprintf(hookSrc, "Error"), codeServerError, 500},
		{caddyhook.ActionKind, fmt.Sprintf(actionSrc, "invalid_request"), codeInvalidRequest, 400},
		{caddyhook.ActionKind, fmt.Sprintf(actionSrc, "invalid_scope"), caddyhook.CodeInvalidScope, 400},
		{caddyhook.ActionKind, fmt.Sprintf(actionSrc, "server_error"), codeServerError, 500},
		{caddyhook.ActionKind, fmt.Sprintf(actionSrc, "access_denied"), codeServerError, 500},
		{caddyhook.ActionKind, fmt.Sprintf(actionSrc, "unauthorized_client"), codeServerError, 500},
	} {
		t.Run(tc.src, func(t *testing.T) {
			s, err := caddyhook.Compile("script.js", []byte(tc.src), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			cfg := caddyhook.Config{Hook: s, Logger: zap.NewNop()}
			if tc.kind == caddyhook.ActionKind {
				cfg = caddyhook.Config{Actions: []*caddyhook.Script{s}, Logger: zap.NewNop()}
			}
			e, err := caddyhook.NewEngine(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			_, err = e.Run(context.Background(), &caddyhook.Input{})
			if err == nil {
				t.Fatal("the script's refusal did not fail the run")
			}
			w := httptest.NewRecorder()
			rec := &exchangeRecord{start: time.Now(), counted: true}
			rec.failWith(w, err)
			var body struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != tc.status || body.Error != tc.code || rec.status != tc.status || rec.code != tc.code {
				t.Fatalf("answered %d %q (recorded %d %q), want %d %q", w.Code, body.Error, rec.status, rec.code, tc.status, tc.code)
			}
		})
	}
	// A code caddyhook never produces is still never blamed on the client.
	for _, code := range []string{"", "access_denied", "invalid_client"} {
		if got := oauthStatus(code); got != 500 {
			t.Errorf("oauthStatus(%q) = %d, want 500", code, got)
		}
	}
}
