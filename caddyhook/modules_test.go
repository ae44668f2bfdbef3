package caddyhook

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes files (path relative to dir -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// versionedModulesDir builds a modules_dir with real packages, and a package
// outside it that a symlink inside points to.
func versionedModulesDir(t *testing.T) string {
	t.Helper()
	root, outside := t.TempDir(), t.TempDir()
	writeFiles(t, root, map[string]string{
		"node_modules/ms/package.json":          `{"name": "ms", "version": "2.1.2", "main": "./index"}`,
		"node_modules/ms/index.js":              `module.exports = function ms() { return 'ms 2.1.2'; };`,
		"node_modules/@acme/util/package.json":  `{"name": "@acme/util", "version": "1.0.0-beta.1"}`,
		"node_modules/@acme/util/index.js":      `exports.name = 'util'; exports.ms = require('ms@2.1.2')();`,
		"node_modules/@acme/util/lib/sub.js":    `exports.name = 'sub';`,
		"node_modules/numeric/package.json":     `{"name": "numeric", "version": 1}`,
		"node_modules/numeric/index.js":         `exports.x = 1;`,
		"node_modules/nopkg/index.js":           `exports.x = 1;`,
		"top-level/package.json":                `{"name": "top-level", "version": "3.0.0"}`,
		"top-level/index.js":                    `exports.name = 'top';`,
		"node_modules/huge/package.json":        `{"version": "` + strings.Repeat("9", 100) + `"}`,
		"node_modules/huge/index.js":            ``,
		"node_modules/ms/node_modules/x/a.js":   ``,
		"node_modules/ms/nested/package.json":   `{"version": "1.0.0"}`,
		"node_modules/ms/nested/nested.js":      ``,
		"node_modules/ms/lib/helper.js":         `exports.helper = true;`,
		"node_modules/@acme/util/lib/deep/a.js": `exports.deep = true;`,
		"node_modules/shadow/package.json":      `{"name": "shadow", "version": "2.0.0"}`,
		"node_modules/shadow/index.js":          `module.exports = 'checked';`,
		"node_modules/shadow.js":                `module.exports = 'UNCHECKED';`,
	})
	writeFiles(t, outside, map[string]string{
		"escape/package.json": `{"name": "escape", "version": "1.0.0"}`,
		"escape/index.js":     `exports.escaped = true;`,
		"secret.js":           `exports.secret = true;`,
	})
	if err := os.Symlink(filepath.Join(outside, "escape"), filepath.Join(root, "node_modules", "escape")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestVersionedRequires(t *testing.T) {
	root := versionedModulesDir(t)
	loads := map[string]string{
		"ms@2.1.2":                           `m() === 'ms 2.1.2' && m === require('ms')`,
		"ms@2.1.2/lib/helper":                `m.helper === true`,
		"@acme/util@1.0.0-beta.1":            `m.name === 'util' && m.ms === 'ms 2.1.2' && m === require('@acme/util')`,
		"@acme/util@1.0.0-beta.1/lib/sub":    `m.name === 'sub'`,
		"@acme/util@1.0.0-beta.1/lib/deep/a": `m.deep === true`,
		"top-level@3.0.0":                    `m.name === 'top'`,
	}
	refused := map[string]string{
		"ms@2.1.3":                            "module 'ms@2.1.3' is not available: modules_dir has ms 2.1.2",
		"ms@^2.1.0":                           "module 'ms@^2.1.0' is not available: only an exact version, such as ms@1.2.3, can be required (not a range or a tag)",
		"ms@2.x":                              "only an exact version",
		"ms@~2.1.2":                           "only an exact version",
		"ms@>=2.1.2":                          "only an exact version",
		"ms@latest":                           "only an exact version",
		"ms@v2.1.2":                           "only an exact version",
		"ms@":                                 "only an exact version",
		"ms@2.1.2 || 3":                       "only an exact version",
		"ms@2.1.2@2.1.2":                      "only an exact version",
		"@acme/util@1.0.0":                    "modules_dir has @acme/util 1.0.0-beta.1",
		"@acme/util@1.0.0-beta.1/lib/missing": "module '@acme/util@1.0.0-beta.1/lib/missing' is not available",
		"numeric@1.0.0":                       "modules_dir has numeric without a version in its package.json",
		"nopkg@1.0.0":                         "modules_dir has nopkg without a package.json",
		"missing@1.0.0":                       "modules_dir has no package missing",
		"shadow@2.0.0":                        "modules_dir has shadow.js beside the package shadow, which require would load instead",
		"huge@1.0.0":                          "modules_dir has huge 9999",
		// Out of modules_dir: through a symlink, or by path tricks.
		"escape@1.0.0":              "modules_dir has escape without a package.json",
		"ms@2.1.2/../../x":          "not a path inside the package",
		"ms@2.1.2/..":               "not a path inside the package",
		"ms@2.1.2/./index":          "not a path inside the package",
		"ms@2.1.2//etc/passwd":      "not a path inside the package",
		"ms@2.1.2/lib/../../escape": "not a path inside the package",
		"ms@2.1.2/lib\\..\\..\\x":   "not a path inside the package",
		"ms@2.1.2/.hidden":          "not a path inside the package",
		"@acme/../ms@2.1.2":         "is not available",
		"@../ms@2.1.2":              "not a package name",
		"..@1.0.0":                  "is not available",
		".@1.0.0":                   "is not available",
		"@@acme/util@1.0.0-beta.1":  "not a package name",
		"ms/..@2.1.2":               "is not available",
		"../escape@1.0.0":           "is not available",
		"/etc@1.0.0":                "is not available",
		"node:ms@2.1.2":             "is not available",
	}
	src := `module.exports = function (client, scope, audience, context, cb) {
		const out = {};
		const checks = JSON.parse(context.body.loads);
		for (const id of Object.keys(checks)) {
			try { const m = require(id); out[id] = new Function('m', 'require', 'return ' + checks[id])(m, require) ? 'OK' : 'WRONG'; }
			catch (e) { out[id] = e.message; }
		}
		for (const id of JSON.parse(context.body.refused)) {
			try { require(id); out[id] = 'LOADED'; } catch (e) { out[id] = e.message; }
		}
		cb(null, {'https://t.example/out': out});
	};`
	ids := make([]string, 0, len(refused))
	for id := range refused {
		ids = append(ids, id)
	}
	loadsJSON, _ := json.Marshal(loads)
	refusedJSON, _ := json.Marshal(ids)
	in := input()
	in.Request.Body = map[string]any{"loads": string(loadsJSON), "refused": string(refusedJSON)}
	res, err := engine(t, compileHook(t, src), func(c *Config) { c.ModulesDir = root }).Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := json.Unmarshal(res.Claims["https://t.example/out"], &out); err != nil {
		t.Fatal(err)
	}
	for id := range loads {
		if out[id] != "OK" {
			t.Errorf("require(%q) = %q, want it loaded", id, out[id])
		}
	}
	for id, want := range refused {
		if got := out[id]; !strings.Contains(got, want) || !strings.HasPrefix(got, "module '") {
			t.Errorf("require(%q) = %q, want %q", id, got, want)
		}
		if strings.Contains(out[id], root) {
			t.Errorf("require(%q): the error shows the modules_dir path: %q", id, out[id])
		}
	}

	// Without a modules_dir a versioned require is refused as any package is.
	res, err = engine(t, compileHook(t, src), nil).Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(res.Claims["https://t.example/out"], &out)
	if got := out["ms@2.1.2"]; got != "module 'ms@2.1.2' is not available" {
		t.Errorf("without modules_dir: %q", got)
	}
}

// TestModulesDirErrorsNameNoOption: a modules folder that is missing or not
// a folder fails NewEngine with an error that says what is wrong and names
// no Caddyfile option: the caller, which knows the option, adds it.
func TestModulesDirErrorsNameNoOption(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file.js")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		filepath.Join(t.TempDir(), "missing"): "the modules folder: ",
		file:                                  "the modules folder " + file + " is not a directory",
	} {
		_, err := NewEngine(Config{Hook: compileHook(t, `module.exports = function (c, s, a, x, cb) { cb(null, {}); };`), ModulesDir: dir})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "modules_dir") {
			t.Errorf("ModulesDir %s: error %v, want one saying %q and naming no option", dir, err, want)
		}
	}
}
