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

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	"github.com/google/uuid"
)

var hashes = map[string]func() hash.Hash{
	"md5": md5.New, "sha1": sha1.New, "sha224": sha256.New224, "sha256": sha256.New,
	"sha384": sha512.New384, "sha512": sha512.New,
}

func newHash(vm *goja.Runtime, name string) func() hash.Hash {
	h, ok := hashes[strings.ToLower(strings.ReplaceAll(name, "-", ""))]
	if !ok {
		panic(vm.NewGoError(fmt.Errorf("digest method %q is not supported (md5, sha1, sha224, sha256, sha384, sha512)", name)))
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
				panic(vm.NewTypeError("Digest already called"))
			}
			h.Write(bytesArg(vm, call.Argument(0), call.Argument(1)))
			return obj
		})
		_ = obj.Set("digest", func(call goja.FunctionCall) goja.Value {
			if done {
				panic(vm.NewTypeError("Digest already called"))
			}
			done = true
			return buffer.EncodeBytes(vm, h.Sum(nil), call.Argument(0))
		})
		return obj
	}
	_ = exports.Set("createHash", func(name string) *goja.Object { return wrap(newHash(vm, name)()) })
	_ = exports.Set("createHmac", func(call goja.FunctionCall) goja.Value {
		h := newHash(vm, call.Argument(0).String())
		return wrap(hmac.New(h, bytesArg(vm, call.Argument(1), goja.Undefined())))
	})
	_ = exports.Set("randomUUID", func() string { return uuid.NewString() })
	_ = exports.Set("randomBytes", func(call goja.FunctionCall) goja.Value {
		n := call.Argument(0).ToInteger()
		if n < 0 || n > 65536 {
			panic(vm.NewGoError(fmt.Errorf("randomBytes size %d is out of range (0 to 65536)", n)))
		}
		b := make([]byte, n)
		_, _ = rand.Read(b)
		out := buffer.WrapBytes(vm, b)
		if cb, ok := goja.AssertFunction(call.Argument(1)); ok {
			_, _ = cb(goja.Undefined(), goja.Null(), out)
			return goja.Undefined()
		}
		return out
	})
	_ = exports.Set("timingSafeEqual", func(a, b goja.Value) bool {
		x, y := bytesArg(vm, a, goja.Undefined()), bytesArg(vm, b, goja.Undefined())
		if len(x) != len(y) {
			panic(vm.NewTypeError("Input buffers must have the same byte length"))
		}
		return subtle.ConstantTimeCompare(x, y) == 1
	})
	_ = exports.Set("getHashes", func() []string {
		names := make([]string, 0, len(hashes))
		for n := range hashes {
			names = append(names, n)
		}
		sort.Strings(names)
		return names
	})
}

// requireQuerystring is Node's querystring module.
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
		sep, eq := separators(call)
		out := vm.NewObject()
		str := call.Argument(0).String()
		if str == "" || sep == "" {
			return out
		}
		for _, pair := range strings.Split(str, sep) {
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, eq)
			k, v = unescape(strings.ReplaceAll(k, "+", " ")), unescape(strings.ReplaceAll(v, "+", " "))
			switch prev := out.Get(k); {
			case prev == nil:
				_ = out.Set(k, v)
			case isArray(vm, prev):
				arr := prev.ToObject(vm)
				_ = arr.Set(fmt.Sprint(arr.Get("length").ToInteger()), v)
			default:
				_ = out.Set(k, vm.NewArray(prev, v))
			}
		}
		return out
	}
	stringify := func(call goja.FunctionCall) goja.Value {
		sep, eq := separators(call)
		obj, ok := call.Argument(0).(*goja.Object)
		if !ok {
			return vm.ToValue("")
		}
		var parts []string
		// Node's stringifyPrimitive: strings, finite numbers and booleans;
		// anything else becomes the empty string.
		prim := func(v goja.Value) string {
			switch x := v.Export().(type) {
			case string:
				return x
			case bool:
				return strconv.FormatBool(x)
			case int64:
				return v.String()
			case float64:
				if math.IsInf(x, 0) || math.IsNaN(x) {
					return ""
				}
				return v.String()
			}
			return ""
		}
		for _, k := range obj.Keys() {
			v := obj.Get(k)
			if isArray(vm, v) {
				arr := v.ToObject(vm)
				for i := int64(0); i < arr.Get("length").ToInteger(); i++ {
					parts = append(parts, escape(k)+eq+escape(prim(arr.Get(fmt.Sprint(i)))))
				}
				continue
			}
			parts = append(parts, escape(k)+eq+escape(prim(v)))
		}
		return vm.ToValue(strings.Join(parts, sep))
	}
	_ = exports.Set("parse", parse)
	_ = exports.Set("decode", parse)
	_ = exports.Set("stringify", stringify)
	_ = exports.Set("encode", stringify)
	_ = exports.Set("escape", escape)
	_ = exports.Set("unescape", unescape)
}

// separators reads querystring's optional sep and eq arguments.
func separators(call goja.FunctionCall) (sep, eq string) {
	sep, eq = "&", "="
	if s := call.Argument(1); !goja.IsUndefined(s) && !goja.IsNull(s) {
		sep = s.String()
	}
	if s := call.Argument(2); !goja.IsUndefined(s) && !goja.IsNull(s) {
		eq = s.String()
	}
	return sep, eq
}

func isArray(vm *goja.Runtime, v goja.Value) bool {
	obj, ok := v.(*goja.Object)
	return ok && obj.ClassName() == "Array"
}
