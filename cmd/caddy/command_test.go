package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/lestrrat-go/jwx/v2/jwk"

	credentialsexchange "github.com/caddyhook/caddyhook"
	"github.com/caddyhook/caddyhook/internal/oauthserver"
)

// asCaddy makes the test binary run Caddy's command entry point, the main
// of this package, so the tests run `caddy credentials-exchange …` as a
// user does: a process of its own with its own exit code, stdout and stderr.
const asCaddy = "CADDYHOOK_TEST_RUN_AS_CADDY"

func TestMain(m *testing.M) {
	if os.Getenv(asCaddy) == "1" {
		main()
		os.Exit(0) // Main exits by itself on failure
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// caddyRun runs the caddy command with args in dir.
func caddyRun(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), asCaddy+"=1", "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// files writes name → content into a fresh directory and returns it.
func files(t *testing.T, fs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range fs {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type runJSON struct {
	Outcome       string                     `json:"outcome"`
	Scope         []string                   `json:"scope"`
	UpstreamScope []string                   `json:"upstream_scope"`
	Claims        map[string]json.RawMessage `json:"claims"`
	CustomClaims  []string                   `json:"custom_claims"`
	Dropped       []struct {
		Name, Reason, Script string
	} `json:"dropped"`
	DroppedTotal     int    `json:"dropped_total"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Where            string `json:"where"`
	Console          []struct {
		Script, Level, Source, Message string
	} `json:"console"`
}

func decodeRun(t *testing.T, r result) runJSON {
	t.Helper()
	var out runJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, r)
	}
	return out
}

func claim(t *testing.T, out runJSON, name string) any {
	t.Helper()
	raw, ok := out.Claims[name]
	if !ok {
		t.Fatalf("no claim %q in %v", name, out.Claims)
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	return v
}

const tierHook = `module.exports = function (client, scope, audience, context, cb) {
  console.log("hook for", client.id, "of", client.name, "asking", audience, context.body.extra);
  console.warn("upstream scope", scope === undefined ? "undefined" : scope.join(" "));
  var access_token = {};
  access_token.scope = (scope || []).concat(["tier:" + client.metadata.tier]);
  access_token["https://example.com/tier"] = client.metadata.tier;
  access_token["https://example.com/key_set"] = context.webtask.secrets.API_KEY !== undefined;
  cb(null, access_token);
};
`

// A hook that adds a claim and a scope: the human report shows the scope,
// the claims (custom ones marked) and the console; nothing of the secret.
func TestRunHookAddsClaimAndScope(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": tierHook})
	r := caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js",
		"--client-id", "app1", "--client-name", "App One", "--metadata", "tier=gold",
		"--scope", "read:a read:b", "--audience", "https://api.example.com",
		"--body", "extra=from-body", "--secret", "API_KEY=s3cr3t-value")
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	for _, want := range []string{
		"issued\n",
		"scope: read:a read:b tier:gold\n",
		"(upstream: read:a read:b)",
		`  + https://example.com/tier: "gold"`,
		`  + https://example.com/key_set: true`,
		`    aud: "https://api.example.com"`,
		`    client_id: "app1"`,
		`    scope: "read:a read:b tier:gold"`,
		"console:\n",
		"[hook.js] log: hook for app1 of App One asking https://api.example.com from-body\n",
		"[hook.js] warn: upstream scope read:a read:b\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "s3cr3t-value") {
		t.Errorf("a secret value was printed\n%s", r)
	}

	// No --scope: the hook sees undefined, as for a client asking none.
	r = caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "app1", "--json")
	out := decodeRun(t, r)
	if r.code != 0 || out.Outcome != "issued" || out.UpstreamScope != nil || strings.Join(out.Scope, " ") != "tier:undefined" {
		t.Fatalf("without --scope: %+v\n%s", out, r)
	}
	if len(out.Console) != 2 || out.Console[1].Message != "upstream scope undefined" || out.Console[1].Level != "warn" {
		t.Errorf("console: %+v", out.Console)
	}
	if _, ok := out.Claims["https://example.com/tier"]; ok {
		t.Errorf("an undefined claim reached the token: %v", out.Claims)
	}
}

const planAction = `exports.onExecuteCredentialsExchange = async (event, api) => {
  console.log("action", event.client.client_id, event.request.body.region, event.resource_server.identifier, event.request.ip);
  if (event.secrets.API_KEY !== "from-env") {
    api.access.deny("invalid_request", "secret not passed");
    return;
  }
  api.accessToken.setCustomClaim("https://example.com/plan", event.client.metadata.plan);
  api.accessToken.setCustomClaim("https://example.com/regions", event.request.body.region);
  api.transaction.addTargetScope("write:b");
  api.transaction.addTargetScope("admin");
};
`

// An action: metadata, repeated body parameters and a secret from {env.X}
// reach it; the target scope outside the client's grant is cut.
func TestRunAction(t *testing.T) {
	dir := files(t, map[string]string{"action.js": planAction})
	r := caddyRun(t, dir, []string{"MY_API_KEY=from-env"}, "credentials-exchange", "run",
		"--action", "action.js", "--client-id", "app2", "--metadata", "plan=pro",
		"--scope", "read:a write:b", "--audience", "https://api",
		"--body", "region=eu", "--body", "region=us", "--secret", "API_KEY={env.MY_API_KEY}", "--ip", "192.0.2.7", "--json")
	out := decodeRun(t, r)
	if r.code != 0 || out.Outcome != "issued" {
		t.Fatalf("want issued, got %s", r)
	}
	if got := claim(t, out, "https://example.com/plan"); got != "pro" {
		t.Errorf("plan claim %v", got)
	}
	if got := fmt.Sprint(claim(t, out, "https://example.com/regions")); got != "[eu us]" {
		t.Errorf("regions claim %v", got)
	}
	// The grant defaults to the upstream's scope: admin is cut.
	if got := strings.Join(out.Scope, " "); got != "read:a write:b" {
		t.Errorf("scope %q", got)
	}
	if len(out.Console) != 1 || out.Console[0].Message != `action app2 ["eu","us"] https://api 192.0.2.7` {
		t.Errorf("console %+v", out.Console)
	}
	if strings.Contains(r.stdout+r.stderr, "from-env") {
		t.Errorf("a secret value was printed\n%s", r)
	}

	// With a grant that holds admin, admin stays.
	r = caddyRun(t, dir, []string{"MY_API_KEY=from-env"}, "credentials-exchange", "run",
		"--action", "action.js", "--client-id", "app2", "--scope", "read:a", "--grant-scopes", "read:a write:b admin",
		"--secret", "API_KEY={env.MY_API_KEY}", "--json")
	if out := decodeRun(t, r); strings.Join(out.Scope, " ") != "read:a write:b admin" {
		t.Errorf("with --grant-scopes: %s", r)
	}
	// Without the secret, the action denies.
	r = caddyRun(t, dir, nil, "credentials-exchange", "run", "--action", "action.js", "--client-id", "app2")
	if r.code != credentialsexchange.ExitCodeDenied || !strings.HasPrefix(r.stdout, "denied: invalid_request: secret not passed\n") {
		t.Errorf("action denial: %s", r)
	}
}

// An --upstream-claim is a claim of the upstream token, and the hook reads
// the token's client and scope from its claims as the handler does: a
// client_id or scope given that way is the one the hook sees.
func TestRunUpstreamClaimsReachTheHook(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": `module.exports = function (client, scope, audience, context, cb) {
  cb(null, { "https://example.com/seen": [client.id, scope] });
};
`})
	r := caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "asked",
		"--scope", "read:a", "--upstream-claim", `client_id="issued"`, "--upstream-claim", `scope="read:b write:c"`, "--json")
	out := decodeRun(t, r)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if got := jsonOf(t, claim(t, out, "https://example.com/seen")); got != `["issued",["read:b","write:c"]]` {
		t.Errorf("the hook saw %s", got)
	}
	if got := strings.Join(out.UpstreamScope, " "); got != "read:b write:c" {
		t.Errorf("upstream scope %q", got)
	}
}

// Claims the token does not get are listed with the reason: a restricted
// name, a claim the upstream token already has, and, under the namespaced
// policy, a name that is no URL.
func TestRunDroppedClaims(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": `module.exports = function (client, scope, audience, context, cb) {
  cb(null, { iss: "https://evil", "https://example.com/org": "o1", plain: 1 });
};
`})
	r := caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "c",
		"--upstream-claim", `https://example.com/org="from upstream"`, "--claims-policy", "namespaced", "--json")
	out := decodeRun(t, r)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	reasons := map[string]string{}
	for _, d := range out.Dropped {
		reasons[d.Name] = d.Reason
		if d.Script != "hook.js" {
			t.Errorf("dropped %s by %q", d.Name, d.Script)
		}
	}
	if out.DroppedTotal != 3 || len(reasons) != 3 || reasons["iss"] == "" || reasons["https://example.com/org"] == "" || reasons["plain"] == "" {
		t.Fatalf("dropped: %+v\n%s", out.Dropped, r)
	}
	if got := claim(t, out, "https://example.com/org"); got != "from upstream" {
		t.Errorf("the upstream's claim was replaced: %v", got)
	}
	if len(out.CustomClaims) != 0 {
		t.Errorf("custom claims %v", out.CustomClaims)
	}

	// The human report says the same.
	r = caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "c",
		"--upstream-claim", `https://example.com/org="from upstream"`, "--claims-policy", "namespaced")
	for _, name := range []string{"iss", "https://example.com/org", "plain"} {
		want := fmt.Sprintf("  %s (set by hook.js): %s\n", name, reasons[name])
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q\n%s", want, r)
		}
	}
	if !strings.Contains(r.stdout, "dropped claims (3):\n") {
		t.Errorf("no dropped section\n%s", r)
	}
}

