package credentialsexchange

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the expected output of adapt tests")

// testFiles makes the files a Caddyfile may name and exports their paths as
// environment variables, so Caddyfiles can say {$CADDYHOOK_TEST_...}.
func testFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"CADDYHOOK_TEST_SIGNING_KEY":  writeSigningKey(t),
		"CADDYHOOK_TEST_UPSTREAM_KEY": newTestUpstream(t).keyFile,
		"CADDYHOOK_TEST_CLIENTS":      filepath.Join(dir, "clients.json"),
		"CADDYHOOK_TEST_BAD_KEY":      filepath.Join(dir, "bad.pem"),
		"CADDYHOOK_TEST_GEOIP_DB":     writeGeoDB(t, "GeoLite2-City"),
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(files["CADDYHOOK_TEST_CLIENTS"], []byte(`{"svc-2":{"name":"Two","metadata":{"tier":"silver"}}}`), 0o644))
	must(os.WriteFile(files["CADDYHOOK_TEST_BAD_KEY"], []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600))
	for k, v := range files {
		t.Setenv(k, v)
	}
	return files
}

func TestUnmarshalCaddyfile(t *testing.T) {
	files := testFiles(t)
	hook := filepath.Join("testdata", "hooks", "starter.js")
	key := files["CADDYHOOK_TEST_SIGNING_KEY"]

	action := filepath.Join("testdata", "actions", "deny.js")
	input := `credentials_exchange {
		hook ` + hook + `
		action ` + action + ` {
			secret API_KEY own
			secret REGION us
		}
		action ` + action + `
		modules_dir ` + filepath.Join("testdata", "modules") + `
		fetch_allow https://api.example.com/v1/ http://127.0.0.1:8080/hooks
		fetch_allow {env.API_BASE}/v2/
		token_path /token
		json_body keep
		audience_param resource
		jwks_path /keys
		upstream_jwks http://127.0.0.1:9096/.well-known/jwks.json
		upstream_key ` + files["CADDYHOOK_TEST_UPSTREAM_KEY"] + `
		insecure_skip_verify
		signing_key ` + key + ` PS256
		publish_key ` + files["CADDYHOOK_TEST_UPSTREAM_KEY"] + `
		verify_key ` + files["CADDYHOOK_TEST_UPSTREAM_KEY"] + `
		jwks_max_age 10m
		key_rotation 720h
		key_publish_ahead 1h
		key_retain_max 48h
		claims_policy open
		isolate_runs
		timeout 750ms
		tenant acme
		secret API_KEY {env.API_KEY}
		secret REGION eu
		client svc-1 {
			name "Billing service"
			metadata tier gold
			metadata team payments
			grant_scopes read:a write:a
		}
		client svc-3
		clients_file ` + files["CADDYHOOK_TEST_CLIENTS"] + `
		max_body_size 16KiB
	}`
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		Hook: hook, Actions: []string{action, action}, ModulesDir: filepath.Join("testdata", "modules"),
		FetchAllow: []string{"https://api.example.com/v1/", "http://127.0.0.1:8080/hooks", "{env.API_BASE}/v2/"}, TokenPath: "/token", JSONBody: "keep", AudienceParam: "resource", JWKSPath: "/keys",
		UpstreamJWKS: "http://127.0.0.1:9096/.well-known/jwks.json", UpstreamKey: files["CADDYHOOK_TEST_UPSTREAM_KEY"],
		InsecureSkipVerify: true, SigningKey: key, SigningAlg: "PS256", ClaimsPolicy: "open", IsolateRuns: true,
		PublishKeys: []string{files["CADDYHOOK_TEST_UPSTREAM_KEY"], files["CADDYHOOK_TEST_UPSTREAM_KEY"]},
		JWKSMaxAge:  caddy.Duration(10 * time.Minute), KeyRotation: caddy.Duration(720 * time.Hour),
		KeyPublishAhead: caddy.Duration(time.Hour), KeyRetainMax: caddy.Duration(48 * time.Hour),
		Timeout: caddy.Duration(750 * time.Millisecond), Tenant: "acme",
		Secrets:       map[string]string{"API_KEY": "{env.API_KEY}", "REGION": "eu"},
		ActionSecrets: map[string]map[string]string{action: {"API_KEY": "own", "REGION": "us"}},
		Clients: map[string]ClientInfo{
			"svc-1": {Name: "Billing service", Metadata: map[string]string{"tier": "gold", "team": "payments"},
				GrantScopes: []string{"read:a", "write:a"}},
			"svc-3": {},
		},
		ClientsFile: files["CADDYHOOK_TEST_CLIENTS"], MaxBodySize: 16 * 1024,
	}
	// The digest of the files' contents; TestScriptsDigest checks its value.
	if !strings.HasPrefix(h.ScriptsDigest, "sha256:") || len(h.ScriptsDigest) != len("sha256:")+64 {
		t.Fatalf("scripts_digest = %q, want sha256:<64 hex digits>", h.ScriptsDigest)
	}
	want.ScriptsDigest = h.ScriptsDigest
	if !reflect.DeepEqual(h, want) {
		got, _ := json.MarshalIndent(h, "", "  ")
		exp, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("got\n%s\nwant\n%s", got, exp)
	}
}

