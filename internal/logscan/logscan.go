// Package logscan finds tokens and secrets in log output: the check behind
// the rule that no log line holds an access token, a client secret or a
// secret's value. Test binaries capture what they log with Capture and
// fail when Scan finds anything in it. What is captured is standard error
// and the loggers made with Core, Tee or Logger; t.Log is not (the testing
// package drops a passing test's t.Log output, and -v writes it to
// standard output), so a test must not rely on t.Log being scanned.
package logscan

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// MinSecretLen is the shortest secret Scan looks for: a shorter value
// ("s", "eu") occurs in ordinary text and would make every scan fail.
const MinSecretLen = 6

// jwtShape matches a compact JWS or JWE as logs would carry it: a
// base64url JSON header (it starts {" , so eyJ), then at least two more
// dot-separated base64url segments. Signature-less tokens (alg none) match
// too: they are tokens all the same.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// Finding is one token or secret found in a scan.
type Finding struct {
	// What says what was found: "a JWT" or "the secret #n" (never the
	// secret itself, so the report does not leak it again).
	What string
	// Line is the number (from 1) of the line it was found on.
	Line int
	// Context is the start of that line, with the finding masked.
	Context string
}

func (f Finding) String() string {
	return fmt.Sprintf("line %d: %s: %s", f.Line, f.What, f.Context)
}

// Scan finds JWT-shaped strings and the given secrets (those at least
// MinSecretLen bytes long) in text, line by line.
func Scan(text []byte, secrets []string) []Finding {
	f, _ := ScanReader(bytes.NewReader(text), secrets)
	return f
}

// ScanReader is Scan over r, read a line at a time, so that large captures
// need not be held in memory.
func ScanReader(r io.Reader, secrets []string) ([]Finding, error) {
	var long []string
	for _, s := range secrets {
		if len(s) >= MinSecretLen && !slices.Contains(long, s) {
			long = append(long, s)
		}
	}
	sort.Strings(long) // a stable numbering for the report
	mask := func(s string) string {
		s = jwtShape.ReplaceAllString(s, "<JWT>")
		for _, secret := range long {
			s = strings.ReplaceAll(s, secret, "<SECRET>")
		}
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		return s
	}
	var out []Finding
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if jwtShape.Match(line) {
				out = append(out, Finding{What: "a JWT", Line: n, Context: mask(strings.TrimSpace(string(line)))})
			}
			for i, secret := range long {
				if bytes.Contains(line, []byte(secret)) {
					out = append(out, Finding{What: fmt.Sprintf("the secret #%d (%d bytes)", i+1, len(secret)), Line: n,
						Context: mask(strings.TrimSpace(string(line)))})
				}
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// Capture collects what a test binary logs, in a temporary file (a soak
// test logs hundreds of thousands of lines): what is written to its
// standard error (where Caddy's default logger writes), captured at the
// file descriptor, and what test loggers made with Core or Tee write.
type Capture struct {
	mu   sync.Mutex
	file *os.File
	// stopFD ends the standard error capture and waits for the copy; nil
	// when it could not be set up (then only the loggers are captured).
	stopFD func()
}

var (
	current   *Capture
	currentMu sync.Mutex
)

// Start begins capturing the process's standard error, which is still
// passed on to where it went before, and makes the capture the one Core
// and Tee write to. Call Stop when the tests are done.
func Start() (*Capture, error) {
	f, err := os.CreateTemp("", "logscan-*.log")
	if err != nil {
		return nil, err
	}
	c := &Capture{file: f}
	c.stopFD = captureStderr(c)
	currentMu.Lock()
	current = c
	currentMu.Unlock()
	return c, nil
}

// Write adds p to the capture.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file == nil {
		return len(p), nil // stopped
	}
	return c.file.Write(p)
}

// Stop ends the capture and returns the name of the file that holds it;
// the caller removes it.
func (c *Capture) Stop() string {
	if c.stopFD != nil {
		c.stopFD()
	}
	currentMu.Lock()
	if current == c {
		current = nil
	}
	currentMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	name := c.file.Name()
	c.file.Close()
	c.file = nil
	return name
}

// Core is a zap core that writes every entry, at every level, as JSON into
// the running capture; with no capture running it drops them. Tests tee
// their own loggers (observer cores, which print nothing) into it, so that
// what those loggers get is scanned too.
func Core() zapcore.Core {
	currentMu.Lock()
	c := current
	currentMu.Unlock()
	if c == nil {
		return zapcore.NewNopCore()
	}
	enc := zap.NewProductionEncoderConfig()
	return zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(c), zapcore.DebugLevel)
}

