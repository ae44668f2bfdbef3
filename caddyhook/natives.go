package caddyhook

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	"github.com/google/uuid"
)

var hashes = map[string]func() hash.Hash{
	"md5": md5.New, "sha1": sha1.New, "sha224": sha256.New224, "sha256": sha256.New,
	"sha384": sha512.New384, "sha512": sha512.New,
}

func newHash(vm *goja.Runtime, v goja.Value) func() hash.Hash {
	name, ok := scriptString(v)
	if !ok {
		throwTypeError(vm, `The "algorithm" argument must be of type string`)
	}
	h, ok := hashes[strings.ToLower(strings.ReplaceAll(name, "-", ""))]
	if !ok {
		panic(vm.NewGoError(fmt.Errorf("digest method %q is not supported (md5, sha1, sha224, sha256, sha384, sha512)", textcap.Cap(name, 64))))
	}
	return h
}

// requireCrypto is the crypto module: hashing, HMAC, random UUIDs and bytes,
// and timingSafeEqual; the rest of Node's crypto is not offered.
func requireCrypto(vm *goja.Runtime, module *goja.Object) {
	exports := module.Get("exports").ToObject(vm)
	wrap := func(h hash.Hash) *goja.Object {
		obj := vm.NewObject()
		done := false
		_ = obj.Set("update", func(call goja.FunctionCall) goja.Value {
			if done {
				throwTypeError(vm, "Digest already called")
			}
			h.Write(bytesArg(vm, call.Argument(0), call.Argument(1)))
			return obj
		})
		_ = obj.Set("digest", func(call goja.FunctionCall) goja.Value {
			if done {
				throwTypeError(vm, "Digest already called")
			}
			done = true
			return buffer.EncodeBytes(vm, h.Sum(nil), call.Argument(0))
		})
		return obj
	}
	_ = exports.Set("createHash", func(call goja.FunctionCall) goja.Value {
		return wrap(newHash(vm, call.Argument(0))())
	})
	_ = exports.Set("createHmac", func(call goja.FunctionCall) goja.Value {
		h := newHash(vm, call.Argument(0))
		return wrap(hmac.New(h, bytesArg(vm, call.Argument(1), goja.Undefined())))
	})
	_ = exports.Set("randomUUID", func(goja.FunctionCall) goja.Value { return vm.ToValue(uuid.NewString()) })
	_ = exports.Set("randomBytes", func(call goja.FunctionCall) goja.Value {
		size := call.Argument(0)
		if !goja.IsNumber(size) {
			throwTypeError(vm, `The "size" argument must be of type number`)
		}
		f := size.ToFloat()
		if !(f >= 0 && f <= 65536) || f != math.Trunc(f) {
			panic(vm.NewGoError(fmt.Errorf("randomBytes size is out of range (an integer from 0 to 65536)")))
		}
		b := make([]byte, int(f))
		_, _ = rand.Read(b)
		out := buffer.WrapBytes(vm, b)
		if cb, ok := goja.AssertFunction(call.Argument(1)); ok {
			if _, err := cb(goja.Undefined(), goja.Null(), out); err != nil {
				rethrow(vm, err)
			}
			return goja.Undefined()
		}
		return out
	})
	_ = exports.Set("timingSafeEqual", func(call goja.FunctionCall) goja.Value {
		x, y := bytesArg(vm, call.Argument(0), goja.Undefined()), bytesArg(vm, call.Argument(1), goja.Undefined())
		if len(x) != len(y) {
			throwTypeError(vm, "Input buffers must have the same byte length")
		}
		return vm.ToValue(subtle.ConstantTimeCompare(x, y) == 1)
	})
	_ = exports.Set("getHashes", func(goja.FunctionCall) goja.Value {
		names := make([]any, 0, len(hashes))
		for n := range hashes {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return names[i].(string) < names[j].(string) })
		return vm.NewArray(names...)
	})
}

// maxQuerystringItems bounds what one querystring call reads or writes, so
// that a sparse array of length 2^32-1 cannot keep the runtime (which only
// a script's own code can interrupt) busy for minutes.
const maxQuerystringItems = 100000

