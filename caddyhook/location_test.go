package caddyhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyhook/caddyhook/internal/logscan"
)

// A script's runtime error carries, for the log, the file, line and column
// where it happened and the JavaScript stack, with no Go frame in it; the
// description, which the client gets, carries none of that.
func TestErrorLocation(t *testing.T) {
	cases := []struct {
		name, src   string
		line, col   int
		stackHas    string
		wantNoWhere bool
	}{
		{"thrown", "function inner() {\n  throw new Error('boom');\n}\nmodule.exports = function (c, s, a, x, cb) {\n  inner();\n};", 2, 9, "at inner (hook.js:2:9)", false},
		{"type error", "module.exports = function (c, s, a, x, cb) {\n  const o = null;\n  o.x = 1;\n};", 3, 5, "hook.js:3:5", false},
		{"cb error", "module.exports = function (c, s, a, x, cb) {\n\n  cb(new Error('no'));\n};", 3, 6, "hook.js:3:6", false},
		{"async rejection", "module.exports = async function (c, s, a, x, cb) {\n  await null;\n  throw new Error('late');\n};", 3, 9, "hook.js:3:9", false},
		{"denial", "module.exports = function (c, s, a, x, cb) {\n  cb(new InvalidRequestError('no'));\n};", 0, 0, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, compileHook(t, tc.src), nil)
			_, err := e.Run(context.Background(), input())
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("err = %v", err)
			}
			if tc.wantNoWhere {
				if he.Where != nil {
					t.Fatalf("Where = %+v for a denial", he.Where)
				}
				return
			}
			w := he.Where
			if w == nil {
				t.Fatalf("no Where in %+v", he)
			}
			if w.File != "hook.js" || w.Line != tc.line || w.Column != tc.col {
				t.Errorf("at %s:%d:%d, want hook.js:%d:%d", w.File, w.Line, w.Column, tc.line, tc.col)
			}
			if !strings.Contains(w.Stack, tc.stackHas) {
				t.Errorf("stack %q lacks %q", w.Stack, tc.stackHas)
			}
			for _, bad := range []string{"github.com", "native", ".go:"} {
				if strings.Contains(w.Stack, bad) || strings.Contains(he.Description, bad) {
					t.Errorf("%q in stack %q or description %q", bad, w.Stack, he.Description)
				}
			}
		})
	}
}

// goja's text for an exception ends with its first frame, which for a Go
// function is Go internals; a description never keeps it.
func TestCleanDescriptionDropsGoFrames(t *testing.T) {
	in := "GoError: module 'x' is not available at github.com/caddyhook/caddyhook/caddyhook.(*modules).enable.func1 (native)"
	got := cleanDescription(in)
	if got != "module 'x' is not available" {
		t.Fatalf("cleanDescription = %q", got)
	}
}

// OnOutboundCall hears each call's outcome, from the bounded set.
func TestOnOutboundCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var mu sync.Mutex
	var got []string
	src := `module.exports = async function (c, s, a, x, cb) {
  await fetch('` + srv.URL + `/ok');
  await fetch('` + srv.URL + `/bad');
  try { await fetch('http://elsewhere.invalid/'); } catch (e) {}
  cb(null, {});
};`
	e := engine(t, compileHook(t, src), func(c *Config) {
		c.FetchAllow = []string{srv.URL + "/"}
		c.OnOutboundCall = func(o string) { mu.Lock(); got = append(got, o); mu.Unlock() }
	})
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{outboundOK, outboundHTTPError, outboundRefused}; !slices.Equal(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
}

// A require that fails, at the top level or in a run, in the script or in
// a package it requires, is described without Go internals: no GoError
// class, no Go function frame, no Go file.
func TestRequireFailureHasNoGoInternals(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "node_modules", "p")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	clean := func(t *testing.T, text string) {
		t.Helper()
		for _, bad := range []string{"GoError", "github.com", "(native)", ".go:"} {
			if strings.Contains(text, bad) {
				t.Errorf("%q holds %q", text, bad)
			}
		}
	}
	for _, inner := range []string{"require('fs');", "require('nope');", "null.x;"} {
		if err := os.WriteFile(filepath.Join(pkg, "index.js"), []byte(inner+"\nmodule.exports = 1;"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, top := range []string{"require('p');", "require('fs');", ""} {
			src := top + "\nmodule.exports = function (c, s, a, x, cb) { require('p'); cb(null, {}); };"
			_, err := NewEngine(Config{Hook: compileHook(t, src), Timeout: time.Second, ModulesDir: dir, Logger: logscan.Logger()})
			if top != "" {
				if err == nil {
					t.Fatalf("%s / %s: no error at load", inner, top)
				}
				clean(t, err.Error())
				continue
			}
			e := engine(t, compileHook(t, src), func(c *Config) { c.ModulesDir = dir })
			_, err = e.Run(context.Background(), input())
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("%s: err = %v", inner, err)
			}
			clean(t, he.Description)
		}
	}
}

// An error's message is often text the script did not write (a client's
// parameter, an upstream's answer) and goja puts it at the head of the
// error's stack: lines in it shaped like stack frames must not become the
// logged location, and a frame's file name stays bounded.
func TestErrorLocationNotForgedByMessage(t *testing.T) {
	forged := `no\n    at forged (` + strings.Repeat("e", 4000) + `.js:99:7(0))\n\tat forged2 (evil.js:1:1(0))`
	cases := map[string]string{
		"cb":     "module.exports = function (c, s, a, x, cb) {\n  cb(new Error('" + forged + "'));\n};",
		"reject": "module.exports = async function (c, s, a, x, cb) {\n  await null;\n  return Promise.reject(new TypeError('" + forged + "'));\n};",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			e := engine(t, compileHook(t, src), nil)
			_, err := e.Run(context.Background(), input())
			var he *Error
			if !errors.As(err, &he) || he.Where == nil {
				t.Fatalf("err = %v", err)
			}
			w := he.Where
			if w.File != "hook.js" {
				t.Errorf("location %.80s:%d:%d, want hook.js", w.File, w.Line, w.Column)
			}
			if strings.Contains(w.Stack, "forged") || len(w.Stack) > 4096 {
				t.Errorf("stack %.200q holds the message's lines", w.Stack)
			}
		})
	}
}