// lineMark in an expected error, "@4 text", says the error must name line 4.
var lineMark = regexp.MustCompile(`^@(\d+) (.*)$`)

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	files := testFiles(t)
	hook := filepath.Join("testdata", "hooks", "starter.js")
	key := files["CADDYHOOK_TEST_SIGNING_KEY"]
	badJS := filepath.Join(t.TempDir(), "bad.js")
	if err := os.WriteFile(badJS, []byte("module.exports = function () {\n  return )\n};\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "\thook " + hook + "\n\tsigning_key " + key + "\n"
	cases := []struct {
		name, body, want string
	}{
		{"argument on the directive", "credentials_exchange extra {\n" + base + "}", "@1 wrong argument count"},
		{"unknown subdirective", "credentials_exchange {\n" + base + "\tbogus 1\n}", "@4 unrecognized subdirective 'bogus'"},
		{"missing hook", "credentials_exchange {\n\tsigning_key " + key + "\n}", "needs a hook or an action"},
		{"action without file", "credentials_exchange {\n" + base + "\taction\n}", "@4 wrong argument count"},
		{"action unreadable", "credentials_exchange {\n" + base + "\taction /nonexistent/a.js\n}", "@4 action: reading script"},
		{"action unknown sub", "credentials_exchange {\n" + base + "\taction " + hook + " {\n\t\tcolour red\n\t}\n}", "@5 unrecognized action subdirective 'colour'"},
		{"action secret one arg", "credentials_exchange {\n" + base + "\taction " + hook + " {\n\t\tsecret A\n\t}\n}", "@5 wrong argument count"},
		{"action secret twice", "credentials_exchange {\n" + base + "\taction " + hook + " {\n\t\tsecret A 1\n\t}\n\taction " + hook + " {\n\t\tsecret A 2\n\t}\n}", "@8 secret A already specified"},
		{"action two files", "credentials_exchange {\n" + base + "\taction " + hook + " " + hook + "\n}", "@4 wrong argument count"},
		{"geoip_db twice", "credentials_exchange {\n" + base + "\tgeoip_db {$CADDYHOOK_TEST_GEOIP_DB}\n\tgeoip_db x\n}", "@5 geoip_db already specified"},
		{"action does not compile", "credentials_exchange {\n" + base + "\taction " + badJS + "\n}", "@4 action: " + badJS + ": does not compile"},
		{"modules_dir missing", "credentials_exchange {\n" + base + "\tmodules_dir /nonexistent\n}", "@4 modules_dir /nonexistent is not a readable directory"},
		{"modules_dir a file", "credentials_exchange {\n" + base + "\tmodules_dir " + hook + "\n}", "is not a readable directory"},
		{"modules_dir twice", "credentials_exchange {\n" + base + "\tmodules_dir testdata\n\tmodules_dir testdata\n}", "@5 modules_dir already specified"},
		{"fetch_allow no arg", "credentials_exchange {\n" + base + "\tfetch_allow\n}", "@4 wrong argument count"},
		{"fetch_allow not a URL", "credentials_exchange {\n" + base + "\tfetch_allow api.example.com\n}", `@4 fetch_allow "api.example.com": only http and https URLs can be fetched`},
		{"fetch_allow userinfo", "credentials_exchange {\n" + base + "\tfetch_allow https://u:p@api.example.com/\n}", `@4 fetch_allow "https://u:p@api.example.com/": it must not carry credentials`},
		{"fetch_allow query", "credentials_exchange {\n" + base + "\tfetch_allow https://api.example.com/?k=1\n}", `@4 fetch_allow "https://api.example.com/?k=1": a prefix cannot have a query`},
		{"signing_alg twice", "credentials_exchange {\n\thook " + hook + "\n\tsigning_alg ES256\n\tsigning_key " + key + " PS256\n}", "@4 signing_alg already specified"},
		{"signing_alg no arg", "credentials_exchange {\n\thook " + hook + "\n\tsigning_alg\n}", "@3 wrong argument count"},
		{"key_rotation value", "credentials_exchange {\n\thook " + hook + "\n\tkey_rotation weekly\n}", `@3 key_rotation: "weekly" is not a positive duration`},
		{"key_rotation twice", "credentials_exchange {\n\thook " + hook + "\n\tkey_rotation 1h\n\tkey_rotation 2h\n}", "@4 key_rotation already specified"},
		{"key_publish_ahead value", "credentials_exchange {\n\thook " + hook + "\n\tkey_publish_ahead 0s\n}", `@3 key_publish_ahead: "0s" is not a positive duration`},
		{"key_retain_max value", "credentials_exchange {\n\thook " + hook + "\n\tkey_retain_max x\n}", `@3 key_retain_max: "x" is not a positive duration`},
		{"jwks_max_age value", "credentials_exchange {\n\thook " + hook + "\n\tjwks_max_age -5m\n}", `@3 jwks_max_age: "-5m" is not a positive duration`},
		{"publish_key unreadable", "credentials_exchange {\n\thook " + hook + "\n\tpublish_key /nonexistent.pem\n}", "@3 publish_key: open /nonexistent.pem"},
		{"verify_key bad", "credentials_exchange {\n\thook " + hook + "\n\tverify_key " + files["CADDYHOOK_TEST_BAD_KEY"] + "\n}", "@3 publish_key " + files["CADDYHOOK_TEST_BAD_KEY"]},
		{"hook without file", "credentials_exchange {\n\thook\n}", "@2 wrong argument count"},
		{"hook twice", "credentials_exchange {\n" + base + "\thook " + hook + "\n}", "@4 hook already specified"},
		{"hook unreadable", "credentials_exchange {\n\thook /nonexistent/hook.js\n}", "@2 hook: reading script"},
		{"hook does not compile", "credentials_exchange {\n\thook " + badJS + "\n}", "bad.js: does not compile: SyntaxError: " + badJS + ": Line 2:10 Unexpected token )"},
		{"json_body value", "credentials_exchange {\n" + base + "\tjson_body xml\n}", `@4 json_body must be form or keep, not "xml"`},
		{"token_path twice", "credentials_exchange {\n" + base + "\ttoken_path /a\n\ttoken_path /b\n}", "@5 token_path already specified"},
		{"token_path two args", "credentials_exchange {\n" + base + "\ttoken_path /a /b\n}", "@4 wrong argument count"},
		{"audience_param empty", "credentials_exchange {\n" + base + "\taudience_param\n}", "@4 wrong argument count"},
		{"jwks_path empty", "credentials_exchange {\n" + base + "\tjwks_path\n}", "@4 wrong argument count"},
		{"upstream_jwks empty", "credentials_exchange {\n" + base + "\tupstream_jwks\n}", "@4 wrong argument count"},
		{"upstream_key unreadable", "credentials_exchange {\n" + base + "\tupstream_key /nonexistent.pem\n}", "@4 upstream_key: open /nonexistent.pem"},
		{"upstream_key bad", "credentials_exchange {\n" + base + "\tupstream_key " + files["CADDYHOOK_TEST_BAD_KEY"] + "\n}", "@4 upstream_key "},
		{"insecure_skip_verify argument", "credentials_exchange {\n" + base + "\tinsecure_skip_verify yes\n}", "@4 wrong argument count"},
		{"isolate_runs argument", "credentials_exchange {\n" + base + "\tisolate_runs yes\n}", "@4 wrong argument count"},
		{"isolate_runs twice", "credentials_exchange {\n" + base + "\tisolate_runs\n\tisolate_runs\n}", "@5 isolate_runs already specified"},
		{"insecure_skip_verify twice", "credentials_exchange {\n" + base + "\tinsecure_skip_verify\n\tinsecure_skip_verify\n}", "@5 insecure_skip_verify already specified"},
		{"signing_key twice", "credentials_exchange {\n" + base + "\tsigning_key " + key + "\n}", "@4 signing_key already specified"},
		{"signing_key no args", "credentials_exchange {\n\thook " + hook + "\n\tsigning_key\n}", "@3 wrong argument count"},
		{"signing_key three args", "credentials_exchange {\n\thook " + hook + "\n\tsigning_key a b c\n}", "@3 wrong argument count"},
		{"signing_key unreadable", "credentials_exchange {\n\thook " + hook + "\n\tsigning_key /nonexistent.pem\n}", "@3 signing_key: open /nonexistent.pem"},
		{"signing_key bad", "credentials_exchange {\n\thook " + hook + "\n\tsigning_key " + files["CADDYHOOK_TEST_BAD_KEY"] + "\n}", "@3 signing_key " + files["CADDYHOOK_TEST_BAD_KEY"]},
		{"signing_key public", "credentials_exchange {\n\thook " + hook + "\n\tsigning_key " + files["CADDYHOOK_TEST_UPSTREAM_KEY"] + "\n}", "must be a private key"},
		{"signing_key wrong alg", "credentials_exchange {\n\thook " + hook + "\n\tsigning_key " + key + " ES256\n}", "@3 signing_key " + key + ": algorithm ES256 does not fit this key"},
		{"claims_policy value", "credentials_exchange {\n" + base + "\tclaims_policy strict\n}", `@4 claims_policy: unknown claims policy "strict"`},
		{"timeout value", "credentials_exchange {\n" + base + "\ttimeout soon\n}", `@4 timeout: "soon" is not a positive duration`},
		{"timeout negative", "credentials_exchange {\n" + base + "\ttimeout -1s\n}", `@4 timeout: "-1s" is not a positive duration`},
		{"timeout twice", "credentials_exchange {\n" + base + "\ttimeout 1s\n\ttimeout 2s\n}", "@5 timeout already specified"},
		{"tenant twice", "credentials_exchange {\n" + base + "\ttenant a\n\ttenant b\n}", "@5 tenant already specified"},
		{"secret one arg", "credentials_exchange {\n" + base + "\tsecret NAME\n}", "@4 wrong argument count"},
		{"secret twice", "credentials_exchange {\n" + base + "\tsecret A 1\n\tsecret A 2\n}", "@5 secret A already specified"},
		{"client without id", "credentials_exchange {\n" + base + "\tclient\n}", "@4 wrong argument count"},
		{"client twice", "credentials_exchange {\n" + base + "\tclient a\n\tclient a\n}", "@5 client a already specified"},
		{"client unknown sub", "credentials_exchange {\n" + base + "\tclient a {\n\t\tcolour red\n\t}\n}", "@5 unrecognized client subdirective 'colour'"},
		{"client name twice", "credentials_exchange {\n" + base + "\tclient a {\n\t\tname x\n\t\tname y\n\t}\n}", "@6 name already specified"},
		{"client metadata one arg", "credentials_exchange {\n" + base + "\tclient a {\n\t\tmetadata k\n\t}\n}", "@5 wrong argument count"},
		{"client metadata twice", "credentials_exchange {\n" + base + "\tclient a {\n\t\tmetadata k 1\n\t\tmetadata k 2\n\t}\n}", "@6 metadata k already specified"},
		{"client grant_scopes empty", "credentials_exchange {\n" + base + "\tclient a {\n\t\tgrant_scopes\n\t}\n}", "@5 wrong argument count"},
		{"client grant_scopes twice", "credentials_exchange {\n" + base + "\tclient a {\n\t\tgrant_scopes x\n\t\tgrant_scopes y\n\t}\n}", "@6 grant_scopes already specified"},
		{"clients_file unreadable", "credentials_exchange {\n" + base + "\tclients_file /nonexistent.json\n}", "@4 clients_file: open /nonexistent.json"},
		{"clients_file bad", "credentials_exchange {\n" + base + "\tclients_file " + hook + "\n}", "@4 clients_file " + hook + ": want {"},
		{"max_body_size value", "credentials_exchange {\n" + base + "\tmax_body_size lots\n}", `@4 max_body_size: "lots" is not a size`},
		{"memory_limit value", "credentials_exchange {\n" + base + "\tmemory_limit 0\n}", `@4 memory_limit: "0" is not a size`},
		{"memory_limit twice", "credentials_exchange {\n" + base + "\tmemory_limit 1GiB\n\tmemory_limit 2GiB\n}", "@5 memory_limit already specified"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.body))
			want, line := tc.want, ""
			if m := lineMark.FindStringSubmatch(want); m != nil {
				line, want = ", at Testfile:"+m[1], m[2]
			}
			if err == nil || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), line) {
				t.Fatalf("error = %v\nwant it to contain %q and end with %q", err, want, line)
			}
		})
	}
}

