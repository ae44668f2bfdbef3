package credentialsexchange

import (
	"net/http"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestClientIDOnceForHookAndLog: an exchange decides its client once, from
// the token (client_id, else azp), else from the request, and the hook and
// the exchange's log line name the same one, whether the hook issues or
// denies.
func TestClientIDOnceForHookAndLog(t *testing.T) {
	up := newTestUpstream(t)
	h := provision(t, &Handler{
		Hook: writeScript(t, `module.exports=function(c,s,a,x,cb){
			if (c.id === 'denied') return cb(new InvalidRequestError('no'));
			cb(null,{'https://t.example/client':c.id})}`),
		UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t),
	})
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	for _, tc := range []struct {
		name string
		set  func(map[string]any)
		want string
	}{
		{"client_id", func(c map[string]any) { c["client_id"] = "from-token" }, "from-token"},
		{"azp", func(c map[string]any) { delete(c, "client_id"); c["azp"] = "from-azp" }, "from-azp"},
		{"neither: the request's", func(c map[string]any) { delete(c, "client_id") }, "svc"},
		{"denied", func(c map[string]any) { c["client_id"] = "denied" }, "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, tc.set))}, formRequest(ccForm))
			if tc.want == "denied" {
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("status %d, want the hook's denial: %s", rec.Code, rec.Body)
				}
			} else if got := string(issuedClaims(t, rec)["https://t.example/client"]); got != `"`+tc.want+`"` {
				t.Errorf("the hook saw client %s, want %q", got, tc.want)
			}
			var lines []observer.LoggedEntry
			for _, e := range logs.TakeAll() {
				if e.Message == "credentials exchange" {
					lines = append(lines, e)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d exchange log lines, want 1", len(lines))
			}
			if got := lines[0].ContextMap()["client_id"]; got != tc.want {
				t.Errorf("the log line names client %v, want %q (the hook's)", got, tc.want)
			}
		})
	}
}
