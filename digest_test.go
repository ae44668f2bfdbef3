package credentialsexchange

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScriptsDigest: the digest changes with every file the handler reads
// at provisioning, and only with them.
func TestScriptsDigest(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path(name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("hook.js", "module.exports = function (c, s, a, ctx, cb) { cb(null, {}); };")
	write("action.js", "exports.onExecuteCredentialsExchange = async () => {};")
	write("modules/node_modules/a/index.js", "module.exports = 1;")
	write("clients.json", "{}")
	write("key.pem", "not parsed here")
	h := &Handler{
		Hook: path("hook.js"), Actions: []string{path("action.js")}, ModulesDir: path("modules"),
		ClientsFile: path("clients.json"), SigningKey: path("key.pem"),
	}
	digest := func() string {
		t.Helper()
		d, err := h.scriptsDigest()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(d, "sha256:") {
			t.Fatalf("digest %q", d)
		}
		return d
	}
	seen := map[string]string{}
	last := digest()
	if digest() != last {
		t.Fatal("the same files gave two digests")
	}
	seen[last] = "start"
	for _, step := range []struct {
		what string
		do   func()
	}{
		{"hook edited", func() { write("hook.js", "module.exports = function (c, s, a, ctx, cb) { cb(null, {x: 1}); };") }},
		{"action edited", func() { write("action.js", "exports.onExecuteCredentialsExchange = async () => { };") }},
		{"module edited", func() { write("modules/node_modules/a/index.js", "module.exports = 2;") }},
		{"module added", func() { write("modules/node_modules/b/index.js", "module.exports = 2;") }},
		{"module renamed", func() {
			if err := os.Rename(path("modules/node_modules/b"), path("modules/node_modules/c")); err != nil {
				t.Fatal(err)
			}
		}},
		{"clients_file edited", func() { write("clients.json", `{"svc":{}}`) }},
		{"signing_key edited", func() { write("key.pem", "another key") }},
		{"action listed twice", func() { h.Actions = append(h.Actions, path("action.js")) }},
	} {
		step.do()
		d := digest()
		if prev, dup := seen[d]; dup {
			t.Fatalf("%s: digest unchanged (same as after %s)", step.what, prev)
		}
		seen[d] = step.what
	}

	h.ModulesDir = path("missing")
	if _, err := h.scriptsDigest(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing modules_dir: %v", err)
	}
}
