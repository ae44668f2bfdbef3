package caddyhook

// Values between Go and the scripts: toJS hands Go data over as JSON.parse
// would, the inputs every script gets are built with it, and toJSON reads
// a script's value back through JSON.stringify (resultjson.go reads that
// text).

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dop251/goja"
	"go.uber.org/zap"
)

// define sets a data property on an object built here, without running any
// setter a script may have put on Object.prototype.
func define(vm *goja.Runtime, obj *goja.Object, name string, v any) {
	_ = obj.DefineDataProperty(name, vm.ToValue(v), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
}

// maxInputDepth bounds the nesting of data handed to scripts; it is
// encoding/json's own limit, so no request body that decoded can pass it.
const maxInputDepth = 10000

// toJS builds a plain JavaScript value from Go data, as Node's JSON.parse
// would hand it over: objects (keys sorted), arrays, strings, numbers
// (json.Number too, with Infinity for one too large, as JSON.parse gives),
// booleans and null. It never panics; data it cannot hand over is an error.
func (r *run) toJS(v any) (goja.Value, error) { return r.toJSDepth(v, 0) }

func (r *run) toJSDepth(v any, depth int) (goja.Value, error) {
	if depth > maxInputDepth {
		return nil, textError(fmt.Sprintf("data nested more than %d deep", maxInputDepth))
	}
	vm := r.vm
	switch x := v.(type) {
	case nil:
		return goja.Null(), nil
	case goja.Value:
		return x, nil
	case string:
		return vm.ToValue(validUTF8(x)), nil
	case bool:
		return vm.ToValue(x), nil
	case json.Number:
		f, err := parseJSONNumber(string(x))
		if err != nil {
			return nil, err
		}
		return vm.ToValue(f), nil
	case float64:
		return vm.ToValue(x), nil
	case float32:
		return vm.ToValue(float64(x)), nil
	case int:
		return vm.ToValue(x), nil
	case int64:
		return vm.ToValue(x), nil
	case json.RawMessage:
		out, err := r.w.parse(goja.Undefined(), vm.ToValue(string(x)))
		if err != nil {
			return nil, textError("JSON the runtime cannot parse")
		}
		return out, nil
	case []any:
		items := make([]any, len(x))
		for i, item := range x {
			jv, err := r.toJSDepth(item, depth+1)
			if err != nil {
				return nil, err
			}
			items[i] = jv
		}
		return vm.NewArray(items...), nil
	case []string:
		items := make([]any, len(x))
		for i, s := range x {
			items[i] = vm.ToValue(validUTF8(s)) // NewArray takes a goja value as it is
		}
		return vm.NewArray(items...), nil
	case map[string]any:
		return toJSObject(r, x, depth)
	case map[string]string:
		return toJSStrings(r, x)
	case map[string]json.RawMessage:
		return toJSObject(r, x, depth)
	}
	// Anything else goes through encoding/json, as it always did.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, textError(fmt.Sprintf("a %T cannot be encoded as JSON", v))
	}
	return r.toJSDepth(json.RawMessage(b), depth)
}

func toJSObject[V any](r *run, m map[string]V, depth int) (goja.Value, error) {
	if len(m) == 0 {
		return r.vm.NewObject(), nil
	}
	obj := r.w.newPlain()
	var small [16]string
	for _, k := range sortedKeys(m, small[:0]) {
		jv, err := r.toJSDepth(m[k], depth+1)
		if err != nil {
			return nil, err
		}
		if err := obj.Set(validUTF8(k), jv); err != nil {
			return nil, textError("an object member cannot be defined")
		}
	}
	return r.w.donePlain(obj), nil
}

// toJSStrings is toJSObject for the string maps every run hands over
// (metadata, secrets), without boxing each value on the way.
func toJSStrings(r *run, m map[string]string) (goja.Value, error) {
	if len(m) == 0 {
		return r.vm.NewObject(), nil
	}
	obj := r.w.newPlain()
	var small [16]string
	for _, k := range sortedKeys(m, small[:0]) {
		if err := obj.Set(validUTF8(k), r.vm.ToValue(validUTF8(m[k]))); err != nil {
			return nil, textError("an object member cannot be defined")
		}
	}
	return r.w.donePlain(obj), nil
}

// sortedKeys returns m's keys in order, in buf when they fit.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	keys := buf[:0]
	if len(m) > cap(buf) {
		keys = make([]string, 0, len(m))
	}
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validUTF8 replaces each byte of s that is not UTF-8 with U+FFFD, as
// encoding/json does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// parseJSONNumber reads a JSON number as JSON.parse does: the nearest
// double, Infinity when it is too large and 0 when it is too small.
func parseJSONNumber(s string) (float64, error) {
	if !isJSONNumber(s) {
		return 0, textError("a number that is not a JSON number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, textError("a number that is not a JSON number")
	}
	return f, nil // on ErrRange, ParseFloat gives ±Inf or ±0, as JSON.parse does
}

// isJSONNumber reports whether s is a number in JSON's grammar (RFC 8259 §6).
func isJSONNumber(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// bodyAndSecrets builds the two inputs hooks and actions both get: the
// request body and a fresh copy of s's secrets.
func (r *run) bodyAndSecrets(log *scriptLog, s *Script) (body, secrets goja.Value, err *Error) {
	body, jerr := r.toJS(orEmpty(r.in.Request.Body))
	if jerr != nil { // only the client controls the body: its invalid_request
		log.Info("the request body cannot be given to the script", zap.String("reason", jerr.Error()))
		return nil, nil, errorFor(CodeInvalidRequest, "the request body cannot be given to the hook")
	}
	all, own := r.eng.actionSecrets[s]
	if !own {
		all = r.eng.cfg.Secrets
	}
	if secrets, err = r.input(all); err != nil {
		return nil, nil, err
	}
	return body, secrets, nil
}

// input hands Go data the engine built (not the client) to a script.
func (r *run) input(v any) (goja.Value, *Error) {
	out, err := r.toJS(v)
	if err != nil {
		return nil, errorFor(CodeServerError, "the hook's input cannot be built: "+err.Error())
	}
	return out, nil
}

// errJSONTooLarge is toJSON's error for a value whose JSON is too long.
type errJSONTooLarge int

func (e errJSONTooLarge) Error() string {
	return fmt.Sprintf("the value is more than %d bytes as JSON", int(e))
}

// maxResultJSON bounds the JSON of a hook's result object, before its
// claims are sorted out; the claims that reach the token are bounded by
// maxClaimsSize.
const maxResultJSON = 16 << 20

// toJSON serialises a script's value as Auth0 did, through JSON.stringify;
// ok is false for values JSON cannot hold (undefined, functions). A result
// of more than max characters is an error, found before it is copied.
func (r *run) toJSON(v goja.Value, max int) (json.RawMessage, bool, error) {
	s, err := r.stringify(goja.Undefined(), v)
	if err != nil {
		return nil, false, err
	}
	str, ok := s.(goja.String)
	if !ok {
		return nil, false, nil
	}
	if str.Length() > max {
		return nil, false, errJSONTooLarge(max)
	}
	return json.RawMessage(str.String()), true, nil
}

// orEmpty hands scripts {} rather than null for an absent map.
func orEmpty[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}
