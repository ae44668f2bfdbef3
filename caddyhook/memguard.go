package caddyhook

import (
	"math"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
)

// Memory. goja has no memory limit: a script allocating in a loop grows the
// Go heap until the kernel kills the process, and with it every site Caddy
// serves. Two defences:
//
//   - memGuard, a watchdog that stops every running script with a
//     server_error "memory limit exceeded" when the Go heap passes a limit,
//     and then returns the memory to the system;
//   - per-call caps (installAllocationCaps), for the built-ins that allocate
//     in one native call an amount chosen by the script: the watchdog can
//     only stop a script between two JavaScript instructions, never inside a
//     native call, and one such call can ask for terabytes and kill the
//     process at once ('x'.repeat(2**40), new ArrayBuffer(2**40),
//     Math.max.apply(null, {length: 2**32})).

// lazyError returns a function that creates errors of one of the built-in
// classes (RangeError...) with the global constructor of that name at the
// time of the error; looking it up only when needed keeps the runtime's
// setup cheap. A script that replaced the global gets its own class.
func lazyError(vm *goja.Runtime, name string) func(msg string) goja.Value {
	return func(msg string) goja.Value {
		ctor, ok := goja.AssertConstructor(vm.Get(name))
		if !ok {
			return vm.NewTypeError(name + ": " + msg)
		}
		obj, err := ctor(nil, vm.ToValue(msg))
		if err != nil {
			rethrow(vm, err)
		}
		return obj
	}
}

// errMemoryLimit is the error of a run stopped by the memory guard.
func errMemoryLimit() *Error { return errorFor(CodeServerError, "memory limit exceeded") }

// defaultMemoryLimitCap bounds the default limit.
const defaultMemoryLimitCap = 1 << 30

// DefaultMemoryLimit is the heap limit a run gets when Config.MemoryLimit is
// zero: 1 GiB, or 3/4 of the Go memory limit (GOMEMLIMIT, which Caddy sets
// from the container's memory limit) when that is lower.
func DefaultMemoryLimit() int64 {
	limit := int64(defaultMemoryLimitCap)
	if gml := debug.SetMemoryLimit(-1); gml > 0 && gml < math.MaxInt64 {
		limit = min(limit, gml/4*3)
	}
	return limit
}

// memGuard is the memory watchdog. The Go heap is one per process and Go
// has no per-goroutine accounting, so the watchdog is process-wide by
// nature: one goroutine, alive while at least one run is registered, reads
// the heap size every millisecond (runtime/metrics: no stop-the-world) and
// interrupts the registered runs whose limit the heap has passed. memWatch
// is the one instance; this type holds all of its state.
//
// A run is over its limit when the heap is above the limit and has grown
// by more than a quarter of the limit since the lowest heap seen while the
// run was registered: a run that starts while the heap is already high
// (another run's garbage, or memory Caddy holds) is not blamed for it.
// Since the heap also counts garbage not yet collected, a run over its
// limit first makes the watchdog collect garbage, and is stopped only if it
// is still over afterwards, or at once if the heap has passed the hard
// limit (a quarter more, and the limit above the run's lowest heap): a
// script can double its memory in one step. When the stopped runs have all
// ended, the watchdog collects again and returns the memory to the system
// (debug.FreeOSMemory, at most once a second; a plain collection
// otherwise).
//
// The heap cannot tell which script allocated, so every run over its limit
// is stopped, the culprit and any run that was running beside it. A run
// that is waiting (on a timer or storage) is stopped when it next runs
// JavaScript.
type memGuard struct {
	interval     time.Duration
	readHeap     func() uint64
	gcNow        func() // runtime.GC
	freeMemory   func() // debug.FreeOSMemory
	defaultLimit func() int64

	mu          sync.Mutex
	runs        map[*memRun]struct{}
	running     bool // the watchdog goroutine is alive
	collecting  bool // a collection started by the watchdog is running
	confirmed   bool // one finished while a run was over its limit
	stoppedLive int  // stopped runs that have not left yet
	cleanup     bool // collect once the stopped runs have left
	lastLeft    time.Time
	lastFree    time.Time
	limitAt     time.Time // when defLimit was read
	defLimit    uint64
	// lastHeap is the heap size the watchdog read last, at lastHeapAt
	// (memClock): while it is fresher than interval, enter takes it for a
	// run's starting floor instead of reading the heap again, which cost
	// about a twentieth of a warm run. The floor is the lowest heap seen
	// while the run is registered; the next tick, within interval, lowers
	// it to what it is then.
	lastHeap   atomic.Uint64
	lastHeapAt atomic.Int64
}

