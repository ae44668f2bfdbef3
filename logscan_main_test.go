package credentialsexchange_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	capture, err := logscan.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	captured := capture.Stop()
	secrets := append(oauthserver.ClientSecrets(), configuredSecrets()...)
	if logscan.Check(os.Stderr, []string{captured, sink}, secrets) {
		os.Remove(captured)
		os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "logscan: the files are kept for a look")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// secretPatterns find the secret values the tests configure, in their
// sources: Caddyfile secret lines, Secrets and ActionSecrets literals, and
// environment variables named as secrets. Placeholders ({env.X}) are not
// values; values shorter than logscan.MinSecretLen are not looked for.
var secretPatterns = []*regexp.Regexp{
	// The value ends the Caddyfile line: followed by a quote, a \n or
	// \t escape, or the end of a raw string's line (so prose and error
	// texts such as "secret A already specified" are not taken).
	regexp.MustCompile(`(?m)\bsecret [A-Z][A-Z0-9_]* ([^\s"\\{}]+)(?:["\\]|$)`),
	regexp.MustCompile(`Secrets:\s*map\[string\](?:map\[string\])?string\{[^\n]*?"[^"]*":\s*"([^"{]+)"`),
	regexp.MustCompile(`Setenv\("[A-Z_]*SECRET[A-Z_]*",\s*"([^"]+)"\)`),
	regexp.MustCompile(`(?:Client)?Secret:\s*"([^"]+)"`),
	regexp.MustCompile(`const obs[A-Za-z]*Secret\s*=\s*"([^"]+)"`),
}

func configuredSecrets() []string {
	files, _ := filepath.Glob("*_test.go")
	var out []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, re := range secretPatterns {
			for _, m := range re.FindAllSubmatch(src, -1) {
				out = append(out, string(m[1]))
			}
		}
	}
	return append(out, obsOKSecret, obsDenySecret, obsThrowSecret, obsHookSecret)
}
