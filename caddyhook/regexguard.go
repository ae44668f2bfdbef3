package caddyhook

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/dlclark/regexp2/v2"
	"github.com/dop251/goja"
	"github.com/dop251/goja/parser"
)

// The regex guard keeps regular expressions within the run's deadline.
//
// goja matches a pattern with Go's regexp (linear time) when it can, and with
// dlclark/regexp2, a backtracking engine, when the pattern needs it
// (backreferences, lookaround, large repeats) and for every match that starts
// at a non-zero position (global or sticky lastIndex, String.prototype.split),
// because Go's regexp cannot start there. A backtracking match can take
// exponential time, regexp2 does not see vm.Interrupt, goja never sets
// regexp2's MatchTimeout, and goja turns regexp2's errors into "no match". So
// /^([a-z]+)+\1$/.test('a'.repeat(28) + '!') burned CPU long after the client
// had gone, and a match that failed on regexp2's backtracking-stack limit
// silently returned the wrong answer.
//
// installRegexGuard replaces RegExp.prototype.exec and .test. Every match
// that goja would run with regexp2 is run by the guard instead, with its own
// regexp2 copy of the pattern (compiled exactly as goja compiles it) whose
// MatchTimeout is the run's remaining time, and the guard builds the result
// goja would have built. Matches goja runs with Go's regexp are passed to the
// original functions. So each match runs once, a match that cannot finish
// before the deadline interrupts the run, and a match that exceeds the
// backtracking-stack limit throws a RangeError instead of failing silently.
//
// Redefining exec makes goja drop its fast paths for every RegExp in the
// runtime (RegExp.prototype is a guarded object in goja: redefining exec
// taints it), so String.prototype.match, matchAll, replace, replaceAll,
// search and split all go through the specification's generic algorithms,
// which call the exec property, that is the guard. The generic algorithms
// follow the specification where goja's fast paths did not (for example
// 'abc'.match(/b*/g) is now ["", "b", "", ""], as in Node, where goja gave
// ["", "b", ""]). RegExp.prototype.test does not go through exec in goja, so
// it is replaced too. The one place goja still reached its internal exec, the
// RegExp String Iterator of matchAll (when the matcher's exec is not
// callable), is replaced by an iterator of ours; goja's generic split and
// replace crash the process on such a matcher (a nil function call), which
// [Symbol.split] and [Symbol.replace] turn into a TypeError. With no path
// left to the internal matcher, the replaced methods keep the attributes of
// the built-ins (writable, configurable): a script replacing or deleting
// them only loses them, and can still patch exec on its own RegExps
// (core-js's feature tests do), which a non-writable exec would turn into a
// TypeError in strict code.

// regexGuard is the per-runtime state of the guard. It is used only from the
// goroutine running the runtime.
type regexGuard struct {
	vm        *goja.Runtime
	ctx       context.Context
	interrupt func()

	// The original natives: exec and test, and the getters that read a
	// RegExp's own pattern (a script may redefine the prototype's getters,
	// never these).
	exec, test                                                func(goja.FunctionCall) goja.Value
	source, global, ignoreCase, multiline, dotAll, unicode, y func(goja.FunctionCall) goja.Value

	rangeError func(string) goja.Value

	regexpCtor   *goja.Object // the intrinsic RegExp
	arrayIterFn  func(goja.FunctionCall) goja.Value
	iterProto    *goja.Object // our %RegExpStringIteratorPrototype%, made on first use
	matchAllIter map[*goja.Object]*matchAllState

	patterns     map[patternKey]*guardedPattern
	patternBytes int // the sources in patterns
	// lastRx and lastPattern remember the RegExp matched last: the generic
	// algorithms call exec on the same one once per match or position.
	// RegExp.prototype.compile, the only way to change a RegExp's pattern,
	// forgets it.
	lastRx      *goja.Object
	lastPattern *guardedPattern
	utf16       textCache // subject strings as UTF-16 code units
	points      textCache // subject strings as code points, for /u patterns
}