type memRun struct {
	g       *memGuard
	vm      *goja.Runtime
	limit   uint64 // 0: the default
	floor   uint64 // lowest heap seen while registered
	stopped bool
	left    bool
}

const (
	memPollInterval = time.Millisecond
	// memCleanupGrace lets a stopped run's caller drop the runtime before
	// the watchdog collects.
	memCleanupGrace = 10 * time.Millisecond
	// memFreeEvery rate-limits debug.FreeOSMemory, which is expensive.
	memFreeEvery = time.Second
)

// memWatch is the process's memory watchdog.
var memWatch = &memGuard{
	interval:     memPollInterval,
	readHeap:     heapObjectBytes,
	gcNow:        runtime.GC,
	freeMemory:   debug.FreeOSMemory,
	defaultLimit: DefaultMemoryLimit,
	runs:         map[*memRun]struct{}{},
}

const heapMetric = "/memory/classes/heap/objects:bytes"

// heapObjectBytes reads the bytes held by heap objects, live or not yet
// swept. It is cheap and does not stop the world.
func heapObjectBytes() uint64 {
	sample := [1]metrics.Sample{{Name: heapMetric}}
	metrics.Read(sample[:])
	if sample[0].Value.Kind() != metrics.KindUint64 {
		var ms runtime.MemStats // not reached with a supported Go
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	return sample[0].Value.Uint64()
}

// enter registers a run: while it is registered, the watchdog interrupts vm
// with errMemoryLimit() when the run is over limit bytes (0: the default,
// DefaultMemoryLimit; negative: no limit). leave must be called when the
// run ends; calling it more than once is harmless. It reports whether the
// watchdog interrupted vm; once it has returned, the watchdog never will.
func (g *memGuard) enter(vm *goja.Runtime, limit int64) (leave func() (stopped bool)) {
	if limit < 0 {
		return neverStopped
	}
	heap := g.lastHeap.Load()
	if at := g.lastHeapAt.Load(); at == 0 || !fresh(memClock()-at, g.interval) {
		heap = g.readHeap()
	}
	r := &memRun{g: g, vm: vm, limit: uint64(limit), floor: max(heap, 1)}
	g.mu.Lock()
	g.runs[r] = struct{}{}
	if !g.running {
		g.running = true
		go g.watch()
	}
	g.mu.Unlock()
	return r.leave
}

func neverStopped() bool { return false }

// noteHeap records the watchdog's reading for enter.
func (g *memGuard) noteHeap(heap uint64) {
	g.lastHeap.Store(heap)
	g.lastHeapAt.Store(memClock())
}

// memEpoch and memClock stamp heap readings on the monotonic clock: the
// wall clock may be stepped back (NTP, a resumed VM), and an old reading
// stamped on it would then look fresh.
var memEpoch = time.Now()

func memClock() int64 { return max(int64(time.Since(memEpoch)), 1) }

// fresh reports whether a reading age ns old may stand for the heap now;
// a negative age (a stamp from another clock) is unknown, so not fresh.
func fresh(age int64, interval time.Duration) bool {
	return age >= 0 && age < int64(interval)
}

// leave is enter's leave for r.
func (r *memRun) leave() (stopped bool) {
	g := r.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if !r.left {
		r.left = true
		delete(g.runs, r)
		if r.stopped {
			g.stoppedLive--
			g.lastLeft = time.Now()
		}
	}
	return r.stopped
}

func (g *memGuard) watch() {
	ticker := time.NewTicker(g.interval)
	defer ticker.Stop()
	for range ticker.C {
		heap := g.readHeap()
		g.noteHeap(heap)
		if !g.tick(heap) {
			return
		}
	}
}

// tick looks at the heap once; it returns false when the watchdog should
// stop, having marked it stopped.
func (g *memGuard) tick(heap uint64) bool {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.defLimit == 0 || now.Sub(g.limitAt) >= time.Second {
		g.defLimit, g.limitAt = uint64(max(g.defaultLimit(), 1)), now
	}
	over := false
	for r := range g.runs {
		r.floor = min(r.floor, max(heap, 1))
		limit := r.limit
		if limit == 0 {
			limit = g.defLimit
		}
		if r.stopped || heap <= limit || heap-r.floor <= limit/4 {
			continue
		}
		over = true
		if hard := max(limit+limit/4, r.floor+limit); g.confirmed || heap > hard {
			r.stopped = true
			g.stoppedLive++
			g.cleanup = true
			r.vm.Interrupt(errMemoryLimit())
		}
	}
	switch {
	case !over:
		g.confirmed = false
	case !g.confirmed && !g.collecting:
		g.collecting = true
		go g.gc(false)
	}
	if g.cleanup && g.stoppedLive == 0 && now.Sub(g.lastLeft) >= memCleanupGrace && !g.collecting {
		g.cleanup = false
		g.collecting = true
		free := now.Sub(g.lastFree) >= memFreeEvery
		if free {
			g.lastFree = now
		}
		go g.gc(free)
	}
	if len(g.runs) == 0 && !g.cleanup {
		g.running = false
		return false
	}
	return true
}

// gc collects garbage, and returns memory to the system when free is set,
// on a goroutine of its own so the watchdog keeps watching.
func (g *memGuard) gc(free bool) {
	if free {
		g.freeMemory()
	} else {
		g.gcNow()
	}
	g.mu.Lock()
	g.collecting, g.confirmed = false, true
	g.mu.Unlock()
}

// active reports whether the watchdog goroutine is alive (for tests).
func (g *memGuard) active() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running
}

