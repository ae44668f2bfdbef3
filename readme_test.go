package credentialsexchange

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The documentation's configs are tested as a reader would use them: every
// block tagged caddyfile or json in README.md and docs/*.md must be what
// `caddy fmt` writes, must adapt without warnings and, with the files it
// names created, must pass caddy.Validate (the check `caddy validate` runs).
// A json block in README.md is a complete Caddy config and must validate the
// same way; in docs/ a json block may be another file and must only parse.
// README.md's "Code blocks in this README" states this convention.

// docBlock is one fenced code block of a Markdown file.
type docBlock struct {
	file string
	line int // line of the opening fence
	lang string
	text string // the block's content, ending in a newline
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d (%s)", b.file, b.line, b.lang) }

var fenceRE = regexp.MustCompile("^(\\s*)```\\s*([A-Za-z0-9_-]*)\\s*$")

// markdownBlocks returns the fenced blocks of the given Markdown files. A
// config block indented (inside a list) would be easy to miss here and is
// refused: keep caddyfile and json blocks at the left margin.
func markdownBlocks(t *testing.T, files ...string) []docBlock {
	t.Helper()
	var blocks []docBlock
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var cur *docBlock
		var body strings.Builder
		sc := bufio.NewScanner(bytes.NewReader(src))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			m := fenceRE.FindStringSubmatch(line)
			switch {
			case cur == nil && m != nil:
				cur = &docBlock{file: file, line: n, lang: m[2]}
				body.Reset()
				if m[1] != "" && (m[2] == "caddyfile" || m[2] == "json") {
					t.Errorf("%s:%d: an indented %s block; move it to the left margin so it is tested", file, n, m[2])
				}
			case cur != nil && m != nil && m[2] == "":
				cur.text = body.String()
				blocks = append(blocks, *cur)
				cur = nil
			case cur != nil:
				body.WriteString(line)
				body.WriteByte('\n')
			}
		}
		if cur != nil {
			t.Errorf("%s:%d: code block never closed", file, cur.line)
		}
	}
	return blocks
}

func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md"}, docs...)
}

// The numbers of config blocks the docs hold today: a block lost to a typo in
// its tag (```caddy, ```Caddyfile) would silently go untested otherwise.
// Raise them when you add blocks.
const (
	minREADMECaddyfileBlocks = 4
	minDocsCaddyfileBlocks   = 6
	readmeJSONBlocks         = 1
)

func TestDocsCaddyfileBlocks(t *testing.T) {
	blocks := markdownBlocks(t, docFiles(t)...)
	inReadme, total, jsonInReadme := 0, 0, 0
	for _, b := range blocks {
		switch b.lang {
		case "caddy", "Caddyfile", "Caddy":
			t.Errorf("%s: tag Caddyfile blocks `caddyfile` (or `text` for syntax that is not a config)", b)
		case "caddyfile":
			total++
			if b.file == "README.md" {
				inReadme++
			}
			t.Run(fmt.Sprintf("%s:%d", b.file, b.line), func(t *testing.T) { checkCaddyfileBlock(t, b) })
		case "json":
			if b.file != "README.md" {
				// Elsewhere a json block may be another file (a
				// clients_file); it must still be JSON.
				if !json.Valid([]byte(b.text)) {
					t.Errorf("%s: not valid JSON", b)
				}
				continue
			}
			jsonInReadme++
			t.Run(fmt.Sprintf("%s:%d", b.file, b.line), func(t *testing.T) { checkJSONBlock(t, b) })
		}
	}
	if inReadme < minREADMECaddyfileBlocks || total < minDocsCaddyfileBlocks {
		t.Errorf("found %d caddyfile blocks in README.md and %d in all docs; want at least %d and %d",
			inReadme, total, minREADMECaddyfileBlocks, minDocsCaddyfileBlocks)
	}
	if jsonInReadme != readmeJSONBlocks {
		t.Errorf("found %d json blocks in README.md, want %d", jsonInReadme, readmeJSONBlocks)
	}
}