// installRegexGuard installs the guard in vm, which must not have run any
// script yet. Matches are bounded by ctx's deadline; when one cannot finish in
// time, or ctx is done, interrupt is called (it must interrupt vm with the
// run's time-out error) and the match reports no match, which the script never
// sees because the interrupt stops it first.
func installRegexGuard(vm *goja.Runtime, ctx context.Context, interrupt func()) *regexGuard {
	g := &regexGuard{vm: vm, ctx: ctx, interrupt: interrupt, patterns: map[patternKey]*guardedPattern{}}
	g.rangeError = lazyError(vm, "RangeError")
	g.regexpCtor = vm.Get("RegExp").ToObject(vm)
	proto := g.regexpCtor.Get("prototype").ToObject(vm)
	g.exec = nativeOf(proto.Get("exec"))
	g.test = nativeOf(proto.Get("test"))
	getters, err := regexpGetters(vm, proto)
	if err != nil {
		panic("caddyhook: reading RegExp.prototype: " + err.Error())
	}
	for i, dst := range []*func(goja.FunctionCall) goja.Value{&g.source, &g.global, &g.ignoreCase, &g.multiline, &g.dotAll, &g.unicode, &g.y} {
		*dst = nativeOf(getters.Get(strconv.Itoa(i)))
	}
	g.arrayIterFn = nativeOf(vm.Get("Array").ToObject(vm).Get("prototype").ToObject(vm).GetSymbol(goja.SymIterator))
	replaceMethod(vm, proto, "exec", 1, g.execMethod)
	replaceMethod(vm, proto, "test", 1, g.testMethod)
	compile := nativeOf(proto.Get("compile"))
	replaceMethod(vm, proto, "compile", 2, func(call goja.FunctionCall) goja.Value {
		g.lastRx, g.lastPattern = nil, nil
		return compile(call)
	})
	// goja's RegExp String Iterator falls back to the unguarded internal
	// exec when the matcher's exec is not callable (a matcher made by a
	// Symbol.species constructor can be such a RegExp), so matchAll gets
	// an iterator of ours.
	replaceSymbol(vm, proto, goja.SymMatchAll, "[Symbol.matchAll]", 1, g.matchAll)
	// goja's generic split and replace call a nil function, a Go panic
	// that escapes the runtime, when exec is undefined (a species-made
	// splitter, or a RegExp subclass with an exec field).
	for _, sym := range []struct {
		s    *goja.Symbol
		name string
	}{{goja.SymSplit, "[Symbol.split]"}, {goja.SymReplace, "[Symbol.replace]"}} {
		original := nativeOf(proto.GetSymbol(sym.s))
		replaceSymbol(vm, proto, sym.s, sym.name, 2, func(call goja.FunctionCall) goja.Value {
			defer func() {
				if x := recover(); x != nil {
					if _, isRuntime := x.(runtime.Error); isRuntime {
						panic(vm.NewTypeError("exec is not a function"))
					}
					panic(x)
				}
			}()
			return original(call)
		})
	}
	return g
}

// bind points the guard at the run a warm runtime now serves: its
// deadline, and how to interrupt it. The subjects and the RegExp remembered
// from the last run are let go, so an idle runtime does not hold a large
// string or an object of an exchange that has ended, and so are the
// matchAll iterators of the last run: a warm runtime serves any number of
// exchanges, and the map would grow with each. An iterator a module kept
// from an earlier exchange throws a TypeError when used.
func (g *regexGuard) bind(ctx context.Context, interrupt func()) {
	g.ctx, g.interrupt = ctx, interrupt
	g.utf16, g.points = textCache{}, textCache{}
	g.lastRx, g.lastPattern = nil, nil
	g.matchAllIter = nil
}

// replaceSymbol defines obj[sym] as a native method, with the attributes of
// the built-in symbol methods (writable, configurable, not enumerable).
func replaceSymbol(vm *goja.Runtime, obj *goja.Object, sym *goja.Symbol, name string, length int, fn func(goja.FunctionCall) goja.Value) {
	if err := obj.DefineDataPropertySymbol(sym, builtinFunc(vm, name, length, fn), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		panic(fmt.Sprintf("caddyhook: redefining %s: %v", name, err))
	}
}

// matchAllState is one RegExp String Iterator.
type matchAllState struct {
	matcher             *goja.Object
	s                   goja.String
	global, fullUnicode bool
	done                bool
}

// matchAll is RegExp.prototype[Symbol.matchAll] as goja implements it
// (regexpproto_stdMatcherAll), returning an iterator of ours.
func (g *regexGuard) matchAll(call goja.FunctionCall) goja.Value {
	vm := g.vm
	this, ok := call.This.(*goja.Object)
	if !ok {
		throwTypeError(vm, "Value is not an object: "+call.This.String())
	}
	s := toJSString(vm, call.Argument(0))
	flags := toJSString(vm, orUndefined(this.Get("flags"))).String()
	ctor := g.speciesConstructor(this)
	matcher, err := ctor(nil, this, vm.ToValue(flags))
	if err != nil {
		rethrow(vm, err)
	}
	if err := matcher.Set("lastIndex", toLength(this.Get("lastIndex"))); err != nil {
		rethrow(vm, err)
	}
	if g.iterProto == nil {
		g.iterProto = g.newIterProto()
	}
	if g.matchAllIter == nil { // the first matchAll of this exchange
		g.matchAllIter = map[*goja.Object]*matchAllState{}
	}
	it := vm.NewObject()
	if err := it.SetPrototype(g.iterProto); err != nil {
		rethrow(vm, err)
	}
	g.matchAllIter[it] = &matchAllState{matcher: matcher, s: s, global: strings.Contains(flags, "g"), fullUnicode: strings.Contains(flags, "u")}
	return it
}