// Caps on what one native call may allocate. V8 refuses strings longer
// than about 2^29 units and arrays longer than 2^32-1; these caps are lower
// because the whole heap of a run is meant to stay well under a gigabyte,
// and high enough that no hook or action meets them.
const (
	// maxStringLength bounds, in UTF-16 units, the strings built by
	// repeat, padStart, padEnd, concat, join, toLocaleString and
	// JSON.stringify: 32 MiB of ASCII text, 64 MiB otherwise.
	maxStringLength = 1 << 25
	// maxArrayLength bounds the arrays and array-likes that join,
	// toLocaleString, the lengthAllocators, Array.from and a
	// JSON.stringify replacer list walk and allocate in one native call:
	// an array-like's length costs nothing to set to 2^53-1.
	maxArrayLength = 1 << 24
	// maxCallArguments bounds the argument lists built by
	// Function.prototype.apply, Reflect.apply and Reflect.construct.
	maxCallArguments = 1 << 20
	// maxBufferBytes bounds one ArrayBuffer, typed array or Buffer.
	maxBufferBytes = 1 << 26
	// maxConcatItems bounds the list Buffer.concat is checked over.
	maxConcatItems = 1 << 20
)

// The messages V8 gives for the same refusals.
const (
	msgStringLength  = "Invalid string length"
	msgArrayLength   = "Invalid array length"
	msgBufferAlloc   = "Array buffer allocation failed"
	msgCallArguments = "Maximum call stack size exceeded"
)

// allocCaps is the per-runtime state of the caps.
type allocCaps struct {
	vm         *goja.Runtime
	rangeError func(string) goja.Value
	isArray    func(goja.FunctionCall) goja.Value
	// toStringStack detects cycles in join and toLocaleString, as goja's
	// own stack does.
	toStringStack []*goja.Object
	// hasInstanceFn and proxied serve instanceof for the proxied
	// constructors: proxy -> original.
	hasInstanceFn *goja.Object
	proxied       map[*goja.Object]*goja.Object
	// spareJSON is the JSON.stringify account not in use, if any.
	spareJSON *jsonAccount
}

// installAllocationCaps replaces, in vm, the built-ins that can allocate an
// unbounded amount in one native call with versions that throw a RangeError
// past the caps above. It must run before any script.
func installAllocationCaps(vm *goja.Runtime) {
	c := &allocCaps{vm: vm, rangeError: lazyError(vm, "RangeError")}
	object := func(v goja.Value) *goja.Object { return v.ToObject(vm) }
	arrayCtor := object(vm.Get("Array"))
	c.isArray = nativeOf(arrayCtor.Get("isArray"))

	stringProto := object(object(vm.Get("String")).Get("prototype"))
	c.wrap(stringProto, "repeat", c.repeat)
	c.wrap(stringProto, "padStart", c.pad)
	c.wrap(stringProto, "padEnd", c.pad)
	c.wrap(stringProto, "concat", c.concat)

	arrayProto := object(arrayCtor.Get("prototype"))
	c.replace(arrayProto, "join", c.join)
	c.replace(arrayProto, "toLocaleString", c.toLocaleString)
	for _, name := range lengthAllocators {
		c.wrap(arrayProto, name, c.lengthCapped)
	}
	c.wrap(arrayCtor, "from", c.arrayFrom)

	c.wrap(object(object(vm.Get("Function")).Get("prototype")), "apply", c.argumentList(1, nil))
	reflect := object(vm.Get("Reflect"))
	c.wrap(reflect, "apply", c.argumentList(2, func(call goja.FunctionCall) bool {
		_, ok := goja.AssertFunction(call.Argument(0))
		return ok
	}))
	c.wrap(reflect, "construct", c.argumentList(1, func(call goja.FunctionCall) bool {
		isConstructor := func(v goja.Value) bool { _, ok := goja.AssertConstructor(v); return ok }
		return isConstructor(call.Argument(0)) && (len(call.Arguments) <= 2 || isConstructor(call.Argument(2)))
	}))

	c.wrap(object(vm.Get("JSON")), "stringify", c.stringify)

	c.capBuffers()
}