// requireQuerystring is Node's querystring module. parse returns an object
// without a prototype, as Node's does.
func requireQuerystring(vm *goja.Runtime, module *goja.Object) {
	exports := module.Get("exports").ToObject(vm)
	unescape := func(s string) string {
		if u, err := url.QueryUnescape(s); err == nil {
			return u
		}
		return s
	}
	escape := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	parse := func(call goja.FunctionCall) goja.Value {
		sep, eq := separators(vm, call)
		out := vm.CreateObject(nil)
		str := stringArg(vm, call.Argument(0))
		if str == "" || sep == "" {
			return out
		}
		var order []string
		values := map[string][]string{}
		for _, pair := range strings.Split(str, sep) {
			if pair == "" {
				continue
			}
			if len(order) >= maxQuerystringItems {
				break
			}
			k, v := pair, ""
			if eq != "" {
				k, v, _ = strings.Cut(pair, eq)
			}
			k, v = unescape(strings.ReplaceAll(k, "+", " ")), unescape(strings.ReplaceAll(v, "+", " "))
			if _, seen := values[k]; !seen {
				order = append(order, k)
			}
			values[k] = append(values[k], v)
		}
		for _, k := range order {
			var v goja.Value
			if vs := values[k]; len(vs) == 1 {
				v = vm.ToValue(vs[0])
			} else {
				items := make([]any, len(vs))
				for i, s := range vs {
					items[i] = s
				}
				v = vm.NewArray(items...)
			}
			define(vm, out, k, v)
		}
		return out
	}
	stringify := func(call goja.FunctionCall) goja.Value {
		sep, eq := separators(vm, call)
		obj, ok := call.Argument(0).(*goja.Object)
		if !ok {
			return vm.ToValue("")
		}
		var parts []string
		add := func(k string, v goja.Value) {
			if len(parts) >= maxQuerystringItems {
				panic(vm.NewGoError(fmt.Errorf("querystring.stringify: more than %d items", maxQuerystringItems)))
			}
			parts = append(parts, escape(k)+eq+escape(stringifyPrimitive(v)))
		}
		for _, k := range obj.Keys() {
			v := obj.Get(k)
			if isArray(vm, v) {
				arr := v.ToObject(vm)
				n := arr.Get("length").ToInteger()
				if n > maxQuerystringItems {
					panic(vm.NewGoError(fmt.Errorf("querystring.stringify: an array of more than %d items", maxQuerystringItems)))
				}
				for i := int64(0); i < n; i++ {
					add(k, arr.Get(strconv.FormatInt(i, 10)))
				}
				continue
			}
			add(k, v)
		}
		return vm.ToValue(strings.Join(parts, sep))
	}
	_ = exports.Set("parse", parse)
	_ = exports.Set("decode", parse)
	_ = exports.Set("stringify", stringify)
	_ = exports.Set("encode", stringify)
	_ = exports.Set("escape", func(call goja.FunctionCall) goja.Value { return vm.ToValue(escape(stringArg(vm, call.Argument(0)))) })
	_ = exports.Set("unescape", func(call goja.FunctionCall) goja.Value { return vm.ToValue(unescape(stringArg(vm, call.Argument(0)))) })
}

// stringifyPrimitive is Node's: strings, finite numbers, booleans and
// BigInts; anything else becomes the empty string. It runs no script code.
func stringifyPrimitive(v goja.Value) string {
	switch v.(type) {
	case nil, *goja.Object, *goja.Symbol:
		return ""
	}
	switch {
	case goja.IsString(v), goja.IsBigInt(v):
		return v.String()
	case goja.IsNumber(v):
		if goja.IsNaN(v) || goja.IsInfinity(v) {
			return ""
		}
		return v.String()
	}
	if b, ok := v.Export().(bool); ok {
		return strconv.FormatBool(b)
	}
	return ""
}

// stringArg reads a string argument as String() would (toJSString), with
// undefined and null as "": objects through toString (which may throw, as
// a JavaScript exception); a Symbol throws a TypeError.
func stringArg(vm *goja.Runtime, v goja.Value) string {
	if isNullish(v) {
		return ""
	}
	return toJSString(vm, v).String()
}

// separators reads querystring's optional sep and eq arguments.
func separators(vm *goja.Runtime, call goja.FunctionCall) (sep, eq string) {
	sep, eq = "&", "="
	if s := call.Argument(1); !goja.IsUndefined(s) && !goja.IsNull(s) {
		sep = stringArg(vm, s)
	}
	if s := call.Argument(2); !goja.IsUndefined(s) && !goja.IsNull(s) {
		eq = stringArg(vm, s)
	}
	return sep, eq
}

func isArray(vm *goja.Runtime, v goja.Value) bool {
	obj, ok := v.(*goja.Object)
	return ok && obj.ClassName() == "Array"
}
