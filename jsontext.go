package credentialsexchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// JSON text on the hot path: reading the members of a request body or an
// upstream answer (the answer and the re-signed token's claims are written
// by internal/jsonobject). Each runs on every exchange, where
// encoding/json's reflection and repeated validation cost more than the
// rest of the non-crypto work; each is fuzzed against encoding/json
// (fuzz_test.go).

// eachMember calls fn for every member of the JSON object in raw, in order
// and duplicates included, and fails unless raw is exactly one object. Each
// value is passed as it is written in raw, without the white space around
// it; fn must not modify it.
//
// It runs on every token request and upstream answer, so it validates once
// with json.Valid and then only slices the (now known good) text, where a
// json.Decoder walked it token by token at several times the cost; the
// fuzz test FuzzEachMember holds it to the decoder's reading.
func eachMember(raw []byte, fn func(name string, value json.RawMessage) error) error {
	if !json.Valid(raw) {
		return errors.New("not a JSON object")
	}
	i := skipJSONSpace(raw, 0)
	if raw[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = skipJSONSpace(raw, i+1)
	if raw[i] == '}' {
		return nil
	}
	for {
		end := jsonStringEnd(raw, i)
		name, err := jsonString(raw[i:end])
		if err != nil {
			return err
		}
		i = skipJSONSpace(raw, end) // at the ':'
		i = skipJSONSpace(raw, i+1) // at the value
		end = jsonValueEnd(raw, i)
		if err := fn(name, json.RawMessage(raw[i:end:end])); err != nil {
			return err
		}
		i = skipJSONSpace(raw, end) // at ',' or '}'
		if raw[i] == '}' {
			return nil
		}
		i = skipJSONSpace(raw, i+1)
	}
}

// jsonString decodes a JSON string as encoding/json does (escapes
// resolved, invalid UTF-8 replaced), without a decoder for the usual plain
// string; an error for any other value.
func jsonString(quoted []byte) (string, error) {
	if n := len(quoted); n >= 2 && quoted[0] == '"' && quoted[n-1] == '"' {
		inner := quoted[1 : n-1]
		if bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 && utf8.Valid(inner) && !hasControl(inner) {
			return string(inner), nil
		}
	}
	var s string
	err := json.Unmarshal(quoted, &s)
	return s, err
}

// hasControl reports a byte JSON strings may not hold unescaped.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// The helpers below walk text json.Valid accepted, so they need not check
// what they pass over.

func skipJSONSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// jsonStringEnd returns the index just past the string that starts at
// raw[i] == '"'.
func jsonStringEnd(raw []byte, i int) int {
	for i++; ; i++ {
		switch raw[i] {
		case '\\':
			i++ // the escaped byte; \uXXXX's digits need no care
		case '"':
			return i + 1
		}
	}
}

// jsonValueEnd returns the index just past the value that starts at raw[i].
func jsonValueEnd(raw []byte, i int) int {
	switch raw[i] {
	case '"':
		return jsonStringEnd(raw, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch raw[i] {
			case '"':
				i = jsonStringEnd(raw, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	// A number or a literal: up to the next delimiter.
	for i < len(raw) {
		switch raw[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