// lengthAllocators are the Array.prototype methods that allocate the
// length of their receiver (all of it up front, or element by element in
// one native call), which an array-like or a sparse array can set to 2^53-1
// at no cost: Array.prototype.with.call({length: 2**32-1}, 0, 0) asks for
// 64 GiB at once. The other methods that walk the length of an array-like
// only burn CPU; see the package documentation of the guards.
var lengthAllocators = []string{"fill", "map", "sort", "toReversed", "toSorted", "toSpliced", "with"}

type native = func(goja.FunctionCall) goja.Value

// wrap replaces obj[name], a built-in method, with make(original), keeping
// its name, length and attributes (writable, configurable, not enumerable).
func (c *allocCaps) wrap(obj *goja.Object, name string, make func(original native) native) {
	v := obj.Get(name)
	if v == nil || goja.IsUndefined(v) {
		return // not in this version (Buffer.allocUnsafeSlow)
	}
	length := int(v.ToObject(c.vm).Get("length").ToInteger())
	f := builtinFunc(c.vm, name, length, make(nativeOf(v)))
	if err := obj.DefineDataProperty(name, f, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		panic("caddyhook: replacing " + name + ": " + err.Error())
	}
}

// replace replaces obj[name] with a method of ours that does not need the
// original.
func (c *allocCaps) replace(obj *goja.Object, name string, fn native) {
	c.wrap(obj, name, func(native) native { return fn })
}

func (c *allocCaps) fail(msg string) { panic(c.rangeError(msg)) }

func isNullish(v goja.Value) bool { return v == nil || goja.IsUndefined(v) || goja.IsNull(v) }

// toJSString is ECMAScript's ToString, with the TypeError goja throws for a
// Symbol. (goja's Value.ToString only converts objects to primitives.)
func toJSString(vm *goja.Runtime, v goja.Value) goja.String {
	p := v.ToString()
	if s, ok := p.(goja.String); ok {
		return s
	}
	if _, ok := p.(*goja.Symbol); ok {
		panic(vm.NewTypeError("Cannot convert a Symbol value to a string"))
	}
	return vm.ToValue(p.String()).(goja.String) // numbers, booleans, null, undefined, BigInts
}

// The wrappers below convert the arguments once, check, and pass the
// converted primitives to the original, so that conversions with side
// effects (toString, valueOf) run once, as without the wrapper.

func (c *allocCaps) repeat(original native) native {
	return func(call goja.FunctionCall) goja.Value {
		if isNullish(call.This) {
			return original(call)
		}
		s := toJSString(c.vm, call.This)
		n := call.Argument(0).ToNumber()
		if count := n.ToFloat(); count >= 1 && !math.IsInf(count, 1) && float64(s.Length())*math.Trunc(count) > maxStringLength {
			c.fail(msgStringLength)
		}
		return original(goja.FunctionCall{This: s, Arguments: []goja.Value{n}})
	}
}

func (c *allocCaps) pad(original native) native {
	return func(call goja.FunctionCall) goja.Value {
		if isNullish(call.This) {
			return original(call)
		}
		s := toJSString(c.vm, call.This)
		maxLength := toLength(call.Argument(0))
		if maxLength <= int64(s.Length()) {
			return s
		}
		fill := call.Argument(1)
		if !goja.IsUndefined(fill) {
			f := toJSString(c.vm, fill)
			if f.Length() == 0 {
				return s
			}
			fill = f
		}
		if maxLength > maxStringLength {
			c.fail(msgStringLength)
		}
		return original(goja.FunctionCall{This: s, Arguments: []goja.Value{c.vm.ToValue(maxLength), fill}})
	}
}

func (c *allocCaps) concat(original native) native {
	return func(call goja.FunctionCall) goja.Value {
		if isNullish(call.This) {
			return original(call)
		}
		s := toJSString(c.vm, call.This)
		total := s.Length()
		args := make([]goja.Value, len(call.Arguments))
		for i, a := range call.Arguments {
			str := toJSString(c.vm, a)
			if total += str.Length(); total > maxStringLength {
				c.fail(msgStringLength)
			}
			args[i] = str
		}
		return original(goja.FunctionCall{This: s, Arguments: args})
	}
}