// Tee returns a logger writing to core and to the capture.
func Tee(core zapcore.Core) *zap.Logger {
	return zap.New(zapcore.NewTee(core, Core()))
}

// Fuzzing reports whether the test binary runs a fuzz target (or is one of
// its workers): what it logs then comes from generated inputs, which may
// take any shape, a JWT's included, so its output is not scanned.
func Fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// Logger is a logger that writes only to the capture: for tests that
// would otherwise log nowhere (zap.NewNop).
func Logger() *zap.Logger { return Tee(zapcore.NewNopCore()) }

// secretPatterns find the secret values tests configure, in their Go
// sources: Caddyfile secret lines, Secrets and ActionSecrets literals,
// client secrets, and environment variables named as secrets.
// Placeholders ({env.X}) are not values.
var secretPatterns = []*regexp.Regexp{
	// The value ends the Caddyfile line: followed by a quote, a \n or
	// \t escape, or the end of a raw string's line (so prose and error
	// texts such as "secret A already specified" are not taken).
	regexp.MustCompile(`(?m)(?:^|[\s"]|\\[nt])secret [A-Z][A-Z0-9_]* ([^\s"\\{}]+)(?:["\\]|$)`),
	regexp.MustCompile(`Setenv\("[A-Z_]*SECRET[A-Z_]*",\s*"([^"]+)"\)`),
	regexp.MustCompile(`(?:Client)?Secret:\s*"([^"]+)"`),
}

var (
	secretsMap = regexp.MustCompile(`Secrets\s*[:=]\s*map\[`)
	mapValue   = regexp.MustCompile(`"[^"]*":\s*"([^"{]+)"`)
)

// ConfiguredSecrets returns the secret values configured in the Go files
// matching glob (the package's *_test.go), as secretPatterns find them.
func ConfiguredSecrets(glob string) []string {
	files, _ := filepath.Glob(glob)
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
		// Secrets and ActionSecrets map literals, on one line or many:
		// every string value in them.
		for _, loc := range secretsMap.FindAllIndex(src, -1) {
			for _, m := range mapValue.FindAllSubmatch(mapLiteral(src[loc[1]:]), -1) {
				out = append(out, string(m[1]))
			}
		}
	}
	return out
}

// mapLiteral is the composite literal src starts with (a map's type, then
// its braces), up to its closing brace or the end of src. Braces inside
// its strings are counted too; the placeholders ({env.X}) are balanced.
func mapLiteral(src []byte) []byte {
	depth := 0
	for i, c := range src {
		switch c {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return src[:i+1]
			}
		}
	}
	return src
}

// Main runs a test binary's tests with everything they log captured, then
// scans the capture and the sinks (files the tests have loggers write to)
// for JWTs and the values secrets returns, called after the run so that it
// sees the servers the tests started. A finding fails the run and keeps the
// files for a look; a clean run removes them. It returns the exit code for
// os.Exit. A fuzzing run is not scanned (see Fuzzing).
func Main(m interface{ Run() int }, secrets func() []string, sinks ...string) int {
	capture, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	code := m.Run()
	files := append([]string{capture.Stop()}, sinks...)
	if Fuzzing() || Check(os.Stderr, files, secrets()) {
		for _, name := range files {
			os.Remove(name)
		}
		return code
	}
	fmt.Fprintln(os.Stderr, "logscan: the files are kept for a look:", strings.Join(files, " "))
	if code == 0 {
		code = 1
	}
	return code
}

// Check scans the files (a capture, log sinks the tests configured; a
// file that does not exist is skipped), reports each finding on w, and
// returns whether they are clean.
func Check(w io.Writer, files []string, secrets []string) bool {
	clean := true
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue // a sink no test wrote to
		}
		findings, err := ScanReader(f, secrets)
		f.Close()
		if err != nil {
			fmt.Fprintf(w, "logscan: reading %s: %v\n", name, err)
			clean = false
		}
		for _, finding := range findings {
			if clean {
				fmt.Fprintln(w, "logscan: the tests' log output holds tokens or secrets:")
			}
			clean = false
			fmt.Fprintf(w, "  %s %s\n", name, finding)
		}
	}
	return clean
}
