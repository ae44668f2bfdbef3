package caddyhook

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"math/big"
	"reflect"

	"github.com/dop251/goja"
)

// The Go halves of the Web globals Node 22 has and goja lacks: crypto (Web
// Crypto), performance and structuredClone. Their JavaScript halves are in
// globalsProgram. None of these natives runs script code: they read only
// genuine objects, told apart by their Go type, so a Proxy or a getter
// cannot make them allocate or panic.

// integerArrays are the export types of the typed arrays getRandomValues
// fills: every integer one (Uint8Array and Uint8ClampedArray both export
// []byte), not Float32Array or Float64Array, as in Node.
var integerArrays = map[reflect.Type]bool{
	typeBytes: true, reflect.TypeOf([]int8(nil)): true, reflect.TypeOf([]uint16(nil)): true,
	reflect.TypeOf([]int16(nil)): true, reflect.TypeOf([]uint32(nil)): true, reflect.TypeOf([]int32(nil)): true,
	reflect.TypeOf([]int64(nil)): true, reflect.TypeOf([]uint64(nil)): true,
}

// maxRandomValues is Web Crypto's quota for one getRandomValues call.
const maxRandomValues = 65536

var typeProxy = reflect.TypeOf(goja.Proxy{})

// fillRandom fills v, which must be a genuine integer typed array, with
// random bytes. It returns 0, or 1 for a value of another type and 2 for
// one over the quota (the JavaScript side throws Node's DOMExceptions).
func fillRandom(vm *goja.Runtime, v goja.Value) goja.Value {
	obj, ok := v.(*goja.Object)
	if !ok || !integerArrays[obj.ExportType()] {
		return vm.ToValue(1)
	}
	var b []byte
	if err := vm.ExportTo(obj, &b); err != nil { // shares the array's memory
		return vm.ToValue(1)
	}
	if len(b) > maxRandomValues {
		return vm.ToValue(2)
	}
	_, _ = rand.Read(b)
	return vm.ToValue(0)
}

// subtleDigests are the algorithms crypto.subtle.digest offers, by their
// Web Crypto names (the JavaScript side upper-cases the name it is given).
var subtleDigests = map[string]func() hash.Hash{
	"SHA-1": sha1.New, "SHA-256": sha256.New, "SHA-384": sha512.New384, "SHA-512": sha512.New,
}

// digest returns the digest of data, a genuine ArrayBuffer or view, as an
// ArrayBuffer; 1 when name is not an algorithm offered, 2 when data is not
// a BufferSource.
func digest(vm *goja.Runtime, isView func(goja.FunctionCall) goja.Value, name string, data goja.Value) goja.Value {
	h, ok := subtleDigests[name]
	if !ok {
		return vm.ToValue(1)
	}
	b, ok := viewBytes(vm, isView, data)
	if !ok {
		return vm.ToValue(2)
	}
	d := h()
	d.Write(b)
	return vm.ToValue(vm.NewArrayBuffer(d.Sum(nil)))
}

// cloneKind says what structuredClone makes of v, without running script
// code: "" for a primitive, "proxy" (never cloned: reading it would run
// its traps, and Node refuses it too), "ArrayBuffer", "view" (a typed
// array or DataView), "Map", "Set", "Promise", "BigInt" and "Symbol" (for
// their wrapper objects), or else goja's class name (Object, Array, Date,
// RegExp, Error, Number, String, Boolean, Function, Arguments...), which
// the JavaScript side accepts or refuses. goja gives Map, Set and the rest
// the class Object; their Go export types tell them apart.
func cloneKind(isView func(goja.FunctionCall) goja.Value, v goja.Value) string {
	obj, ok := v.(*goja.Object)
	if !ok {
		return ""
	}
	switch obj.ExportType() {
	case typeProxy:
		return "proxy"
	case typeArrayBuffer:
		return "ArrayBuffer"
	}
	if isView(goja.FunctionCall{This: goja.Undefined(), Arguments: []goja.Value{obj}}).ToBoolean() {
		return "view"
	}
	class := obj.ClassName()
	if class != "Object" {
		return class
	}
	if kind, ok := objectKinds[obj.ExportType()]; ok {
		return kind
	}
	return class
}

// objectKinds are the export types of goja's objects of class Object that
// structuredClone treats apart.
var objectKinds = map[reflect.Type]string{
	reflect.TypeOf([][2]any(nil)): "Map", reflect.TypeOf([]any(nil)): "Set",
	reflect.TypeOf((*goja.Promise)(nil)): "Promise", reflect.TypeOf((*big.Int)(nil)): "BigInt",
	reflect.TypeOf(""): "Symbol",
}

// maxCloneEntries bounds the objects, properties and Map and Set items one
// structuredClone call makes: as many as the longest array a native call
// may build. A variable so that tests can reach it in reasonable time.
var maxCloneEntries = maxArrayLength

// copyBuffer returns a copy of a genuine ArrayBuffer (cloneKind said it
// is one), or null when it is longer than room bytes.
func copyBuffer(vm *goja.Runtime, v goja.Value, room int64) goja.Value {
	obj, ok := v.(*goja.Object)
	if !ok || obj.ExportType() != typeArrayBuffer {
		throwTypeError(vm, "not an ArrayBuffer")
	}
	b := obj.Export().(goja.ArrayBuffer).Bytes()
	if int64(len(b)) > room {
		return goja.Null()
	}
	return vm.ToValue(vm.NewArrayBuffer(append([]byte(nil), b...)))
}