// join is Array.prototype.join as goja implements it (builtin_array.go),
// with its length capped as it is built.
func (c *allocCaps) join(call goja.FunctionCall) goja.Value {
	o := call.This.ToObject(c.vm)
	if c.pushToStringStack(o) {
		return c.vm.ToValue("") // a cycle, as V8 and goja do
	}
	defer c.popToStringStack()
	l := toLength(o.Get("length"))
	var sep goja.String = asJSString(c.vm, ",")
	if s := call.Argument(0); !goja.IsUndefined(s) {
		sep = toJSString(c.vm, s)
	}
	if l == 0 {
		return c.vm.ToValue("")
	}
	if l > maxArrayLength {
		c.fail(msgArrayLength)
	}
	total := int64(sep.Length()) * (l - 1)
	if total > maxStringLength {
		c.fail(msgStringLength)
	}
	var sb goja.StringBuilder
	for i := int64(0); i < l; i++ {
		if i > 0 {
			sb.WriteString(sep)
		}
		e := o.Get(strconv.FormatInt(i, 10))
		if isNullish(e) {
			continue
		}
		s := toJSString(c.vm, e)
		if total += int64(s.Length()); total > maxStringLength {
			c.fail(msgStringLength)
		}
		sb.WriteString(s)
	}
	return sb.String()
}

// toLocaleString is Array.prototype.toLocaleString as goja implements it,
// with its length capped as it is built.
func (c *allocCaps) toLocaleString(call goja.FunctionCall) goja.Value {
	o := call.This.ToObject(c.vm)
	if c.pushToStringStack(o) {
		return c.vm.ToValue("")
	}
	defer c.popToStringStack()
	l := toLength(o.Get("length"))
	if l > maxArrayLength {
		c.fail(msgArrayLength)
	}
	total := max(l-1, 0)
	if total > maxStringLength {
		c.fail(msgStringLength)
	}
	var sb goja.StringBuilder
	for i := int64(0); i < l; i++ {
		if i > 0 {
			sb.WriteRune(',')
		}
		item := o.Get(strconv.FormatInt(i, 10))
		if isNullish(item) {
			continue
		}
		f, ok := goja.AssertFunction(item.ToObject(c.vm).Get("toLocaleString"))
		if !ok {
			throwTypeError(c.vm, "Property 'toLocaleString' of object "+item.String()+" is not a function")
		}
		v, err := f(item)
		if err != nil {
			rethrow(c.vm, err)
		}
		s := toJSString(c.vm, v)
		if total += int64(s.Length()); total > maxStringLength {
			c.fail(msgStringLength)
		}
		sb.WriteString(s)
	}
	return sb.String()
}

func (c *allocCaps) pushToStringStack(o *goja.Object) bool {
	for _, x := range c.toStringStack {
		if x == o {
			return true
		}
	}
	c.toStringStack = append(c.toStringStack, o)
	return false
}

func (c *allocCaps) popToStringStack() {
	c.toStringStack[len(c.toStringStack)-1] = nil
	c.toStringStack = c.toStringStack[:len(c.toStringStack)-1]
}

// asJSString is a Go string as a goja string value.
func asJSString(vm *goja.Runtime, s string) goja.String {
	return vm.ToValue(s).(goja.String)
}

// hasInstance returns the Symbol.hasInstance given to the constructors
// behind the proxies. goja's instanceof cannot see through a proxy (a proxy
// has no hasInstance of its own), so instanceof finds this one, through the
// proxy, and it checks against the original.
func (c *allocCaps) hasInstance() *goja.Object {
	if c.hasInstanceFn == nil {
		vm := c.vm
		original := nativeOf(vm.Get("Function").ToObject(vm).Get("prototype").ToObject(vm).GetSymbol(goja.SymHasInstance))
		c.proxied = map[*goja.Object]*goja.Object{}
		c.hasInstanceFn = builtinFunc(vm, "[Symbol.hasInstance]", 1, func(call goja.FunctionCall) goja.Value {
			this := call.This
			if p, ok := this.(*goja.Object); ok && c.proxied[p] != nil {
				this = c.proxied[p]
			}
			return original(goja.FunctionCall{This: this, Arguments: call.Arguments})
		})
	}
	return c.hasInstanceFn
}

// lengthCapped refuses receivers longer than maxArrayLength. An array-like
// whose length is an accessor (or a Proxy) sees it read twice.
func (c *allocCaps) lengthCapped(original native) native {
	return func(call goja.FunctionCall) goja.Value {
		if !isNullish(call.This) {
			if toLength(call.This.ToObject(c.vm).Get("length")) > maxArrayLength {
				c.fail(msgArrayLength)
			}
		}
		return original(call)
	}
}

