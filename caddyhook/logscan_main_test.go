package caddyhook

import (
	"fmt"
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
	capture, err := logscan.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	captured := capture.Stop()
	if logscan.Fuzzing() {
		os.Remove(captured)
		os.Exit(code)
	}
	if logscan.Check(os.Stderr, []string{captured}, logscan.ConfiguredSecrets("*_test.go")) {
		os.Remove(captured)
	} else {
		fmt.Fprintln(os.Stderr, "logscan: the capture is kept for a look")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
