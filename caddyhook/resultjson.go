package caddyhook

import (
	"bytes"
	"encoding/json"
	"iter"
	"unicode/utf8"
)

// Reading what scripts return. A hook's result object and the scopes given
// to setTargetScopes reach Go as JSON.stringify's text (toJSON), which is
// compact and, for the results hooks return, small and plain. encoding/json
// reads it through reflection, a map and a validating scanner: most of the
// cost of a warm run's result. The readers here take the common shape
// directly and report ok=false for anything else (white space, an escape
// in a key or a scope, a repeated key, deep nesting, text that is not
// JSON), which the callers then hand to encoding/json as before: whatever
// the text, the outcome is the one json.Unmarshal gives.

// jsonMember is one member of a JSON object; value is its JSON text, a
// slice of the object's.
type jsonMember struct {
	name  []byte
	value []byte
}

const (
	// maxFastMembers bounds the members splitObject takes (it looks for
	// repeated keys pair by pair).
	maxFastMembers = 32
	// maxFastDepth bounds the nesting skipJSON follows.
	maxFastDepth = 64
)

// splitObject appends the members of the JSON object raw to members, in
// order. ok is false when raw is not a compact object whose keys are
// unescaped, valid UTF-8 and distinct, or when a value is not valid JSON.
func splitObject(raw []byte, members []jsonMember) (_ []jsonMember, ok bool) {
	n := len(raw)
	if n < 2 || raw[0] != '{' || raw[n-1] != '}' {
		return members, false
	}
	if n == 2 {
		return members, true
	}
	first := len(members)
	for i := 1; ; {
		if i >= n || raw[i] != '"' {
			return members, false
		}
		start := i + 1
		end := start
		for end < n && raw[end] != '"' {
			if c := raw[end]; c < 0x20 || c == '\\' {
				return members, false
			}
			end++
		}
		if end+1 >= n || raw[end+1] != ':' {
			return members, false
		}
		name := raw[start:end]
		if !utf8.Valid(name) || len(members)-first >= maxFastMembers {
			return members, false
		}
		for _, m := range members[first:] {
			if bytes.Equal(m.name, name) {
				return members, false
			}
		}
		vstart := end + 2
		vend, ok := skipJSON(raw, vstart, 0)
		if !ok || vend >= n {
			return members, false
		}
		members = append(members, jsonMember{name: name, value: raw[vstart:vend:vend]})
		switch raw[vend] {
		case ',':
			i = vend + 1
		case '}':
			return members, vend == n-1
		default:
			return members, false
		}
	}
}

// skipJSON returns the end of the JSON value that starts at raw[i]; ok is
// false when there is none there (or it is nested past maxFastDepth). It
// takes no white space.
func skipJSON(raw []byte, i, depth int) (end int, ok bool) {
	n := len(raw)
	if i >= n || depth > maxFastDepth {
		return 0, false
	}
	switch c := raw[i]; {
	case c == '"':
		return skipJSONString(raw, i)
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i++
		if i < n && raw[i] == closing {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i, ok = skipJSONString(raw, i); !ok || i >= n || raw[i] != ':' {
					return 0, false
				}
				i++
			}
			if i, ok = skipJSON(raw, i, depth+1); !ok || i >= n {
				return 0, false
			}
			switch raw[i] {
			case ',':
				i++
			case closing:
				return i + 1, true
			default:
				return 0, false
			}
		}
	case c == 't':
		return skipLiteral(raw, i, "true")
	case c == 'f':
		return skipLiteral(raw, i, "false")
	case c == 'n':
		return skipLiteral(raw, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		end = i
		for end < n && (raw[end] >= '0' && raw[end] <= '9' || raw[end] == '-' || raw[end] == '+' || raw[end] == '.' || raw[end] == 'e' || raw[end] == 'E') {
			end++
		}
		return end, isJSONNumber(string(raw[i:end]))
	}
	return 0, false
}

func skipLiteral(raw []byte, i int, lit string) (int, bool) {
	if len(raw)-i >= len(lit) && string(raw[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return 0, false
}

// skipJSONString returns the end of the JSON string that starts at raw[i].
// Like encoding/json, it takes any byte but the control characters inside
// the quotes; escapes must be JSON's.
func skipJSONString(raw []byte, i int) (int, bool) {
	n := len(raw)
	if i >= n || raw[i] != '"' {
		return 0, false
	}
	for i++; i < n; i++ {
		switch c := raw[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			i++
			if i >= n {
				return 0, false
			}
			switch raw[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if n-i <= 4 {
					return 0, false
				}
				for _, h := range raw[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false
					}
				}
				i += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// plainStrings reports whether raw is a compact JSON array of strings that
// hold only printable ASCII and no escapes, and how many it holds.
func plainStrings(raw []byte) (count int, ok bool) {
	n := len(raw)
	if n < 2 || raw[0] != '[' || raw[n-1] != ']' {
		return 0, false
	}
	if n == 2 {
		return 0, true
	}
	for i := 1; ; {
		if raw[i] != '"' {
			return 0, false
		}
		for i++; i < n && raw[i] != '"'; i++ {
			if c := raw[i]; c < 0x20 || c >= 0x7f || c == '\\' {
				return 0, false
			}
		}
		count++
		switch {
		case i+1 >= n:
			return 0, false
		case raw[i+1] == ']':
			return count, i+2 == n
		case raw[i+1] != ',':
			return 0, false
		}
		i += 2
	}
}

// eachPlainString yields the items of an array plainStrings took, in
// place.
func eachPlainString(raw []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for i := 1; i < len(raw)-1; {
			end := i + 1 + bytes.IndexByte(raw[i+1:], '"')
			if !yield(raw[i+1 : end]) {
				return
			}
			i = end + 2
		}
	}
}

// objectMembers is splitObject, falling back to encoding/json (whose map
// gives the members in no particular order) for what splitObject does not
// take. A result that is not an object, per json.Unmarshal, is reported by
// ok=false.
func objectMembers(raw []byte, members []jsonMember) (_ []jsonMember, ok bool) {
	if fast, ok := splitObject(raw, members); ok {
		return fast, true
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return members, false
	}
	for name, value := range obj {
		members = append(members, jsonMember{name: []byte(name), value: value})
	}
	return members, true
}