// arrayFrom refuses sources longer than maxArrayLength.
func (c *allocCaps) arrayFrom(original native) native {
	return func(call goja.FunctionCall) goja.Value {
		switch items := call.Argument(0).(type) {
		case *goja.Object:
			if toLength(items.Get("length")) > maxArrayLength {
				c.fail(msgArrayLength)
			}
		case goja.String:
			if items.Length() > maxArrayLength {
				c.fail(msgArrayLength)
			}
		}
		return original(call)
	}
}

// argumentList refuses argument lists (the argument at index i) longer than
// maxCallArguments. Only an Array's length is sure to read the same twice:
// any other array-like's may be a getter or a Proxy trap that answers 0 to
// the check and 2**40 to the original, so the original gets the list read
// here, as the original would read it (length once, then each index). ready
// says whether the original would get as far as reading the list (its
// target is callable), so that a failing call reads no elements.
func (c *allocCaps) argumentList(i int, ready func(goja.FunctionCall) bool) func(native) native {
	return func(original native) native {
		return func(call goja.FunctionCall) goja.Value {
			o, ok := call.Argument(i).(*goja.Object)
			if !ok {
				return original(call)
			}
			n := toLength(o.Get("length"))
			if n > maxCallArguments {
				c.fail(msgCallArguments)
			}
			if o.ExportType() == typeArray || (ready != nil && !ready(call)) {
				return original(call)
			}
			list := make([]any, n)
			for k := range list {
				if list[k] = o.Get(strconv.Itoa(k)); list[k] == nil {
					list[k] = goja.Undefined()
				}
			}
			args := append([]goja.Value(nil), call.Arguments...)
			args[i] = c.vm.NewArray(list...)
			return original(goja.FunctionCall{This: call.This, Arguments: args})
		}
	}
}

// stringify is JSON.stringify with its output capped: it runs the original
// with a replacer of ours (calling the script's replacer, if any) that adds
// up an upper bound of what each value will write. Without a cap, one value
// referenced many times (new Array(65536).fill('x'.repeat(65536))) makes
// gigabytes in one native call — and the engine itself serialises what
// scripts return. A replacer array (a property list) cannot be combined
// with a function; only its length is capped.
func (c *allocCaps) stringify(original native) native {
	return func(call goja.FunctionCall) goja.Value {
		value, replacer, space := call.Argument(0), call.Argument(1), call.Argument(2)
		var user goja.Callable
		if r, ok := replacer.(*goja.Object); ok {
			if c.isArray(goja.FunctionCall{Arguments: []goja.Value{r}}).ToBoolean() {
				if toLength(r.Get("length")) > maxArrayLength {
					c.fail(msgArrayLength)
				}
				return original(call)
			}
			user, _ = goja.AssertFunction(r)
		}
		space = jsonSpace(space)
		gap := 0
		switch s := space.(type) {
		case goja.String:
			gap = min(s.Length(), 10)
		default:
			if goja.IsNumber(s) {
				gap = int(min(max(s.ToInteger(), 0), 10))
			}
		}
		acct := c.jsonAccount()
		defer c.putJSONAccount(acct)
		acct.user, acct.gap = user, int64(gap)
		return original(goja.FunctionCall{This: call.This, Arguments: []goja.Value{value, acct.guard, space}})
	}
}

// jsonAccount returns an account for one JSON.stringify call: the spare
// one, with its replacer, which the runtime's calls take in turn (every
// call builds a string, the engine's own included: building the replacer
// function each time cost about as much as a small stringify), or a new
// one for a call made while another is under way (from a toJSON or a
// getter). The replacer is never seen by scripts, which only ever get the
// original's arguments.
func (c *allocCaps) jsonAccount() *jsonAccount {
	if a := c.spareJSON; a != nil {
		c.spareJSON = nil
		return a
	}
	a := &jsonAccount{c: c, depth: map[*goja.Object]int64{}}
	a.guard = c.vm.ToValue(a.replace)
	return a
}

// maxSpareJSONDepth is how many objects the spare account's map may have
// held to be kept: a larger one is left to the collector.
const maxSpareJSONDepth = 64

// putJSONAccount makes a the spare account again, holding nothing of the
// call it served.
func (c *allocCaps) putJSONAccount(a *jsonAccount) {
	if len(a.depth) > maxSpareJSONDepth {
		return
	}
	clear(a.depth)
	a.user, a.gap, a.total = nil, 0, 0
	c.spareJSON = a
}