// TestREADMEQuickStartCommands pins the README's first two commands: .ci/run
// runs the second verbatim, and a new reader types them first.
func TestREADMEQuickStartCommands(t *testing.T) {
	var cmds []string
	for _, b := range markdownBlocks(t, "README.md") {
		if b.lang != "sh" {
			continue
		}
		for _, line := range strings.Split(b.text, "\n") {
			if cmd, _, _ := strings.Cut(line, "#"); strings.TrimSpace(cmd) != "" {
				cmds = append(cmds, strings.TrimSpace(cmd))
			}
		}
		break
	}
	want := []string{"go run ./cmd/demo", "go test -race ./..."}
	if len(cmds) < 2 || cmds[0] != want[0] || cmds[1] != want[1] {
		t.Errorf("README's first commands are %q, want %q", cmds, want)
	}
}

func checkCaddyfileBlock(t *testing.T, b docBlock) {
	if got := caddyfile.Format([]byte(b.text)); string(got) != b.text {
		t.Errorf("caddy fmt changes the block; it should read:\n%s", got)
	}
	text := b.text
	if strings.HasPrefix(text, "credentials_exchange") {
		// A bare directive goes where a reader puts it: in a site block,
		// before the proxy.
		text = "http://127.0.0.1:8080 {\n" + text + "reverse_proxy 127.0.0.1:9096\n}\n"
	}
	dir := t.TempDir()
	text = provideFiles(t, dir, text, caddyfileFileRE)
	t.Chdir(dir) // relative paths resolve against the working directory, as in Caddy
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": b.String()})
	if err != nil {
		t.Fatalf("does not adapt: %v\n%s", err, text)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") || text == b.text {
			t.Errorf("adapt warning: %s", w.String())
		}
	}
	validate(t, dir, cfgJSON)
}

func checkJSONBlock(t *testing.T, b docBlock) {
	dir := t.TempDir()
	text := provideFiles(t, dir, b.text, jsonFileRE)
	t.Chdir(dir)
	validate(t, dir, []byte(text))
}

// validate runs caddy.Validate with Caddy's storage in dir (generated keys
// and webtask storage go there, never to the user's home or a path the
// snippet names) and the admin API off.
func validate(t *testing.T, dir string, cfgJSON []byte) {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatalf("not a JSON config: %v", err)
	}
	cfg["storage"] = map[string]any{"module": "file_system", "root": filepath.Join(dir, "storage")}
	cfg["admin"] = map[string]any{"disabled": true}
	if _, ok := cfg["logging"]; !ok {
		// Quiet, unless logging is what the snippet shows.
		cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var c caddy.Config
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("config does not decode: %v", err)
	}
	if err := caddy.Validate(&c); err != nil {
		t.Errorf("caddy validate: %v\n%s", err, out)
	}
}

var (
	// A subdirective that names a file, its path, and the rest of the line.
	caddyfileFileRE = regexp.MustCompile(`(?m)^\s*(hook|action|modules_dir|upstream_key|signing_key|publish_key|verify_key|clients_file|geoip_db)\s+("[^"]+"|[^\s{]+)([^\n]*)$`)
	// The same JSON fields; an array (actions, publish_keys) is read string by string.
	jsonFileRE   = regexp.MustCompile(`"(hook|actions|modules_dir|upstream_key|signing_key|publish_keys|clients_file|geoip_db)"\s*:\s*(\[[^\]]*\]|"[^"]*")()`)
	jsonStringRE = regexp.MustCompile(`"([^"]*)"`)
)

