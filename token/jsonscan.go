package token

import (
	"encoding/json"
	"unicode/utf8"
)

// The functions here walk JSON text that json.Valid has accepted: they find
// where members and values begin and end and check no syntax themselves, so
// they must never be given text that has not passed json.Valid.

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string that starts at data[i]
// (a '"'), and whether the string holds an escape.
func skipString(data []byte, i int) (end int, escaped bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return len(data), escaped
}

// skipValue returns the index just past the value that starts at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		end, _ := skipString(data, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i, _ = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(data) { // number, true, false or null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}

// objectMembers iterates over the members of a JSON object.
type objectMembers struct {
	data []byte
	i    int
}

// membersOf starts iterating over data, valid JSON text, and reports
// whether it is an object.
func membersOf(data []byte) (objectMembers, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return objectMembers{}, false
	}
	return objectMembers{data: data, i: i + 1}, true
}

// next returns the next member: its name as written, quotes included, and
// its value as written, without the white space around it. The value's
// capacity ends with it, so that appending to it cannot overwrite what
// follows. ok is false after the last member.
func (m *objectMembers) next() (name []byte, escaped bool, value []byte, ok bool) {
	d := m.data
	i := skipSpace(d, m.i)
	if i < len(d) && d[i] == ',' {
		i = skipSpace(d, i+1)
	}
	if i >= len(d) || d[i] != '"' { // the closing brace
		return nil, false, nil, false
	}
	end, escaped := skipString(d, i)
	name = d[i:end]
	i = skipSpace(d, end) // at the colon
	i = skipSpace(d, i+1) // at the value
	end = skipValue(d, i)
	m.i = end
	return name, escaped, d[i:end:end], true
}

// jsonString returns what encoding/json decodes quoted, a JSON string as
// written, to: the bytes between the quotes unless it must unescape them or
// replace invalid UTF-8, which it leaves to encoding/json.
func jsonString(quoted []byte, escaped bool) string {
	inner := quoted[1 : len(quoted)-1]
	if !escaped && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(quoted, &s) // valid JSON text: it cannot fail
	return s
}

// parseClaims is json.Unmarshal of payload into a map[string]json.RawMessage,
// the result and its errors alike, without the reflection: each claim is a
// slice of payload (which the caller must not reuse) rather than a copy.
// A payload that is not a JSON object (null included) is an error.
func parseClaims(payload []byte) (map[string]json.RawMessage, bool) {
	if !json.Valid(payload) {
		return nil, false
	}
	m, ok := membersOf(payload)
	if !ok {
		return nil, false
	}
	claims := make(map[string]json.RawMessage, 12)
	for {
		name, escaped, value, ok := m.next()
		if !ok {
			return claims, true
		}
		claims[jsonString(name, escaped)] = value // the last of duplicates wins, as with json.Unmarshal
	}
}

// isJSONNumber reports whether b is exactly a JSON number (RFC 8259 §6), with
// no white space around it: the text that encoding/json hands to
// strconv.ParseFloat when it decodes a float64.
func isJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}
