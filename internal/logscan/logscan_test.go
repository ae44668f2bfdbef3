package logscan

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A real token's shape: header, payload, signature.
const planted = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMifQ.c2lnbmF0dXJlLWJ5dGVz"

func TestScanFindsPlantedTokensAndSecrets(t *testing.T) {
	text := []byte("clean line\n" +
		`{"msg":"oops","access_token":"` + planted + `"}` + "\n" +
		"unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. here\n" +
		"client secret planted-secret-value in a line\n" +
		"a short secret s and eu are not looked for\n")
	got := Scan(text, []string{"planted-secret-value", "s", "eu"})
	var lines []int
	for _, f := range got {
		lines = append(lines, f.Line)
		if strings.Contains(f.Context, planted) || strings.Contains(f.Context, "planted-secret-value") {
			t.Errorf("the report repeats what it found: %s", f)
		}
	}
	if fmt.Sprint(lines) != "[2 3 4]" {
		t.Fatalf("findings on lines %v, want [2 3 4]: %v", lines, got)
	}
	if f := Scan([]byte("eyJ alone, a.b.c, kid eyJabc and https://x/eyJ\n"), nil); len(f) != 0 {
		t.Fatalf("false positives: %v", f)
	}
}

// What is written to descriptor 2 and to a teed logger is captured, and
// Check fails on a planted token in either.
func TestCaptureAndCheck(t *testing.T) {
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "logscan self-test (expected): token "+planted)
	logger := Tee(zapcore.NewNopCore())
	logger.Debug("a test logger line", zap.String("secret", "teed-secret-value"))
	name := c.Stop()
	defer os.Remove(name)
	out, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if c.stopFD != nil && !bytes.Contains(out, []byte(planted)) {
		t.Errorf("descriptor 2 not captured: %q", out)
	}
	if !bytes.Contains(out, []byte("teed-secret-value")) {
		t.Errorf("teed logger not captured: %q", out)
	}
	var report bytes.Buffer
	if Check(&report, []string{name, name + ".absent"}, []string{"teed-secret-value"}) {
		t.Fatal("Check passed output holding a token and a secret")
	}
	if !strings.Contains(report.String(), "a JWT") || !strings.Contains(report.String(), "the secret #1") {
		t.Fatalf("report: %s", report.String())
	}
	clean := filepath.Join(t.TempDir(), "clean.log")
	if err := os.WriteFile(clean, []byte("nothing here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !Check(&report, []string{clean}, []string{"teed-secret-value"}) {
		t.Fatal("Check failed clean output")
	}
	// After Stop, nothing more is captured, and the core drops entries.
	Tee(zapcore.NewNopCore()).Info("after stop")
}

// ConfiguredSecrets reads the values tests configure, and not the prose or
// error texts around them.
func TestConfiguredSecrets(t *testing.T) {
	dir := t.TempDir()
	src := "package x\n" +
		"var a = \"credentials_exchange {\\n\\tsecret API_KEY caddyfile-value\\n}\"\n" +
		"var b = `\n\tsecret TOKEN raw-string-value\n`\n" +
		"var c = Config{Secrets: map[string]string{\"A\": \"map-value-1\", \"B\": \"{env.X}\"}}\n" +
		"func f() { c.ActionSecrets = map[*Script]map[string]string{s: {\"K\": \"map-value-2\"}} }\n" +
		"var e = Config{Secrets: map[string]string{\n\t\"A\": \"multi-line-value\",\n\t\"B\": \"{env.X}\",\n}, Other: map[string]string{\"x\": \"not-a-secret\"}}\n" +
		"var d = oauthserver.Client{ID: \"x\", Secret: \"client-value\"}\n" +
		"func g(t *testing.T) { t.Setenv(\"MY_SECRET\", \"env-value\") }\n" +
		"// the secret A already specified, a secret of the test\n"
	if err := os.WriteFile(filepath.Join(dir, "x_test.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	got := ConfiguredSecrets(filepath.Join(dir, "*_test.go"))
	slices.Sort(got)
	want := []string{"caddyfile-value", "client-value", "env-value", "map-value-1", "map-value-2", "multi-line-value", "raw-string-value"}
	if !slices.Equal(got, want) {
		t.Fatalf("ConfiguredSecrets = %v, want %v", got, want)
	}
}

type runFunc func() int

func (f runFunc) Run() int { return f() }

// TestMainFailsARunThatLogsASecret: Main turns a passing run whose log
// output holds a token, or a secret only known after the run, into a
// failing one, keeps the files, and leaves a clean run's code alone.
func TestMainFailsARunThatLogsASecret(t *testing.T) {
	sink := filepath.Join(t.TempDir(), "sink.log")
	logged := func(text string) runFunc {
		return func() int {
			Logger().Info("a test line", zap.String("value", text))
			return 0
		}
	}
	if code := Main(logged("nothing to see"), func() []string { return []string{"late-secret-1"} }, sink); code != 0 {
		t.Fatalf("a clean run exits %d", code)
	}
	if err := os.WriteFile(sink, []byte("token "+planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := Main(logged("nothing to see"), func() []string { return nil }, sink); code != 1 {
		t.Fatalf("a token in a sink: exit %d, want 1", code)
	}
	if _, err := os.Stat(sink); err != nil {
		t.Fatalf("the sink of a failed scan is removed: %v", err)
	}
	os.Remove(sink)
	if code := Main(logged("late-secret-1"), func() []string { return []string{"late-secret-1"} }); code != 1 {
		t.Fatalf("a secret in the capture: exit %d, want 1", code)
	}
}