// jsonSpace converts JSON.stringify's space argument as goja does: Number
// and String objects to their primitive values. The primitive is what the
// original then sees, so valueOf and toString run once.
func jsonSpace(space goja.Value) goja.Value {
	o, ok := space.(*goja.Object)
	if !ok {
		return space
	}
	switch o.ClassName() {
	case "Number":
		return o.ToNumber()
	case "String":
		return o.ToString()
	}
	return space
}

// jsonAccount adds up an upper bound of JSON.stringify's output.
type jsonAccount struct {
	c     *allocCaps
	user  goja.Callable
	gap   int64
	total int64
	depth map[*goja.Object]int64 // nesting of the objects seen
	guard goja.Value             // replace, as the replacer given to the original
}

func (a *jsonAccount) replace(call goja.FunctionCall) goja.Value {
	holder, _ := call.This.(*goja.Object)
	key, v := call.Argument(0), call.Argument(1)
	if a.user != nil {
		var err error
		if v, err = a.user(call.This, key, v); err != nil {
			rethrow(a.c.vm, err)
		}
	}
	depth := a.depth[holder]
	n := int64(toJSString(a.c.vm, key).Length()) + 4 // "key": and a comma
	if a.gap > 0 {
		n += 1 + (depth+1)*a.gap // a new line and its indent
	}
	switch x := v.(type) {
	case goja.String:
		n += int64(x.Length()) + 2
	case *goja.Object:
		if x.ClassName() == "String" {
			n += toLength(x.Get("length")) + 2
		} else {
			n += 24 // brackets, or a boxed number or boolean
			a.depth[x] = depth + 1
		}
	default:
		n += 24 // a number, a boolean, null
	}
	if a.total += n; a.total > maxStringLength {
		a.c.fail(msgStringLength)
	}
	return v
}

var (
	typeArrayBuffer = reflect.TypeOf(goja.ArrayBuffer{})
	typeArray       = reflect.TypeOf([]any(nil))
)

// capBuffers replaces ArrayBuffer and the typed array constructors, which
// allocate their whole size at once, with proxies whose construct trap
// refuses more than maxBufferBytes. The proxies are what the globals and
// the prototypes' constructor properties hold, so subclasses, species and
// Buffer use them; the originals are not reachable from scripts.
func (c *allocCaps) capBuffers() {
	global := c.vm.GlobalObject()
	c.proxyConstructor(global, "ArrayBuffer", func(args []goja.Value) []goja.Value {
		if len(args) > 0 {
			n := args[0].ToNumber()
			if n.ToFloat() > maxBufferBytes {
				c.fail(msgBufferAlloc)
			}
			args = append([]goja.Value{n}, args[1:]...)
		}
		return args
	}, false)
	for _, t := range [...]struct {
		name string
		size float64
	}{
		{"Int8Array", 1}, {"Uint8Array", 1}, {"Uint8ClampedArray", 1}, {"Int16Array", 2}, {"Uint16Array", 2},
		{"Int32Array", 4}, {"Uint32Array", 4}, {"Float32Array", 4}, {"Float64Array", 8},
		{"BigInt64Array", 8}, {"BigUint64Array", 8},
	} {
		if goja.IsUndefined(c.vm.Get(t.name)) {
			continue
		}
		c.proxyConstructor(global, t.name, func(args []goja.Value) []goja.Value {
			if len(args) == 0 {
				return args
			}
			var length float64
			switch a := args[0].(type) {
			case *goja.Object:
				if a.ExportType() == typeArrayBuffer {
					return args // a view: allocates nothing
				}
				length = float64(toLength(a.Get("length")))
			default:
				n := a.ToNumber()
				length = n.ToFloat()
				args = append([]goja.Value{n}, args[1:]...)
			}
			if length*t.size > maxBufferBytes {
				c.fail(msgBufferAlloc)
			}
			return args
		}, false)
	}
}

