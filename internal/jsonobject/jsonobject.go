// Package jsonobject writes JSON objects of raw members as json.Marshal
// does, without its reflection: the token answer and the claims of every
// re-signed token go through it, once per exchange. It is shared by the
// handler (the answer) and token/ (the payload it signs), so that both
// write JSON one way; FuzzEncode holds it to json.Marshal.
package jsonobject

import (
	"encoding/json"
	"maps"
	"slices"
)

// Encode encodes m as json.Marshal does (members sorted by name, values
// compacted, <, > and & escaped), for values that are valid JSON, which
// every caller's are: members read by a JSON scanner (the handler's
// eachMember, token's parseClaims), json.Marshal's output, and the hook's
// results. A value that is already
// as json.Marshal would write it, as nearly all are, is copied as it is;
// any other goes through json.Marshal.
func Encode(m map[string]json.RawMessage) ([]byte, error) {
	size := 2
	for k, v := range m {
		size += len(k) + len(v) + 4
	}
	buf := make([]byte, 0, size)
	buf = append(buf, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			buf = append(buf, ',')
		}
		if PlainString(k) {
			buf = append(buf, '"')
			buf = append(buf, k...)
			buf = append(buf, '"')
		} else {
			name, err := json.Marshal(k)
			if err != nil {
				return nil, err
			}
			buf = append(buf, name...)
		}
		buf = append(buf, ':')
		v := m[k]
		if len(v) == 0 || !plainValue(v) {
			enc, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			v = enc
		}
		buf = append(buf, v...)
	}
	return append(buf, '}'), nil
}

// PlainString reports a string (a member name, a compact JWS) json.Marshal
// writes as it is between quotes: printable ASCII without the quote and
// backslash it escapes, or the <, > and & it escapes for HTML.
func PlainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainValue reports a valid JSON value json.Marshal copies unchanged: no
// white space (it drops what is outside strings), only ASCII (it rewrites
// U+2028 and U+2029), none of <, > and &.
func plainValue(v []byte) bool {
	for _, c := range v {
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
