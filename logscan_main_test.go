package credentialsexchange_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyhook/caddyhook/internal/logscan"
	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// logSinkEnv names the file that globalOptions has every Caddy config of
// the tests log into, at debug level, for TestMain's scan.
const logSinkEnv = "CADDYHOOK_TEST_LOG_SINK"

// TestMain runs the package's tests with all they log captured: standard
// error (Caddy's default logger, at the level each test sets), and a debug
// sink that every Caddy config made with globalOptions (and
// TestMetricsAndExchangeLog's) writes to. Afterwards the capture is scanned
// for JWTs, the client secrets of every internal/oauthserver the tests
// started, and the secret values the tests configure; any finding fails the
// run, naming the line (masked). internal/logscan's own tests show the
// scan catches a planted token.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddyhook-logscan")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sink := filepath.Join(dir, "caddy.log")
	os.Setenv(logSinkEnv, sink)
	code := logscan.Main(m, func() []string {
		return append(oauthserver.ClientSecrets(), configuredSecrets()...)
	}, sink)
	os.Remove(dir) // only when empty: a failed scan keeps the sink
	os.Exit(code)
}

// configuredSecrets are the secret values the package's tests configure:
// those logscan finds in the test sources, and the distinctive ones of
// TestMetricsAndExchangeLog.
func configuredSecrets() []string {
	return append(logscan.ConfiguredSecrets("*_test.go"), obsOKSecret, obsDenySecret, obsThrowSecret, obsHookSecret)
}