var scriptsDigestJSON = regexp.MustCompile(`"scripts_digest": "sha256:[0-9a-f]{64}"`)

// TestCaddyfileAdapt runs every case in testdata/caddyfile_adapt: a
// Caddyfile, a line of dashes, and the JSON it must adapt to (or "error:"
// and text the error must contain). Paths made by the test are written as
// {$CADDYHOOK_TEST_...} on both sides.
func TestCaddyfileAdapt(t *testing.T) {
	files := testFiles(t)
	cases, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.txt"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no adapt cases: %v", err)
	}
	sep := regexp.MustCompile(`(?m)^-{10,}\n`)
	for _, path := range cases {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			parts := sep.Split(string(data), 2)
			if len(parts) != 2 {
				t.Fatal("no ---------- line between the Caddyfile and the expected output")
			}
			input, expected := parts[0], strings.TrimSpace(parts[1])
			out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			var got string
			if err != nil {
				got = "error: " + err.Error()
			} else {
				var pretty any
				_ = json.Unmarshal(out, &pretty)
				b, _ := json.MarshalIndent(pretty, "", "\t")
				got = string(b)
			}
			for name, p := range files {
				got = strings.ReplaceAll(got, p, "{$"+name+"}")
			}
			// The test's key files are new on every run, so is the digest
			// of the files' contents; TestScriptsDigest checks its value.
			got = scriptsDigestJSON.ReplaceAllString(got, `"scripts_digest": "sha256:<digest>"`)
			if *update {
				if err := os.WriteFile(path, []byte(input+"----------\n"+got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.HasPrefix(expected, "error:") {
				if !strings.Contains(got, strings.TrimSpace(strings.TrimPrefix(expected, "error:"))) {
					t.Fatalf("got\n%s\nwant an error containing\n%s", got, expected)
				}
				return
			}
			if got != expected {
				t.Fatalf("got\n%s\nwant\n%s", got, expected)
			}
		})
	}
}
