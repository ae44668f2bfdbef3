package caddyhook

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Error.Where names the script frames of what failed a run, for the
// operator: a thrown exception, a rejected async hook or action, with the
// first line's column counted from the script's own text. What the client
// gets, Description, carries none of it.
func TestErrorWhere(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		kind      Kind
		want      []string // lines of Where, in order
	}{
		{"hook throws", `module.exports = function (client, scope, audience, context, cb) {
  scope = undefined;
  scope.push("x");
};`, HookKind, []string{"at <anonymous> (w.js:3:3)"}},
		{"first line", `module.exports = function () { null.x; };`, HookKind, []string{"at <anonymous> (w.js:1:37)"}},
		{"async hook rejects", `function check(id) { throw new TypeError("bad " + id); }
module.exports = async function (client) {
  check(client.id);
};`, HookKind, []string{"at check (w.js:1:28)", "at <anonymous> (w.js:3:8)"}},
		{"async action rejects", `exports.onExecuteCredentialsExchange = async (event, api) => {
  await Promise.resolve();
  throw new Error("late");
};`, ActionKind, []string{"at <anonymous> (w.js:3:9)"}},
		{"rejected with no Error", `exports.onExecuteCredentialsExchange = async () => { throw "text"; };`, ActionKind, nil},
		{"a stack getter of its own", `exports.onExecuteCredentialsExchange = async () => {
  const e = new Error("x");
  Object.defineProperty(e, "stack", { get() { throw new Error("no"); } });
  throw e;
};`, ActionKind, nil},
		{"a forged stack", `exports.onExecuteCredentialsExchange = async () => {
  const e = new Error("x");
  e.stack = "Error: x\n\tat evil (/etc/passwd:1:1(0))\n\tat caddyhook:prelude:1:1(0)";
  throw e;
};`, ActionKind, []string{"at evil (/etc/passwd:1:1)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compile("w.js", []byte(tc.src), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			var e *Engine
			if tc.kind == HookKind {
				e = engine(t, s, nil)
			} else {
				e = engine(t, nil, func(c *Config) { c.Actions = []*Script{s} })
			}
			defer e.Close()
			_, err = e.Run(context.Background(), input())
			var herr *Error
			if !errors.As(err, &herr) {
				t.Fatalf("want an *Error, got %v", err)
			}
			var got []string
			if herr.Where != nil {
				for _, line := range strings.Split(herr.Where.Stack, "\n") {
					got = append(got, strings.TrimSpace(line))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Where = %q, want %q", got, tc.want)
			}
			if strings.Contains(herr.Description, "w.js") {
				t.Errorf("the client's description holds the position: %q", herr.Description)
			}
		})
	}
}
