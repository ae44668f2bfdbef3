package credentialsexchange_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/spf13/cobra"

	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// caddyReload runs Caddy's own `caddy reload` command, in this process,
// exactly as a user would type it: it adapts the Caddyfile and POSTs it to
// the admin API's /load, without --force.
func caddyReload(t *testing.T, args ...string) {
	t.Helper()
	c, ok := caddycmd.Commands()["reload"]
	if !ok {
		t.Fatal("caddy has no reload command")
	}
	cmd := &cobra.Command{Use: c.Name, SilenceUsage: true}
	c.CobraFunc(cmd)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("caddy reload %s: %v", strings.Join(args, " "), err)
	}
}

// hookClaim gets a token through the proxy and returns its claim name,
// read without verification: what matters here is which script wrote it.
func hookClaim(t *testing.T, base, name string) any {
	t.Helper()
	// A fresh connection each time: the client keeps none to a server that
	// a reload is about to replace.
	status, body := exchangeAcrossReload(t, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, base)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %s", status, body)
	}
	r := rawResponse{status: status, body: body}
	tok, err := jwt.Parse([]byte(tokenOf(t, r.body)), jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tok.Get(name)
	return v
}

// withoutDigest returns the config JSON with every scripts_digest removed.
func withoutDigest(t *testing.T, cfg []byte) string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			delete(v, "scripts_digest")
			for _, e := range v {
				strip(e)
			}
		case []any:
			for _, e := range v {
				strip(e)
			}
		}
	}
	strip(doc)
	b, _ := json.Marshal(doc)
	return string(b)
}

// Issue 10: after a hook or a module under modules_dir is edited, `caddy
// reload` without --force runs the new code. Caddy skips a config whose JSON
// equals the running one byte for byte (caddy.go, changeConfig: "config is
// unchanged"), and only the files' digest in the adapted config tells the
// two apart.
func TestReloadPicksUpEditedScripts(t *testing.T) {
	upstream := startOAuthServer(t, oauthserver.Options{Clients: []oauthserver.Client{
		{ID: "svc-billing", Secret: "billing-secret"},
	}})
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.js")
	module := filepath.Join(dir, "node_modules", "release", "index.js")
	write := func(path, src string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeHook := func(version string) {
		write(hook, `const release = require('release');
module.exports = function (client, scope, audience, context, cb) {
	cb(null, { 'https://example.com/hook': '`+version+`', 'https://example.com/module': release.name });
};`)
	}
	writeModule := func(version string) {
		write(module, `module.exports = { name: '`+version+`' };`)
	}
	writeHook("hook-1")
	writeModule("module-1")

	adminPort, port := freePort(t), freePort(t)
	global := strings.Replace(globalOptions(t), "admin off", fmt.Sprintf("admin 127.0.0.1:%d", adminPort), 1)
	caddyfile := filepath.Join(dir, "Caddyfile")
	write(caddyfile, global+siteBlock(port, upstream.URL, fmt.Sprintf(
		"credentials_exchange {\n\thook %s\n\tmodules_dir %s\n\tupstream_jwks %s/.well-known/jwks.json\n}", hook, dir, upstream.URL)))
	adapt := func() []byte {
		t.Helper()
		src, err := os.ReadFile(caddyfile)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": caddyfile})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// As `caddy run --config Caddyfile` starts.
	first := adapt()
	if err := caddy.Load(first, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	base := site{port: port}.url()
	if v := hookClaim(t, base, "https://example.com/hook"); v != "hook-1" {
		t.Fatalf("hook claim = %v, want hook-1", v)
	}
	reload := func() { caddyReload(t, "--config", caddyfile, "--address", fmt.Sprintf("127.0.0.1:%d", adminPort)) }

	writeHook("hook-2")
	// Files are read at provisioning: until the reload, the old hook runs.
	if v := hookClaim(t, base, "https://example.com/hook"); v != "hook-1" {
		t.Fatalf("before the reload: hook claim = %v, want hook-1", v)
	}
	second := adapt()
	if bytes.Equal(first, second) {
		t.Fatal("editing the hook did not change the adapted config: caddy reload would skip it")
	}
	if withoutDigest(t, first) != withoutDigest(t, second) {
		t.Fatal("the adapted configs differ in more than scripts_digest")
	}
	reload()
	if v := hookClaim(t, base, "https://example.com/hook"); v != "hook-2" {
		t.Fatalf("after editing the hook and caddy reload: hook claim = %v, want hook-2", v)
	}

	writeModule("module-2")
	if v := hookClaim(t, base, "https://example.com/module"); v != "module-1" {
		t.Fatalf("before the reload: module claim = %v, want module-1", v)
	}
	if bytes.Equal(second, adapt()) {
		t.Fatal("editing a module under modules_dir did not change the adapted config")
	}
	reload()
	if v := hookClaim(t, base, "https://example.com/module"); v != "module-2" {
		t.Fatalf("after editing the module and caddy reload: module claim = %v, want module-2", v)
	}

	// Nothing edited: Caddy skips the reload, as before.
	unchanged := adapt()
	if !bytes.Equal(unchanged, adapt()) {
		t.Fatal("adapting the same files twice gave different configs")
	}
}
