package caddyhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyhook/caddyhook/internal/textcap"
)

// resultJSONCases are texts the result readers must read as encoding/json
// does: the shapes they take, and the ones they must hand over.
var resultJSONCases = []string{
	`{}`, `{"scope":["read:a"]}`, `{"scope":["read:a","write:a"],"https://x/t":"gold"}`,
	`{"a":1,"b":-1.5e+3,"c":true,"d":false,"e":null,"f":"x\"y","g":[],"h":{},"i":[1,[2,{"j":"k"}]]}`,
	`{"a":"\u00e9\ud83d\ude00","b":"\\","c":"\/"}`, `{"é":1}`, `{"a\"b":1}`, `{"a\\b":1}`, `{"\u0061":1}`,
	`{"a":1,"a":2}`, `{"scope":["a"],"scope":["b"]}`, `{ "a": 1 }`, `{"a":1,}`, `{"a":01}`, `{"a":1.}`,
	`{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":"x`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"` + "\x01" + `"}`,
	`{"a":[1,]}`, `{"a":{"b"}}`, `{"a":{"b":}}`, `{"a":{1:2}}`, `{"a":1}x`, `{"a":1}}`, `{a:1}`, `{"a"}`,
	`null`, `[]`, `[1]`, `"s"`, `1`, `true`, ``, `{`, `}`, `{"` + "\xff" + `":1}`, `{"a":"` + "\xff" + `"}`,
	`{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	`{"a":` + strings.Repeat("[", 30) + strings.Repeat("]", 30) + `}`,
	`{"scope":null}`, `{"scope":"read:a"}`, `{"scope":[1]}`, `{"scope":["a",1]}`,
}

func TestObjectMembersAsEncodingJSON(t *testing.T) {
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf(`"k%d":%d`, i, i)
	}
	for _, text := range append(resultJSONCases, "{"+strings.Join(many, ",")+"}") {
		var want map[string]json.RawMessage
		wantOK := json.Unmarshal([]byte(text), &want) == nil && want != nil
		members, ok := objectMembers([]byte(text), nil)
		if ok != wantOK {
			t.Errorf("%q: ok = %v, want %v", text, ok, wantOK)
			continue
		}
		if !ok {
			continue
		}
		got := map[string]json.RawMessage{}
		for _, m := range members {
			got[string(m.name)] = m.value
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: members = %q, want %q", text, got, want)
		}
	}
	// The shapes JSON.stringify gives are read without encoding/json.
	for _, text := range []string{`{}`, `{"scope":["read:a"],"https://x/t":"gold"}`, `{"a":{"b":[1,-2.5e-3,null]},"é":"\u00e9"}`} {
		if _, ok := splitObject([]byte(text), nil); !ok {
			t.Errorf("%q: not read in place", text)
		}
	}
}

// FuzzResultJSON checks the result readers against encoding/json.
func FuzzResultJSON(f *testing.F) {
	for _, text := range resultJSONCases {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var want map[string]json.RawMessage
		wantOK := json.Unmarshal([]byte(text), &want) == nil && want != nil
		members, ok := objectMembers([]byte(text), nil)
		if ok != wantOK {
			t.Fatalf("%q: ok = %v, want %v", text, ok, wantOK)
		}
		if ok {
			got := map[string]json.RawMessage{}
			for _, m := range members {
				got[string(m.name)] = m.value
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: members = %q, want %q", text, got, want)
			}
		}
		wantScope, wantErr := parseScopeReference(json.RawMessage(text))
		scope, err := parseScope(json.RawMessage(text))
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(scope, wantScope) || (scope == nil) != (wantScope == nil) {
			t.Fatalf("%q: parseScope = %q, %v; want %q, %v", text, scope, err, wantScope, wantErr)
		}
	})
}

// parseScopeReference is parseScope as it was, through encoding/json only.
func parseScopeReference(raw json.RawMessage) ([]string, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var list []any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("scope must be an array of strings")
	}
	seen := map[string]bool{}
	out := make([]string, 0, min(len(list), maxScopes+1))
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("scope must be an array of strings, it holds %s", jsonKind(v))
		}
		if s == "" || seen[s] {
			continue
		}
		if !validScope(s) {
			return nil, fmt.Errorf("scope %q holds a character a scope token cannot have", textcap.Cap(s, 64))
		}
		seen[s] = true
		out = append(out, s)
		if len(out) > maxScopes {
			return nil, checkScopeLimits(out)
		}
	}
	if err := checkScopeLimits(out); err != nil {
		return nil, err
	}
	return out, nil
}

func TestParseScopeAsEncodingJSON(t *testing.T) {
	quoted := func(n int, f func(i int) string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = `"` + f(i) + `"`
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	cases := []string{
		`[]`, `["read:a"]`, `["a","b","a",""]`, `["",""]`, `["a b"]`, `["a","b c",1]`, `[1,"a b"]`,
		`["a\"b"]`, `["a\\b"]`, `["\u0061"]`, `["é"]`, `["` + "\x7f" + `"]`, `["` + "\xff" + `"]`, `["a",]`,
		`[ "a"]`, `["a" ]`, `["a"]]`, `[["a"]]`, `[null]`, `[true]`, `[{}]`, `{}`, `"a"`, `1`, `null`, ``, `[`,
		`["a"`, `["a",`, `["a"x]`, `[""]`,
		quoted(40, func(i int) string { return fmt.Sprintf("s%d", i%25) }),
		quoted(maxScopes+1, func(i int) string { return fmt.Sprintf("s%d", i) }),
		quoted(maxScopes+5, func(i int) string { return fmt.Sprintf("s%d", i%(maxScopes-1)) }),
		quoted(3, func(int) string { return strings.Repeat("x", maxScopeSize/2) }),
		quoted(3, func(i int) string { return strings.Repeat("x", maxScopeSize/2) + fmt.Sprint(i) }),
	}
	for _, text := range cases {
		want, wantErr := parseScopeReference(json.RawMessage(text))
		got, err := parseScope(json.RawMessage(text))
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) || (got == nil) != (want == nil) {
			t.Errorf("%.80q: parseScope = %q, %v; want %q, %v", text, got, err, want, wantErr)
		}
	}
}
