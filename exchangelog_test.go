package credentialsexchange

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