func orUndefined(v goja.Value) goja.Value {
	if v == nil {
		return goja.Undefined()
	}
	return v
}

// speciesConstructor is goja's speciesConstructorObj with RegExp as the
// default.
func (g *regexGuard) speciesConstructor(o *goja.Object) goja.Constructor {
	vm := g.vm
	c := o.Get("constructor")
	if c != nil && !goja.IsUndefined(c) {
		co, ok := c.(*goja.Object)
		if !ok {
			throwTypeError(vm, "Value is not an object: "+c.String())
		}
		c = co.GetSymbol(goja.SymSpecies)
	}
	if c == nil || goja.IsUndefined(c) || goja.IsNull(c) {
		c = g.regexpCtor
	}
	if _, ok := c.(*goja.Object); !ok {
		throwTypeError(vm, "Value is not an object: "+c.String())
	}
	ctor, ok := goja.AssertConstructor(c)
	if !ok {
		panic(vm.NewTypeError("Value is not a constructor"))
	}
	return ctor
}

// newIterProto makes the prototype of our RegExp String Iterators, as
// goja's: %IteratorPrototype% as its prototype, next, and its tag.
func (g *regexGuard) newIterProto() *goja.Object {
	vm := g.vm
	arrayIter := g.arrayIterFn(goja.FunctionCall{This: vm.NewArray()}).ToObject(vm)
	proto := vm.NewObject()
	if err := proto.SetPrototype(arrayIter.Prototype().Prototype()); err != nil {
		rethrow(vm, err)
	}
	_ = proto.DefineDataProperty("next", builtinFunc(vm, "next", 0, g.matchAllNext), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	_ = proto.DefineDataPropertySymbol(goja.SymToStringTag, vm.ToValue("RegExp String Iterator"), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	return proto
}

var matchAllDone = &matchAllState{done: true}

// matchAllNext is goja's regExpStringIterObject.next, with the fallback to
// the built-in exec going through the guard.
func (g *regexGuard) matchAllNext(call goja.FunctionCall) goja.Value {
	vm := g.vm
	it, _ := call.This.(*goja.Object)
	st := g.matchAllIter[it]
	if st == nil {
		throwTypeError(vm, "Method RegExp String Iterator.prototype.next called on incompatible receiver "+call.This.String())
	}
	if st.done {
		return iterResult(vm, goja.Undefined(), true)
	}
	match := g.regExpExec(st.matcher, st.s)
	if goja.IsNull(match) {
		g.matchAllIter[it] = matchAllDone
		return iterResult(vm, goja.Undefined(), true)
	}
	if !st.global {
		g.matchAllIter[it] = matchAllDone
		return iterResult(vm, match, false)
	}
	if toJSString(vm, orUndefined(match.ToObject(vm).Get("0"))).Length() == 0 {
		thisIndex := toLength(st.matcher.Get("lastIndex"))
		if err := st.matcher.Set("lastIndex", advanceStringIndex(st.s, thisIndex, st.fullUnicode)); err != nil {
			rethrow(vm, err)
		}
	}
	return iterResult(vm, match, false)
}

// regExpExec is the specification's RegExpExec, as goja implements it: the
// exec property when callable, else the built-in exec, which is the guard's.
func (g *regexGuard) regExpExec(r *goja.Object, s goja.String) goja.Value {
	if exec, ok := goja.AssertFunction(r.Get("exec")); ok {
		res, err := exec(r, s)
		if err != nil {
			rethrow(g.vm, err)
		}
		if _, isObject := res.(*goja.Object); !isObject && !goja.IsNull(res) {
			panic(g.vm.NewTypeError("RegExp exec method returned something other than an Object or null"))
		}
		return res
	}
	if r.ClassName() == "RegExp" {
		return g.run(goja.FunctionCall{This: r, Arguments: []goja.Value{s}}, true)
	}
	panic(g.vm.NewTypeError("no RegExpMatcher internal slot"))
}

func iterResult(vm *goja.Runtime, value goja.Value, done bool) goja.Value {
	o := vm.NewObject()
	_ = o.Set("value", value)
	_ = o.Set("done", done)
	return o
}

// advanceStringIndex is the specification's AdvanceStringIndex.
func advanceStringIndex(s goja.String, pos int64, unicode bool) int64 {
	next := pos + 1
	if !unicode || next >= int64(s.Length()) {
		return next
	}
	if c := s.CharAt(int(pos)); c < 0xD800 || c > 0xDBFF {
		return next
	}
	if c := s.CharAt(int(next)); c < 0xDC00 || c > 0xDFFF {
		return next
	}
	return next + 1
}

// nativeOf returns the Go function behind one of goja's built-in functions.
func nativeOf(v goja.Value) func(goja.FunctionCall) goja.Value {
	f, ok := v.Export().(func(goja.FunctionCall) goja.Value)
	if !ok {
		panic(fmt.Sprintf("caddyhook: %v is not a native function", v))
	}
	return f
}

// regexpGettersProgram reads the getters of RegExp.prototype that read a
// RegExp's own pattern: source and the flags, in that order.
var regexpGettersProgram = goja.MustCompile("caddyhook:regexp-getters", `(function (p) {
	var d = Object.getOwnPropertyDescriptor;
	return [d(p, 'source').get, d(p, 'global').get, d(p, 'ignoreCase').get, d(p, 'multiline').get,
		d(p, 'dotAll').get, d(p, 'unicode').get, d(p, 'sticky').get];
})`, true)

func regexpGetters(vm *goja.Runtime, proto *goja.Object) (*goja.Object, error) {
	fn, err := vm.RunProgram(regexpGettersProgram)
	if err != nil {
		return nil, err
	}
	f, _ := goja.AssertFunction(fn)
	v, err := f(goja.Undefined(), proto)
	if err != nil {
		return nil, err
	}
	return v.ToObject(vm), nil
}

// replaceMethod defines obj[name] as a native method with the name, length
// and attributes (writable, configurable, not enumerable) of the built-in it
// replaces.
func replaceMethod(vm *goja.Runtime, obj *goja.Object, name string, length int, fn func(goja.FunctionCall) goja.Value) {
	if err := obj.DefineDataProperty(name, builtinFunc(vm, name, length, fn), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		panic(fmt.Sprintf("caddyhook: redefining %s: %v", name, err))
	}
}

// builtinFunc makes a native function that looks like a built-in: its name
// and length are those given.
func builtinFunc(vm *goja.Runtime, name string, length int, fn func(goja.FunctionCall) goja.Value) *goja.Object {
	f := vm.ToValue(fn).ToObject(vm)
	_ = f.DefineDataProperty("name", vm.ToValue(name), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	_ = f.DefineDataProperty("length", vm.ToValue(length), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	return f
}

func (g *regexGuard) execMethod(call goja.FunctionCall) goja.Value {
	return g.run(call, true)
}

func (g *regexGuard) testMethod(call goja.FunctionCall) goja.Value {
	return g.run(call, false)
}

// run is RegExp.prototype.exec (exec true) or .test, as goja implements them
// (regexpObject.execRegexp and execResultToArray in goja's regexp.go), with
// every regexp2 match bounded by the deadline.
func (g *regexGuard) run(call goja.FunctionCall, exec bool) goja.Value {
	original := g.test
	if exec {
		original = g.exec
	}
	if _, ok := g.timeLeft(); !ok {
		// The run is over; native loops (split, replace) may still call.
		g.interrupt()
		if exec {
			return goja.Null()
		}
		return g.vm.ToValue(false)
	}
	rx, ok := call.This.(*goja.Object)
	if !ok || rx.ClassName() != "RegExp" {
		return original(call) // throws the TypeError goja throws
	}
	p := g.pattern(rx)
	// goja converts the argument first, then reads lastIndex.
	subject := toJSString(g.vm, call.Argument(0))
	delegate := func() goja.Value {
		return original(goja.FunctionCall{This: rx, Arguments: []goja.Value{subject}})
	}
	globalOrSticky := p.flags&(flagGlobal|flagSticky) != 0
	if p.re2 && !globalOrSticky {
		return delegate() // always matched from 0 with Go's regexp
	}
	lastIndexValue := rx.Get("lastIndex")
	if _, isObject := lastIndexValue.(*goja.Object); p.re2 && !isObject {
		// Converting a primitive twice has no side effects; an object's
		// valueOf must run once, so that case is matched here.
		if li := toLength(lastIndexValue); li == 0 || li > int64(subject.Length()) {
			return delegate() // Go's regexp, or no match at all
		}
	}

	index := toLength(lastIndexValue)
	if !globalOrSticky {
		index = 0
	}
	var m *guardMatch
	if index <= int64(subject.Length()) {
		m = g.find(p, subject, int(index))
	}
	matched := m != nil && (p.flags&flagSticky == 0 || int64(m.indexes[0]) == index)
	if globalOrSticky {
		var next int64
		if matched {
			next = int64(m.indexes[1])
		}
		if err := rx.Set("lastIndex", next); err != nil {
			rethrow(g.vm, err)
		}
	}
	if !exec {
		return g.vm.ToValue(matched)
	}
	if !matched {
		return goja.Null()
	}
	return g.resultArray(subject, m)
}

// toLength is ECMAScript's ToLength, as goja computes it.
func toLength(v goja.Value) int64 {
	if v == nil {
		return 0
	}
	i := v.ToInteger()
	if i < 0 {
		return 0
	}
	if i >= 1<<53 {
		return 1<<53 - 1
	}
	return i
}

// guardMatch is one match: start and end of the match and of each group
// (-1, 0 for a group that did not participate), in UTF-16 units, and the
// groups' names.
type guardMatch struct {
	indexes []int
	names   []string
}

// resultArray builds exec's result exactly as goja's execResultToArray does.
func (g *regexGuard) resultArray(subject goja.String, m *guardMatch) goja.Value {
	n := len(m.indexes) / 2
	values := make([]goja.Value, n)
	values[0] = subject.Substring(m.indexes[0], m.indexes[1])
	lowerBound := 0
	for i := 1; i < n; i++ {
		start, end := m.indexes[2*i], m.indexes[2*i+1]
		if start >= 0 && end >= lowerBound {
			values[i] = subject.Substring(start, end)
			lowerBound = start
		} else {
			values[i] = goja.Undefined()
		}
	}
	items := make([]interface{}, n)
	for i, v := range values {
		items[i] = v
	}
	arr := g.vm.NewArray(items...)
	_ = arr.Set("input", subject)
	_ = arr.Set("index", m.indexes[0])
	var groups *goja.Object
	for i := 1; i < n && i < len(m.names); i++ {
		if m.names[i] == "" {
			continue
		}
		if groups == nil {
			groups = g.vm.NewObject()
			_ = groups.SetPrototype(nil)
		}
		_ = groups.Set(m.names[i], values[i])
	}
	var groupsValue goja.Value = goja.Undefined()
	if groups != nil {
		groupsValue = groups
	}
	_ = arr.DefineDataProperty("groups", groupsValue, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
	return arr
}

// find runs one regexp2 match from start (a UTF-16 index), as goja's
// regexp2Wrapper.findSubmatchIndex does, bounded by the deadline. It returns
// nil for no match, and also when the run has been interrupted.
func (g *regexGuard) find(p *guardedPattern, subject goja.String, start int) *guardMatch {
	limit, ok := g.timeLeft()
	if !ok {
		g.interrupt()
		return nil
	}
	sticky := p.flags&flagSticky != 0
	re, release, err := p.regexp2(sticky)
	if err != nil {
		// goja compiled the same pattern with the same options, so this
		// cannot happen; refuse rather than match unguarded.
		panic(g.vm.NewGoError(fmt.Errorf("regular expression: %v", err)))
	}
	defer release()
	re.MatchTimeout = limit

	var (
		runes  []rune
		posMap []int
		from   = start
	)
	if p.flags&flagUnicode != 0 {
		runes, posMap = g.points.codePoints(subject)
		var splitPair bool
		from, splitPair = posMapReverseLookup(posMap, start)
		if splitPair {
			// start is inside a surrogate pair: match from its second half.
			saved := runes[from]
			_, runes[from] = utf16.EncodeRune(saved)
			defer func() { runes[from] = saved }()
		}
	} else {
		runes = g.utf16.utf16Units(subject)
	}

	match, err := re.FindRunesMatchStartingAt(runes, from)
	if err != nil {
		if errors.Is(err, regexp2.ErrBacktrackingStackLimit) {
			// V8 throws this when its backtracking stack overflows.
			panic(g.rangeError("Maximum call stack size exceeded"))
		}
		// The match timed out: the deadline has passed.
		g.interrupt()
		return nil
	}
	if match == nil {
		return nil
	}
	groups := match.Groups()
	m := &guardMatch{indexes: make([]int, 0, 2*len(groups)), names: make([]string, 0, len(groups))}
	for _, group := range groups {
		m.names = append(m.names, group.Name)
		if len(group.Captures) == 0 {
			m.indexes = append(m.indexes, -1, 0)
			continue
		}
		s, e := group.RuneIndex, group.RuneIndex+group.RuneLength
		if posMap != nil {
			s, e = posMap[s], posMap[e]
		}
		m.indexes = append(m.indexes, s, e)
	}
	return m
}

// timeLeft returns how long a match may take: the time to ctx's deadline, or
// no limit without one. ok is false when ctx is done or the deadline passed.
func (g *regexGuard) timeLeft() (time.Duration, bool) {
	if g.ctx.Err() != nil {
		return 0, false
	}
	deadline, has := g.ctx.Deadline()
	if !has {
		return regexp2.DefaultMatchTimeout, true
	}
	left := time.Until(deadline)
	return left, left > 0
}

// posMapReverseLookup is goja's: the code point index of a UTF-16 index, and
// whether that index splits a surrogate pair.
func posMapReverseLookup(posMap []int, pos int) (int, bool) {
	mapped := sort.SearchInts(posMap, pos)
	if mapped < len(posMap) && posMap[mapped] != pos {
		return mapped - 1, true
	}
	return mapped, false
}

// pattern returns the analysis of rx's current pattern, read through the
// original getters.
func (g *regexGuard) pattern(rx *goja.Object) *guardedPattern {
	if rx == g.lastRx {
		return g.lastPattern
	}
	p := g.readPattern(rx)
	g.lastRx, g.lastPattern = rx, p
	return p
}

func (g *regexGuard) readPattern(rx *goja.Object) *guardedPattern {
	this := goja.FunctionCall{This: rx}
	var f regexFlags
	for _, fl := range [...]struct {
		get  func(goja.FunctionCall) goja.Value
		flag regexFlags
	}{{g.global, flagGlobal}, {g.ignoreCase, flagIgnoreCase}, {g.multiline, flagMultiline}, {g.dotAll, flagDotAll}, {g.unicode, flagUnicode}, {g.y, flagSticky}} {
		if fl.get(this).ToBoolean() {
			f |= fl.flag
		}
	}
	key := patternKey{source: patternSource(g.source(this)), flags: f}
	p := g.patterns[key]
	if p == nil {
		if len(g.patterns) >= maxRunPatterns || g.patternBytes+len(key.source) > maxRunPatternBytes {
			clear(g.patterns)
			g.patternBytes = 0
		}
		p = sharedPatterns.get(key)
		g.patterns[key] = p
		g.patternBytes += len(key.source)
	}
	return p
}

// maxRunPatterns and maxRunPatternBytes bound the patterns a runtime
// remembers, over all the exchanges a warm runtime serves; when full it
// starts over. A script building patterns in a loop, or from each
// exchange's data, only makes the guard look them up again.
const (
	maxRunPatterns     = 256
	maxRunPatternBytes = 1 << 20
)

type regexFlags uint8

const (
	flagGlobal regexFlags = 1 << iota
	flagIgnoreCase
	flagMultiline
	flagDotAll
	flagUnicode
	flagSticky
)

type patternKey struct {
	source string // as the source getter returns it, lone surrogates escaped
	flags  regexFlags
}

// guardedPattern is what the guard knows about one pattern: whether goja
// matches it from position 0 with Go's regexp, and regexp2 copies of it for
// the matches goja runs with regexp2. It is shared by all runs; each match
// takes a regexp2.Regexp of its own from a pool, since its MatchTimeout is
// set per match.
type guardedPattern struct {
	flags regexFlags
	re2   bool   // goja uses Go's regexp for matches starting at 0
	src   string // the pattern as goja hands it to regexp2

	once             sync.Once
	err              error
	loose, anchored  sync.Pool // *regexp2.Regexp
	compileOptions   regexp2.RegexOptions
	anchoredFallback bool // \G(?:...) did not compile; sticky matches use loose
}

// regexp2 takes a copy of the pattern for one match; sticky asks for one
// anchored at the start position, which gives the same result as goja's
// unanchored search followed by its check that the match starts there,
// without scanning the rest of the subject.
func (p *guardedPattern) regexp2(sticky bool) (*regexp2.Regexp, func(), error) {
	p.once.Do(func() {
		var re, anchored *regexp2.Regexp
		re, p.err = regexp2.Compile(p.src, p.compileOptions)
		if p.err != nil {
			return
		}
		p.loose.Put(re)
		// \G asserts the match starts where the search starts.
		anchored, err := regexp2.Compile(`\G(?:`+p.src+`)`, p.compileOptions)
		if err != nil {
			p.anchoredFallback = true
			return
		}
		p.anchored.Put(anchored)
	})
	if p.err != nil {
		return nil, nil, p.err
	}
	pool, src := &p.loose, p.src
	if sticky && !p.anchoredFallback {
		pool, src = &p.anchored, `\G(?:`+p.src+`)`
	}
	re, _ := pool.Get().(*regexp2.Regexp)
	if re == nil {
		var err error
		if re, err = regexp2.Compile(src, p.compileOptions); err != nil {
			return nil, nil, err
		}
	}
	return re, func() { pool.Put(re) }, nil
}

// patternTable holds the analysis of every pattern seen, for all runs: the
// analysis and the compiled copies depend only on the pattern.
type patternTable struct {
	mu    sync.Mutex
	m     map[patternKey]*guardedPattern
	bytes int // the sources in m
}

// maxSharedPatterns and maxSharedPatternBytes bound the table, which lives
// as long as the process; when full it starts over.
const (
	maxSharedPatterns     = 4096
	maxSharedPatternBytes = 4 << 20
)

var sharedPatterns = &patternTable{m: map[patternKey]*guardedPattern{}}

func (t *patternTable) get(key patternKey) *guardedPattern {
	t.mu.Lock()
	p := t.m[key]
	t.mu.Unlock()
	if p != nil {
		return p
	}
	p = analysePattern(key)
	t.mu.Lock()
	if q := t.m[key]; q != nil {
		p = q
	} else {
		if len(t.m) >= maxSharedPatterns || t.bytes+len(key.source) > maxSharedPatternBytes {
			clear(t.m)
			t.bytes = 0
		}
		t.m[key] = p
		t.bytes += len(key.source)
	}
	t.mu.Unlock()
	return p
}

// analysePattern repeats goja's compileRegexp (builtin_regexp.go): the same
// conversions, then Go's regexp when parser.TransformRegExp can translate the
// pattern and Go's regexp accepts it, regexp2 otherwise.
func analysePattern(key patternKey) *guardedPattern {
	unicode := key.flags&flagUnicode != 0
	dotAll := key.flags&flagDotAll != 0
	src := key.source
	if unicode {
		src = convertRegexpToUnicode(src)
	} else {
		src = convertRegexpToUtf16(src)
	}
	p := &guardedPattern{flags: key.flags, src: src, compileOptions: regexp2.ECMAScript}
	if key.flags&flagMultiline != 0 {
		p.compileOptions |= regexp2.Multiline
	}
	if dotAll {
		p.compileOptions |= regexp2.Singleline
	}
	if key.flags&flagIgnoreCase != 0 {
		p.compileOptions |= regexp2.IgnoreCase
	}
	if unicode {
		p.compileOptions |= regexp2.Unicode
	}
	re2Str, err := parser.TransformRegExp(src, dotAll, unicode)
	if err != nil {
		return p // incompatible: regexp2 (any other error made goja throw)
	}
	var re2flags string
	if key.flags&flagMultiline != 0 {
		re2flags += "m"
	}
	if dotAll {
		re2flags += "s"
	}
	if key.flags&flagIgnoreCase != 0 {
		re2flags += "i"
	}
	if re2flags != "" {
		re2Str = fmt.Sprintf("(?%s:%s)", re2flags, re2Str)
	}
	// goja falls back to regexp2 when Go's regexp refuses a repeat count
	// (any other refusal made goja throw; regexp2 is the safe side anyway).
	_, err = regexp.Compile(re2Str)
	p.re2 = err == nil
	return p
}

// textCache remembers the last subject converted to runes, so the loops of
// the generic match, replace and split algorithms, which call exec once per
// match or position on the same string, convert it once.
type textCache struct {
	id     stringID
	keep   goja.String // holds the identified memory alive
	runes  []rune
	posMap []int
}

// maxCachedRunes bounds the subject a cache keeps (4 bytes a rune).
const maxCachedRunes = 4 << 20

// stringID identifies a goja string by its memory: goja strings are
// immutable, so the same memory is the same text.
type stringID struct {
	ptr uintptr
	n   int
}

func identify(s goja.String) (stringID, bool) {
	rv := reflect.ValueOf(s)
	switch rv.Kind() {
	case reflect.String:
		str := rv.String()
		return stringID{uintptr(unsafe.Pointer(unsafe.StringData(str))), len(str)}, true
	case reflect.Slice:
		return stringID{rv.Pointer(), rv.Len()}, true
	case reflect.Pointer:
		return stringID{rv.Pointer(), -1}, true
	}
	return stringID{}, false
}

func (c *textCache) lookup(s goja.String) bool {
	id, ok := identify(s)
	if ok && c.keep != nil && id == c.id {
		return true
	}
	c.id, c.keep, c.runes, c.posMap = id, nil, nil, nil
	if ok && s.Length() <= maxCachedRunes {
		c.keep = s
	}
	return false
}

// utf16Units returns s as UTF-16 code units, one rune each, as goja hands
// subjects to regexp2 without the u flag.
func (c *textCache) utf16Units(s goja.String) []rune {
	if c.lookup(s) {
		return c.runes
	}
	n := s.Length()
	runes := make([]rune, n)
	for i := 0; i < n; i++ {
		runes[i] = rune(s.CharAt(i))
	}
	if c.keep != nil {
		c.runes = runes
	}
	return runes
}

// codePoints returns s as code points, lone surrogates kept as they are, and
// the UTF-16 index of each code point plus the length, as goja's buildPosMap
// does for the u flag.
func (c *textCache) codePoints(s goja.String) ([]rune, []int) {
	if c.lookup(s) {
		return c.runes, c.posMap
	}
	n := s.Length()
	runes := make([]rune, 0, n)
	posMap := make([]int, 0, n+1)
	for i := 0; i < n; {
		r, size := decodeAt(s, i, n)
		runes = append(runes, r)
		posMap = append(posMap, i)
		i += size
	}
	posMap = append(posMap, n)
	if c.keep != nil {
		c.runes, c.posMap = runes, posMap
	}
	return runes, posMap
}

// decodeAt reads the code point at UTF-16 index i of s, leniently: a lone
// surrogate is returned as itself.
func decodeAt(s goja.String, i, n int) (rune, int) {
	c := s.CharAt(i)
	if utf16.IsSurrogate(rune(c)) && c < 0xDC00 && i+1 < n {
		if d := s.CharAt(i + 1); d >= 0xDC00 && d <= 0xDFFF {
			return utf16.DecodeRune(rune(c), rune(d)), 2
		}
	}
	return rune(c), 1
}

// patternSource turns the source getter's result into the Go string goja
// compiles: its escapeInvalidUtf16, lone surrogates written as \uXXXX.
func patternSource(v goja.Value) string {
	s, ok := v.(goja.String)
	if !ok {
		return v.String()
	}
	if rv := reflect.ValueOf(s); rv.Kind() != reflect.Slice {
		return s.String() // ASCII, or imported from valid UTF-8
	}
	n := s.Length()
	var sb strings.Builder
	pos, utf8Size := 0, 0
	for i := 0; i < n; {
		c, size := decodeAt(s, i, n)
		i += size
		if utf16.IsSurrogate(c) {
			if sb.Len() == 0 {
				sb.Grow(utf8Size + 7)
				var last rune
				for p := 0; p < pos; {
					r, sz := decodeAt(s, p, n)
					sb.WriteRune(r)
					last = r
					p += sz
				}
				if last == '\\' {
					sb.WriteRune(last)
				}
			}
			sb.WriteString(`\u`)
			writeHex4(&sb, int(c))
			continue
		}
		if sb.Len() > 0 {
			sb.WriteRune(c)
		} else {
			utf8Size += utf8.RuneLen(c)
			pos += size
		}
	}
	if sb.Len() > 0 {
		return sb.String()
	}
	return s.String()
}

// The conversions below are goja's (builtin_regexp.go, MIT licence), so that
// the guard compiles exactly the pattern goja compiles.

const hexDigits = "0123456789abcdef"

func decodeHex(s string) (int, bool) {
	var hex int
	for i := 0; i < len(s); i++ {
		var n byte
		chr := s[i]
		switch {
		case '0' <= chr && chr <= '9':
			n = chr - '0'
		case 'a' <= chr && chr <= 'f':
			n = chr - 'a' + 10
		case 'A' <= chr && chr <= 'F':
			n = chr - 'A' + 10
		default:
			return 0, false
		}
		hex = hex*16 + int(n)
	}
	return hex, true
}

func writeHex4(b *strings.Builder, i int) {
	b.WriteByte(hexDigits[i>>12])
	b.WriteByte(hexDigits[(i>>8)&0xF])
	b.WriteByte(hexDigits[(i>>4)&0xF])
	b.WriteByte(hexDigits[i&0xF])
}

// convertRegexpToUnicode turns \uXXXX\uXXXX surrogate pairs into the
// characters they encode.
func convertRegexpToUnicode(patternStr string) string {
	var sb strings.Builder
	pos := 0
	for i := 0; i < len(patternStr)-11; {
		r, size := utf8.DecodeRuneInString(patternStr[i:])
		if r == '\\' {
			i++
			if patternStr[i] == 'u' && patternStr[i+5] == '\\' && patternStr[i+6] == 'u' {
				if first, ok := decodeHex(patternStr[i+1 : i+5]); ok {
					if first >= 0xD800 && first <= 0xDBFF {
						if second, ok := decodeHex(patternStr[i+7 : i+11]); ok {
							if second >= 0xDC00 && second <= 0xDFFF {
								r = utf16.DecodeRune(rune(first), rune(second))
								sb.WriteString(patternStr[pos : i-1])
								sb.WriteRune(r)
								i += 11
								pos = i
								continue
							}
						}
					}
				}
			}
			i++
		} else {
			i += size
		}
	}
	if pos > 0 {
		sb.WriteString(patternStr[pos:])
		return sb.String()
	}
	return patternStr
}

// convertRegexpToUtf16 writes characters outside the BMP as \uXXXX\uXXXX.
func convertRegexpToUtf16(patternStr string) string {
	var sb strings.Builder
	pos := 0
	var prevRune rune
	for i := 0; i < len(patternStr); {
		r, size := utf8.DecodeRuneInString(patternStr[i:])
		if r > 0xFFFF {
			sb.WriteString(patternStr[pos:i])
			if prevRune == '\\' {
				sb.WriteRune('\\')
			}
			first, second := utf16.EncodeRune(r)
			sb.WriteString(`\u`)
			writeHex4(&sb, int(first))
			sb.WriteString(`\u`)
			writeHex4(&sb, int(second))
			pos = i + size
		}
		i += size
		prevRune = r
	}
	if pos > 0 {
		sb.WriteString(patternStr[pos:])
		return sb.String()
	}
	return patternStr
}