// A denial prints the OAuth error and exits 3; the console output before
// it is kept.
func TestRunDenial(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": `module.exports = function (client, scope, audience, context, cb) {
  console.log("checking", client.id);
  if (client.metadata.blocked === "yes") return cb(new InvalidScopeError("client " + client.id + " is blocked"));
  cb(null, {});
};
`})
	r := caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "bad", "--metadata", "blocked=yes")
	if r.code != credentialsexchange.ExitCodeDenied {
		t.Fatalf("want exit %d, got %s", credentialsexchange.ExitCodeDenied, r)
	}
	if !strings.HasPrefix(r.stdout, "denied: invalid_scope: client bad is blocked\n") || !strings.Contains(r.stdout, "[hook.js] log: checking bad") {
		t.Errorf("stdout:\n%s", r)
	}
	r = caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "bad", "--metadata", "blocked=yes", "--json")
	out := decodeRun(t, r)
	if r.code != credentialsexchange.ExitCodeDenied || out.Outcome != "denied" || out.Error != "invalid_scope" || out.ErrorDescription != "client bad is blocked" {
		t.Errorf("json: %+v\n%s", out, r)
	}
}

// A script error exits 2 and says where: an exception in a hook, a
// rejection in an async action, a syntax error.
func TestRunScriptErrors(t *testing.T) {
	dir := files(t, map[string]string{
		"throw.js": `module.exports = function (client, scope, audience, context, cb) {
  var access_token = {};
  access_token.scope = scope;
  access_token.scope.push("extra");
  cb(null, access_token);
};
`,
		"action.js": `exports.onExecuteCredentialsExchange = async (event, api) => {
  console.log("before");
  helper(event);
};
function helper(event) {
  throw new Error("no plan for " + event.client.client_id);
}
`,
		"syntax.js": `module.exports = function (client, scope, audience, context, cb) {
  cb(null, {
};
`,
		"forgets.js": `module.exports = function (client, scope, audience, context, cb) {
  setTimeout(function () { console.log("still here"); }, 1);
};
`,
	})
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"exception", []string{"--hook", "throw.js"}, []string{
			"error: server_error: Cannot read property 'push' of undefined", "throw.js:4:"}},
		{"async action", []string{"--action", "action.js"}, []string{
			"error: server_error: no plan for c", "at helper (action.js:6:", "action.js:3:", "[action.js] log: before"}},
		{"time-out", []string{"--hook", "forgets.js", "--timeout", "300ms"}, []string{
			"error: server_error: hook timed out\n", "[forgets.js] log: still here"}},
		{"syntax", []string{"--hook", "syntax.js"}, []string{
			"error: server_error: syntax.js: does not compile: SyntaxError: syntax.js: Line 3:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := caddyRun(t, dir, nil, append([]string{"credentials-exchange", "run", "--client-id", "c"}, tc.args...)...)
			if r.code != credentialsexchange.ExitCodeScriptError {
				t.Fatalf("want exit %d, got %s", credentialsexchange.ExitCodeScriptError, r)
			}
			for _, want := range tc.wants {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q\n%s", want, r)
				}
			}
			if strings.Contains(r.stdout+r.stderr, "github.com/") {
				t.Errorf("Go internals printed\n%s", r)
			}
		})
	}
}

// Bad usage exits with Caddy's code for it, 1.
func TestRunUsage(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": tierHook})
	for _, args := range [][]string{
		{"--hook", "hook.js"},                        // no client
		{"--client-id", "c"},                         // no script
		{"--hook", "missing.js", "--client-id", "c"}, // no such file
		{"--hook", "hook.js", "--client-id", "c", "--metadata", "novalue"},
		{"--hook", "hook.js", "--client-id", "c", "--no-such-flag"},
		{"--hook", "hook.js", "--client-id", "c", "--claims-policy", "strict"},
	} {
		r := caddyRun(t, dir, nil, append([]string{"credentials-exchange", "run"}, args...)...)
		if r.code != caddy.ExitCodeFailedStartup || r.stdout != "" {
			t.Errorf("%v: want exit 1 and no report, got %s", args, r)
		}
	}
	// A --secret without a name may be the value alone: it is not echoed.
	r := caddyRun(t, dir, nil, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "c", "--secret", "s3cr3t-alone")
	if r.code != caddy.ExitCodeFailedStartup || strings.Contains(r.stdout+r.stderr, "s3cr3t-alone") {
		t.Errorf("malformed --secret: %s", r)
	}
}

const twoSites = `{
	admin off
}

a.example.com {
	credentials_exchange {
		hook hook.js
		action secret-action.js {
			secret OWN {env.CADDYHOOK_TEST_KEY}
		}
		upstream_jwks http://127.0.0.1:9/jwks
		secret API_KEY {env.CADDYHOOK_TEST_KEY}
		client app1 {
			name "App One"
			metadata tier silver
			grant_scopes read:a
		}
	}
	reverse_proxy 127.0.0.1:9
}

b.example.com {
	handle /oauth/* {
		route {
			credentials_exchange {
				hook deny.js
				insecure_skip_verify
				clients_file clients.json
			}
		}
	}
	reverse_proxy 127.0.0.1:9
}
`

// --config takes the handler of the site --site names, with its clients,
// clients_file and secrets; flags beside it win.
func TestRunConfigSites(t *testing.T) {
	dir := files(t, map[string]string{
		"Caddyfile": twoSites,
		"hook.js":   tierHook,
		"deny.js": `module.exports = function (client, scope, audience, context, cb) {
  if (client.metadata.blocked === "yes") return cb(new InvalidRequestError(client.name + " is blocked on " + context.hostname));
  cb(null, { "https://example.com/site": "b" });
};
`,
		"clients.json": `{"app1": {"name": "Blocked App", "metadata": {"blocked": "yes"}}}`,
		"secret-action.js": `exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim("https://example.com/own", event.secrets.OWN === "k");
};
`,
		"other-action.js": `exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim("https://example.com/other", Object.keys(event.secrets).join(","));
};
`,
	})
	env := []string{"CADDYHOOK_TEST_KEY=k"}

	r := caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--client-id", "app1")
	if r.code != caddy.ExitCodeFailedStartup || !strings.Contains(r.stderr, "pick one with --site") ||
		!strings.Contains(r.stderr, "a.example.com; b.example.com") {
		t.Errorf("two handlers without --site: %s", r)
	}

	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--site", "a.example.com",
		"--client-id", "app1", "--scope", "read:a", "--json")
	out := decodeRun(t, r)
	if r.code != 0 || claim(t, out, "https://example.com/tier") != "silver" || claim(t, out, "https://example.com/key_set") != true {
		t.Fatalf("site a: %s", r)
	}
	if got := out.Console[0].Message; got != "hook for app1 of App One asking  undefined" {
		t.Errorf("console %q", got)
	}
	if claim(t, out, "https://example.com/own") != true {
		t.Errorf("the action's own secret did not reach it: %s", r)
	}
	// --action replaces the config's actions, and their own secrets go.
	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--site", "a.example.com",
		"--client-id", "app1", "--action", "other-action.js", "--json")
	if out := decodeRun(t, r); r.code != 0 || claim(t, out, "https://example.com/other") != "API_KEY" {
		t.Errorf("--action beside --config: %s", r)
	}

	// A flag beside --config wins over the config's client metadata.
	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--site", "a.example.com",
		"--client-id", "app1", "--metadata", "tier=platinum", "--json")
	if out := decodeRun(t, r); claim(t, out, "https://example.com/tier") != "platinum" {
		t.Errorf("metadata flag did not win: %s", r)
	}

	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--site", "b.example.com", "--client-id", "app1")
	if r.code != credentialsexchange.ExitCodeDenied || r.stdout != "denied: invalid_request: Blocked App is blocked on b.example.com\n" {
		t.Errorf("site b: %s", r)
	}
	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--site", "b.example.com",
		"--client-id", "app1", "--hook", "hook.js", "--json")
	if out := decodeRun(t, r); r.code != 0 || len(out.Console) == 0 || out.Console[0].Message != "hook for app1 of Blocked App asking  undefined" {
		t.Errorf("--hook beside --config: %s", r)
	}

	// The same config as JSON, as caddy adapt writes it.
	t.Chdir(dir) // the adapter reads the scripts named
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(twoSites), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "caddy.json"), js, 0o600); err != nil {
		t.Fatal(err)
	}
	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "caddy.json", "--site", "b.example.com", "--client-id", "app1")
	if r.code != credentialsexchange.ExitCodeDenied {
		t.Errorf("JSON config: %s", r)
	}

	r = caddyRun(t, dir, env, "credentials-exchange", "run", "--config", "Caddyfile", "--site", "c.example.com", "--client-id", "app1")
	if r.code != caddy.ExitCodeFailedStartup || !strings.Contains(r.stderr, `no credentials_exchange handler for site \"c.example.com\"`) {
		t.Errorf("unknown site: %s", r)
	}
}

// siteCaddyfile is a Caddyfile serving site on a free 127.0.0.1 port, with
// admin off and storage in a temporary folder; site is the block's body.
func siteCaddyfile(t *testing.T, site string) (caddyfile string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	return fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	storage file_system %s
	log {
		level ERROR
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
%s}
`, t.TempDir(), port, site), port
}

// loadCaddyfile runs a real Caddy with caddyfile until the test ends.
func loadCaddyfile(t *testing.T, caddyfile string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, caddyfile)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading: %v\n%s", err, caddyfile)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

// jwksFromHandler loads a real Caddy with a credentials_exchange handler
// and returns the JWKS it serves.
func jwksFromHandler(t *testing.T, dir, directives string) []byte {
	t.Helper()
	caddyfile, port := siteCaddyfile(t, fmt.Sprintf(`	credentials_exchange {
		hook %s
		insecure_skip_verify
		%s
	}
	respond 404
`, filepath.Join(dir, "hook.js"), strings.ReplaceAll(directives, "\n", "\n\t\t")))
	loadCaddyfile(t, caddyfile)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/.well-known/jwks.json", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d %v %s", resp.StatusCode, err, body)
	}
	return body
}

// keygen makes a key for each algorithm: the PEM loads as signing_key (with
// the algorithm), and the JWK on stderr is the key the handler publishes.
func TestKeygen(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": tierHook})
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			out := filepath.Join(dir, alg+".pem")
			r := caddyRun(t, dir, nil, "credentials-exchange", "keygen", "--alg", alg, "--out", out)
			if r.code != 0 || r.stdout != "" {
				t.Fatalf("%s", r)
			}
			st, err := os.Stat(out)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v %v", st, err)
			}
			pub, err := jwk.ParseKey([]byte(r.stderr))
			if err != nil {
				t.Fatalf("stderr is not a JWK: %v\n%s", err, r)
			}
			if pub.Algorithm().String() != alg || pub.KeyUsage() != "sig" || pub.KeyID() == "" {
				t.Errorf("JWK alg %v use %v kid %q", pub.Algorithm(), pub.KeyUsage(), pub.KeyID())
			}
			if private, _ := jwk.IsPrivateKey(pub); private {
				t.Errorf("the JWK is private")
			}
			served := jwksFromHandler(t, dir, "signing_key "+out+" "+alg)
			set, err := jwk.Parse(served)
			if err != nil || set.Len() != 1 {
				t.Fatalf("served JWKS: %v %s", err, served)
			}
			got, _ := set.Key(0)
			if !sameJSON(t, got, pub) {
				t.Errorf("handler publishes %s, keygen printed %s", jsonOf(t, got), r.stderr)
			}

			// An existing file is never overwritten.
			before, _ := os.ReadFile(out)
			r = caddyRun(t, dir, nil, "credentials-exchange", "keygen", "--alg", alg, "--out", out)
			after, _ := os.ReadFile(out)
			if r.code != caddy.ExitCodeFailedStartup || !bytes.Equal(before, after) {
				t.Errorf("overwrote %s: %s", out, r)
			}
		})
	}

	// To stdout, without --out.
	r := caddyRun(t, dir, nil, "credentials-exchange", "keygen", "--alg", "ES256")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf("%s", r)
	}
	r = caddyRun(t, dir, nil, "credentials-exchange", "keygen", "--alg", "HS256")
	if r.code != caddy.ExitCodeFailedStartup || r.stdout != "" {
		t.Errorf("HS256: %s", r)
	}
}

// jwks prints what the handler serves for the same signing_key and
// publish_key files: private and public PEM, a JWK, a JWK set; no private
// member.
func TestJWKSMatchesHandler(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": tierHook})
	gen := func(alg string) (pemPath string, public string) {
		p := filepath.Join(dir, alg+".pem")
		r := caddyRun(t, dir, nil, "credentials-exchange", "keygen", "--alg", alg, "--out", p)
		if r.code != 0 {
			t.Fatal(r)
		}
		return p, r.stderr
	}
	signing, _ := gen("RS256")
	ecPEM, _ := gen("ES384")
	_, edJWK := gen("EdDSA")
	_, ecJWK := gen("ES256")
	// A public JWK file, and a JWK set of two public keys.
	edFile := filepath.Join(dir, "ed.jwk")
	if err := os.WriteFile(edFile, []byte(edJWK), 0o600); err != nil {
		t.Fatal(err)
	}
	setFile := filepath.Join(dir, "set.json")
	if err := os.WriteFile(setFile, []byte(`{"keys":[`+strings.TrimSpace(ecJWK)+`,`+strings.TrimSpace(edJWK)+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}

	r := caddyRun(t, dir, nil, "credentials-exchange", "jwks", "--key", signing, "--key", ecPEM, "--key", edFile, "--key", setFile)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	served := jwksFromHandler(t, dir, fmt.Sprintf("signing_key %s\npublish_key %s\npublish_key %s\npublish_key %s", signing, ecPEM, edFile, setFile))
	var got, want any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout: %v\n%s", err, r)
	}
	_ = json.Unmarshal(served, &want)
	if !jsonEqual(got, want) {
		t.Errorf("jwks printed\n%s\nthe handler serves\n%s", r.stdout, served)
	}
	keys := got.(map[string]any)["keys"].([]any)
	if len(keys) != 5 {
		t.Errorf("%d keys", len(keys))
	}
	for _, k := range keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k.(map[string]any)[private]; ok {
				t.Errorf("private member %q in %v", private, k)
			}
		}
		if k.(map[string]any)["kid"] == nil || k.(map[string]any)["use"] != "sig" {
			t.Errorf("key without kid or use: %v", k)
		}
	}

	r = caddyRun(t, dir, nil, "credentials-exchange", "jwks")
	if r.code != caddy.ExitCodeFailedStartup {
		t.Errorf("no --key: %s", r)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameJSON(t *testing.T, a, b any) bool {
	var x, y any
	_ = json.Unmarshal([]byte(jsonOf(t, a)), &x)
	_ = json.Unmarshal([]byte(jsonOf(t, b)), &y)
	return jsonEqual(x, y)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// run gives what the handler gives: the same Caddyfile serves a real
// exchange against a real OAuth server, and `run --config` on it yields
// the same scope and claims (the upstream's iss, jti and times aside).
func TestRunAgreesWithHandler(t *testing.T) {
	upstream, err := oauthserver.Start(oauthserver.Options{Clients: []oauthserver.Client{{ID: "svc", Secret: "client-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = upstream.Close() })
	t.Setenv("CADDYHOOK_TEST_SECRET", "from-env")

	caddyfile, port := siteCaddyfile(t, fmt.Sprintf(`	credentials_exchange {
		hook hook.js
		action action.js
		upstream_jwks %s/.well-known/jwks.json
		tenant acme
		secret API_KEY {env.CADDYHOOK_TEST_SECRET}
		client svc {
			name "Service"
			metadata tier gold
			grant_scopes read:a write:b
		}
	}
	reverse_proxy %s
`, upstream.URL, strings.TrimPrefix(upstream.URL, "http://")))
	dir := files(t, map[string]string{
		"Caddyfile": caddyfile,
		"hook.js": `module.exports = function (client, scope, audience, context, cb) {
  var t = {};
  t.scope = (scope || []).concat(["hooked"]);
  t["https://example.com/input"] = [client.id, client.name, client.tenant, client.metadata, audience,
    context.body, context.webtask.secrets.API_KEY === "from-env"];
  t.iss = "dropped";
  t.client_id = "dropped too";
  cb(null, t);
};
`,
		"action.js": `exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim("https://example.com/event", [event.client, event.tenant, event.resource_server,
    event.transaction, event.request.body, event.request.method, event.accessToken.scope]);
  api.transaction.addTargetScope("write:b");
  api.transaction.addTargetScope("admin");
};
`,
	})
	// Relative script paths resolve against the working directory, for
	// Caddy as for the command.
	t.Chdir(dir)
	loadCaddyfile(t, caddyfile)

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"client-secret"},
		"scope": {"read:a"}, "audience": {"https://api.example.com"}}
	resp, err := http.PostForm(fmt.Sprintf("http://127.0.0.1:%d/oauth/token", port), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	parts := strings.Split(tok.AccessToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var issued map[string]any
	if err := json.Unmarshal(payload, &issued); err != nil {
		t.Fatal(err)
	}

	r := caddyRun(t, dir, nil, "credentials-exchange", "run", "--config", "Caddyfile",
		"--client-id", "svc", "--scope", "read:a", "--audience", "https://api.example.com", "--json")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	out := decodeRun(t, r)
	ran := map[string]any{}
	for k, v := range out.Claims {
		var x any
		_ = json.Unmarshal(v, &x)
		ran[k] = x
	}
	for _, k := range []string{"iat", "exp"} {
		delete(ran, k)
		delete(issued, k)
	}
	for _, k := range []string{"iss", "jti"} { // the upstream's own
		delete(issued, k)
	}
	t.Logf("claims: %s", jsonOf(t, ran))
	if !jsonEqual(ran, issued) {
		t.Errorf("run gives\n%s\nthe handler issued\n%s", jsonOf(t, ran), jsonOf(t, issued))
	}
	if len(out.Dropped) != 2 {
		t.Errorf("dropped %+v", out.Dropped)
	}
}

// context.webtask.storage is a throwaway: each run starts empty, and
// nothing is written where Caddy keeps its storage.
func TestRunStorageIsThrowaway(t *testing.T) {
	dir := files(t, map[string]string{"hook.js": `module.exports = function (client, scope, audience, context, cb) {
  context.webtask.storage.get(function (err, data) {
    if (err) return cb(err);
    data = data || { count: 0 };
    data.count++;
    context.webtask.storage.set(data, function (err) {
      if (err) return cb(err);
      cb(null, { "https://example.com/count": data.count });
    });
  });
};
`})
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config")}
	for range 2 {
		r := caddyRun(t, dir, env, "credentials-exchange", "run", "--hook", "hook.js", "--client-id", "c", "--json")
		if out := decodeRun(t, r); r.code != 0 || claim(t, out, "https://example.com/count") != 1.0 {
			t.Fatalf("%s", r)
		}
	}
	entries, err := os.ReadDir(home)
	if err != nil || len(entries) != 0 {
		t.Errorf("run wrote to %s: %v %v", home, entries, err)
	}
}
