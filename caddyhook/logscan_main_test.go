package caddyhook

import (
	"os"
	"testing"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

// TestMain runs the package's tests with all they log captured: standard
// error, and every logger the tests make (observed and the others tee into
// logscan at debug level, though observer cores print nothing). Afterwards
// the capture is scanned for JWTs and the secret values the tests
// configure; any finding fails the run (see internal/logscan, whose own
// tests show a planted token is caught).
func TestMain(m *testing.M) {
	os.Exit(logscan.Main(m, func() []string { return logscan.ConfiguredSecrets("*_test.go") }))
}