// proxyConstructor replaces the constructor holder[name] with a proxy that
// checks (and may convert) the arguments of construct, and of call too when
// call is set, before handing them to the original.
func (c *allocCaps) proxyConstructor(holder *goja.Object, name string, check func(args []goja.Value) []goja.Value, call bool) {
	vm := c.vm
	orig := holder.Get(name).ToObject(vm)
	construct, ok := goja.AssertConstructor(orig)
	if !ok {
		panic("caddyhook: " + name + " is not a constructor")
	}
	traps := &goja.ProxyTrapConfig{
		Construct: func(_ *goja.Object, args []goja.Value, newTarget *goja.Object) *goja.Object {
			obj, err := construct(newTarget, check(append([]goja.Value(nil), args...))...)
			if err != nil {
				rethrow(vm, err)
			}
			return obj
		},
	}
	if fn, ok := goja.AssertFunction(orig); ok && call {
		traps.Apply = func(_ *goja.Object, this goja.Value, args []goja.Value) goja.Value {
			v, err := fn(this, check(append([]goja.Value(nil), args...))...)
			if err != nil {
				rethrow(vm, err)
			}
			return v
		}
	}
	p := vm.ToValue(vm.NewProxy(orig, traps)).ToObject(vm)
	if err := orig.DefineDataPropertySymbol(goja.SymHasInstance, c.hasInstance(), goja.FLAG_FALSE, goja.FLAG_FALSE, goja.FLAG_FALSE); err != nil {
		panic("caddyhook: replacing " + name + ": " + err.Error())
	}
	c.proxied[p] = orig
	proto := orig.Get("prototype").ToObject(vm)
	if err := proto.DefineDataProperty("constructor", p, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		panic("caddyhook: replacing " + name + ": " + err.Error())
	}
	if err := holder.DefineDataProperty(name, p, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		panic("caddyhook: replacing " + name + ": " + err.Error())
	}
}

// requireCappedBuffer is goja_nodejs's buffer module with its allocations
// capped (capBufferModule). Register it in place of the plain one:
// registry.RegisterNativeModule("buffer", requireCappedBuffer).
func requireCappedBuffer(vm *goja.Runtime, module *goja.Object) {
	buffer.Require(vm, module)
	capBufferModule(vm, module)
}

// capBufferModule caps the Buffer of goja_nodejs's buffer module (module is
// the module object its loader filled): Buffer.alloc, allocUnsafe,
// allocUnsafeSlow, from (array-likes), concat (totalLength), new Buffer and
// Buffer() allocate their size at once.
func capBufferModule(vm *goja.Runtime, module *goja.Object) {
	c := &allocCaps{vm: vm, rangeError: lazyError(vm, "RangeError")}
	exports := module.Get("exports").ToObject(vm)
	buf := exports.Get("Buffer").ToObject(vm)
	size := func(i int) func(native) native {
		return func(original native) native {
			return func(call goja.FunctionCall) goja.Value {
				if a := call.Argument(i); goja.IsNumber(a) && a.ToFloat() > maxBufferBytes {
					c.fail(msgBufferAlloc)
				}
				return original(call)
			}
		}
	}
	arrayLike := func(original native) native {
		return func(call goja.FunctionCall) goja.Value {
			if o, ok := call.Argument(0).(*goja.Object); ok && o.ExportType() != typeArrayBuffer {
				if toLength(o.Get("length")) > maxBufferBytes {
					c.fail(msgBufferAlloc)
				}
			}
			return original(call)
		}
	}
	c.wrap(buf, "alloc", size(0))
	c.wrap(buf, "allocUnsafe", size(0))
	c.wrap(buf, "allocUnsafeSlow", size(0))
	// concat allocates totalLength, or, without it, the sum of the
	// list's lengths.
	c.wrap(buf, "concat", func(original native) native {
		withTotal := size(1)(original)
		return func(call goja.FunctionCall) goja.Value {
			list, ok := call.Argument(0).(*goja.Object)
			if !isNullish(call.Argument(1)) || !ok {
				return withTotal(call)
			}
			n := toLength(list.Get("length"))
			var total int64
			for i := int64(0); i < n; i++ {
				if i >= maxConcatItems || total > maxBufferBytes {
					c.fail(msgBufferAlloc)
				}
				if item, ok := list.Get(strconv.FormatInt(i, 10)).(*goja.Object); ok {
					if b, isBytes := item.Export().([]byte); isBytes {
						total += int64(len(b)) // the real size: a length getter could lie
					} else {
						total += toLength(item.Get("length"))
					}
				}
			}
			if total > maxBufferBytes {
				c.fail(msgBufferAlloc)
			}
			return original(call)
		}
	})
	c.wrap(buf, "from", arrayLike)
	// new Buffer(arrayLike) and Buffer(arrayLike) allocate as from does.
	c.proxyConstructor(exports, "Buffer", func(args []goja.Value) []goja.Value {
		if o, ok := firstArg(args).(*goja.Object); ok && o.ExportType() != typeArrayBuffer {
			if toLength(o.Get("length")) > maxBufferBytes {
				c.fail(msgBufferAlloc)
			}
		}
		return args
	}, true)
}

func firstArg(args []goja.Value) goja.Value {
	if len(args) == 0 {
		return goja.Undefined()
	}
	return args[0]
}