// provideFiles creates, under dir, a valid file for every path the config
// names (a hook, an action, a key of the type its algorithm needs, a
// clients file, a GeoIP database, a modules folder) and returns the config
// with absolute paths moved under dir. Relative paths are created relative
// to dir, which the caller makes the working directory.
func provideFiles(t *testing.T, dir, text string, re *regexp.Regexp) string {
	t.Helper()
	starter, err := os.ReadFile(filepath.Join("testdata", "hooks", "starter.js"))
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		kind, rest := m[1], m[3]
		var paths []string
		if strings.HasPrefix(m[2], "[") {
			for _, s := range jsonStringRE.FindAllStringSubmatch(m[2], -1) {
				paths = append(paths, s[1])
			}
		} else {
			paths = append(paths, strings.Trim(m[2], `"`))
		}
		for _, p := range paths {
			if strings.ContainsAny(p, "{}<>") {
				t.Fatalf("%s %s: a placeholder path cannot be provided; use a file name", kind, p)
			}
			target := filepath.Join(dir, p) // an absolute p is moved under dir too
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			var content []byte
			switch kind {
			case "hook":
				content = starter
			case "action", "actions":
				content = []byte("exports.onExecuteCredentialsExchange = async (event, api) => {};\n")
			case "modules_dir":
				if err := os.MkdirAll(filepath.Join(target, "node_modules"), 0o755); err != nil {
					t.Fatal(err)
				}
			case "signing_key":
				content = privateKeyPEM(t, rest)
			case "upstream_key", "publish_key", "verify_key", "publish_keys":
				content = publicKeyPEM(t)
			case "clients_file":
				content = []byte(`{"svc-billing": {"name": "Billing", "metadata": {"tier": "gold"}, "grant_scopes": ["read:invoices"]}}` + "\n")
			case "geoip_db":
				if content, err = os.ReadFile(writeGeoDB(t, "GeoIP2-City")); err != nil {
					t.Fatal(err)
				}
			}
			if content != nil {
				if err := os.WriteFile(target, content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if filepath.IsAbs(p) {
				moved[p] = target
			}
		}
	}
	for from, to := range moved {
		text = strings.ReplaceAll(text, from, to)
	}
	return text
}

// privateKeyPEM is a PKCS#8 private key that fits the algorithm named after
// the path, if any (ES256 when none is).
func privateKeyPEM(t *testing.T, alg string) []byte {
	t.Helper()
	var key any
	var err error
	switch alg = strings.TrimSpace(alg); {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case alg == "ES384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case alg == "EdDSA":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// publicKeyPEM is the public half of a fresh P-256 key.
func publicKeyPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

var (
	mdLinkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeadingRE = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	anchorDrop  = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
)

// TestDocsLinks checks that every relative link in the docs names a file of
// the repository and, with a #fragment, a heading of that file (as GitHub
// makes anchors: lower case, punctuation dropped, spaces to hyphens), so a
// renamed section cannot leave the contents or a cross-reference dangling.
func TestDocsLinks(t *testing.T) {
	anchors := func(file string) map[string]bool {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, m := range mdHeadingRE.FindAllStringSubmatch(withoutCodeBlocks(string(src)), -1) {
			a := strings.ToLower(strings.TrimSpace(m[1]))
			set[strings.ReplaceAll(anchorDrop.ReplaceAllString(a, ""), " ", "-")] = true
		}
		return set
	}
	links := 0
	for _, file := range append(docFiles(t), "SECURITY.md", "xcaddy.md") {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLinkRE.FindAllStringSubmatch(withoutCodeBlocks(string(src)), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			links++
			path, frag, _ := strings.Cut(link, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), path)
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: link %s: %v", file, link, err)
					continue
				}
			}
			if frag != "" && !anchors(target)[frag] {
				t.Errorf("%s: link %s: %s has no heading with that anchor", file, link, target)
			}
		}
	}
	if links < 50 {
		t.Errorf("found %d relative links in the docs; the README alone has more", links)
	}
}

// withoutCodeBlocks drops fenced blocks, whose # lines are not headings.
func withoutCodeBlocks(md string) string {
	var out strings.Builder
	in := false
	for _, line := range strings.Split(md, "\n") {
		if fenceRE.MatchString(line) {
			in = !in
			continue
		}
		if !in {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.String()
}
