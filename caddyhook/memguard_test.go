package caddyhook

import (
	"context"
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/require"
)

// testMemoryLimit keeps the tests' bombs small: they stop at a few hundred
// megabytes.
const testMemoryLimit = 256 << 20

// peakHeap samples the heap until stop is called and returns the highest
// value seen.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if h := heapObjectBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func settledHeap() uint64 {
	runtime.GC()
	runtime.GC()
	return heapObjectBytes()
}

func TestMemoryGuardStopsBombs(t *testing.T) {
	const timeout = 10 * time.Second
	bombs := []string{
		`var s = 'x'; while (1) s = s + s;`,
		`var a = []; while (1) a.push({x: a.length});`,
		// Under the repeat cap, many times.
		`var a = [], k = 'x'.repeat(1024); while (1) a.push(k.repeat(2**14 + a.length));`,
		`var a = []; while (1) a.push(new Uint8Array(2**24));`,
		`var o = {}; for (var i = 0; ; i++) o['k' + i] = [i, 'v' + i];`,
	}
	for _, src := range bombs {
		t.Run(src, func(t *testing.T) {
			before := settledHeap()
			peak := peakHeap()
			_, elapsed, err := runGuarded(src, timeout, testMemoryLimit)
			top := peak()
			herr := interruptError(err)
			if herr == nil {
				t.Fatalf("error = %v, want the memory limit interrupt", err)
			}
			wantError(t, herr, CodeServerError, "memory limit exceeded")
			if elapsed > timeout {
				t.Errorf("stopped after %v, past the %v time limit", elapsed, timeout)
			}
			if top > 2<<30 {
				t.Errorf("the heap peaked at %d MiB", top>>20)
			}
			after := settledHeap()
			if after > before+100<<20 {
				t.Errorf("heap %d MiB after the run, %d MiB before", after>>20, before>>20)
			}
			t.Logf("stopped after %v; heap peaked at %d MiB; %d MiB before, %d MiB after", elapsed.Round(time.Millisecond), top>>20, before>>20, after>>20)
		})
	}
}

// TestMemoryGuardSparesLaterRuns runs a normal script right after a bomb,
// while the bomb's garbage may still be in the heap: it must not be blamed.
func TestMemoryGuardSparesLaterRuns(t *testing.T) {
	normal := `var a = []; for (var i = 0; i < 20000; i++) a.push({i: i, s: 'v' + i});
		var s = ''; for (var j = 0; j < 2000; j++) s += 'abcdefghij';
		a.length + s.length`
	for i := 0; i < 3; i++ {
		_, _, err := runGuarded(`var a = [], k = 'x'.repeat(1024); while (1) a.push(k.repeat(2**14 + a.length));`, 10*time.Second, testMemoryLimit)
		if herr := interruptError(err); herr == nil || herr.Description != "memory limit exceeded" {
			t.Fatalf("bomb: %v", err)
		}
		v, _, err := runGuarded(normal, 10*time.Second, testMemoryLimit)
		if err != nil || v.ToInteger() != 40000 {
			t.Fatalf("normal run after the bomb: %v, %v", v, err)
		}
	}
}

// TestMemoryGuardStopsEveryRunningRun checks that a run that is running
// beside a bomb is stopped too (the heap cannot tell them apart), and that
// one that waits (not registered) is not touched.
func TestMemoryGuardStopsEveryRunningRun(t *testing.T) {
	var wg sync.WaitGroup
	var busyErr error
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		vm := newVM()
		_ = vm.Set("started", func() { close(started) })
		stop := context.AfterFunc(ctx, func() { vm.Interrupt(errTimedOut()) })
		defer stop()
		leave := memWatch.enter(vm, testMemoryLimit)
		defer leave()
		_, busyErr = vm.RunString(`started(); var n = 0; while (true) n++;`)
	}()
	<-started
	_, _, err := runGuarded(`var s = 'x'; while (1) s = s + s;`, 10*time.Second, testMemoryLimit)
	if herr := interruptError(err); herr == nil || herr.Description != "memory limit exceeded" {
		t.Fatalf("bomb: %v", err)
	}
	wg.Wait()
	if herr := interruptError(busyErr); herr == nil || herr.Description != "memory limit exceeded" {
		t.Fatalf("the run beside the bomb: %v", busyErr)
	}
}

func TestMemoryGuardGoroutineStops(t *testing.T) {
	waitIdle := func() {
		for i := 0; i < 500 && memWatch.active(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if memWatch.active() {
			t.Fatal("the watchdog is still running with no run registered")
		}
	}
	waitIdle()
	baseline := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		if _, _, err := runGuarded(`1 + 1`, time.Second, testMemoryLimit); err != nil {
			t.Fatal(err)
		}
		if _, _, err := runGuarded(`var s = 'x'; while (1) s = s + s;`, 10*time.Second, testMemoryLimit); interruptError(err) == nil {
			t.Fatal(err)
		}
	}
	waitIdle()
	n := runtime.NumGoroutine()
	for i := 0; i < 300 && n > baseline; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > baseline {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines, %d before:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// fakeGuard is a memGuard driven by hand: no goroutine, a heap the test
// sets (heap, and the values passed to tick), and collections that only
// count.
func fakeGuard() (*memGuard, *atomic.Uint64, *atomic.Int32, *atomic.Int32) {
	var gcs, frees atomic.Int32
	var heap atomic.Uint64
	g := &memGuard{
		interval:     time.Hour,
		readHeap:     heap.Load,
		gcNow:        func() { gcs.Add(1) },
		freeMemory:   func() { frees.Add(1) },
		defaultLimit: func() int64 { return 1000 },
		runs:         map[*memRun]struct{}{},
		running:      true, // tick is called by the test
	}
	return g, &heap, &gcs, &frees
}

// stoppedFor reports whether vm has a memory-limit interrupt pending.
func stoppedFor(vm *goja.Runtime) bool {
	_, err := vm.RunString(`1`)
	herr := interruptError(err)
	return herr != nil && herr.Description == "memory limit exceeded"
}

func waitCollected(g *memGuard) {
	for i := 0; i < 1000; i++ {
		g.mu.Lock()
		busy := g.collecting
		g.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMemoryGuardPolicy(t *testing.T) {
	g, heap, gcs, frees := fakeGuard()

	// Over the limit: a collection first, then the stop if still over.
	a := goja.New()
	heap.Store(50)
	leaveA := g.enter(a, 100) // lowest heap seen: 50
	g.tick(140)               // over (140 > 100, grown by 90) but under the hard limit (150)
	waitCollected(g)
	if gcs.Load() != 1 {
		t.Fatalf("%d collections, want 1", gcs.Load())
	}
	g.tick(90) // the collection freed it: nothing happens
	if stoppedFor(a) {
		t.Fatal("stopped although the heap went back under the limit")
	}
	g.tick(140)
	waitCollected(g)
	g.tick(140) // still over after the collection: stopped
	if !stoppedFor(a) {
		t.Fatal("not stopped")
	}

	// Past the hard limit: stopped at once.
	b := goja.New()
	heap.Store(10)
	leaveB := g.enter(b, 0) // the default limit, 1000
	g.tick(10)              // all well: no collection is vouching for anything
	waitCollected(g)
	g.tick(1300)
	if !stoppedFor(b) {
		t.Fatal("not stopped past the hard limit")
	}

	// A run that starts when the heap is already high is not blamed.
	c := goja.New()
	heap.Store(1300)
	leaveC := g.enter(c, 100)
	g.tick(1300)
	waitCollected(g)
	g.tick(1300)
	if stoppedFor(c) {
		t.Fatal("a run that started above the limit was stopped")
	}
	g.tick(60) // the garbage is collected: it is judged from here
	g.tick(200)
	if !stoppedFor(c) {
		t.Fatal("not stopped after growing past the hard limit")
	}

	// No limit: never registered.
	g.mu.Lock()
	registered := len(g.runs)
	g.mu.Unlock()
	leaveD := g.enter(goja.New(), -1)
	g.mu.Lock()
	if len(g.runs) != registered {
		t.Error("a run without a limit was registered")
	}
	g.mu.Unlock()
	leaveD()

	// Once the stopped runs have left, the memory goes back to the system,
	// then the watchdog ends.
	leaveA()
	leaveB()
	if !g.tick(0) {
		t.Fatal("the watchdog ended with a run registered")
	}
	leaveC()
	leaveC() // harmless
	if !g.tick(0) {
		t.Fatal("the watchdog ended before returning the memory")
	}
	time.Sleep(memCleanupGrace)
	if g.tick(0) || g.active() {
		t.Fatal("the watchdog did not end")
	}
	waitCollected(g)
	if frees.Load() != 1 {
		t.Fatalf("%d FreeOSMemory, want 1", frees.Load())
	}
}

func TestDefaultMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	debug.SetMemoryLimit(math.MaxInt64)
	if got := DefaultMemoryLimit(); got != 1<<30 {
		t.Errorf("without GOMEMLIMIT: %d", got)
	}
	debug.SetMemoryLimit(512 << 20)
	if got := DefaultMemoryLimit(); got != 384<<20 {
		t.Errorf("with GOMEMLIMIT=512MiB: %d", got)
	}
	debug.SetMemoryLimit(8 << 30)
	if got := DefaultMemoryLimit(); got != 1<<30 {
		t.Errorf("with GOMEMLIMIT=8GiB: %d", got)
	}
}

// TestAllocationCaps runs single calls that would allocate gigabytes (and
// kill the process without the caps) and checks that each throws at once.
func TestAllocationCaps(t *testing.T) {
	cases := []struct{ src, want string }{
		{`'x'.repeat(2**30)`, "RangeError: Invalid string length"},
		{`'x'.repeat(2**40)`, "RangeError: Invalid string length"},
		{`'\u00e9'.repeat(2**25 + 1)`, "RangeError: Invalid string length"},
		{`'x'.padStart(2**40)`, "RangeError: Invalid string length"},
		{`'x'.padEnd(2**30, 'ab')`, "RangeError: Invalid string length"},
		{`var big = 'x'.repeat(2**20); ''.concat.apply('', new Array(64).fill(big))`, "RangeError: Invalid string length"},
		{`new Array(2**20).join('x'.repeat(64))`, "RangeError: Invalid string length"},
		{`new Array(65536).fill('x'.repeat(65536)).join('')`, "RangeError: Invalid string length"},
		{`new Array(65536).fill('x'.repeat(65536)).toLocaleString()`, "RangeError: Invalid string length"},
		{`String(new Array(65536).fill('x'.repeat(65536)))`, "RangeError: Invalid string length"},
		{`new Array(2**32 - 1).join('')`, "RangeError: Invalid array length"},
		{`new Array(2**32 - 1).fill(0)`, "RangeError: Invalid array length"},
		{`new Array(2**32 - 1).map(function (x) { return x; })`, "RangeError: Invalid array length"},
		{`new Array(2**32 - 1).sort()`, "RangeError: Invalid array length"},
		{`Array.prototype.with.call({length: 2**32 - 1}, 0, 0)`, "RangeError: Invalid array length"},
		{`Array.prototype.toReversed.call({length: 2**32 - 1})`, "RangeError: Invalid array length"},
		{`Array.prototype.toSorted.call({length: 2**32 - 1})`, "RangeError: Invalid array length"},
		{`Array.prototype.toSpliced.call({length: 2**32 - 1}, 0, 0)`, "RangeError: Invalid array length"},
		{`Array.from({length: 2**32})`, "RangeError: Invalid array length"},
		{`Math.max.apply(null, {length: 2**32})`, "RangeError: Maximum call stack size exceeded"},
		{`Reflect.apply(Math.max, null, {length: 2**32})`, "RangeError: Maximum call stack size exceeded"},
		{`Reflect.construct(Array, {length: 2**32})`, "RangeError: Maximum call stack size exceeded"},
		{`JSON.stringify(new Array(65536).fill('x'.repeat(65536)))`, "RangeError: Invalid string length"},
		{`JSON.stringify({a: new Array(65536).fill('x'.repeat(65536))}, function (k, v) { return v; })`, "RangeError: Invalid string length"},
		{`var d = []; for (var i = 0; i < 20000; i++) d = [d]; JSON.stringify(d, null, 10)`, "RangeError: Invalid string length"},
		{`JSON.stringify({}, Object.assign([], {length: 2**32 - 1}))`, "RangeError: Invalid array length"},
		{`new ArrayBuffer(2**40)`, "RangeError: Array buffer allocation failed"},
		{`new Uint8Array(2**40)`, "RangeError: Array buffer allocation failed"},
		{`new Float64Array(2**28)`, "RangeError: Array buffer allocation failed"},
		{`new Int32Array({length: 2**40})`, "RangeError: Array buffer allocation failed"},
		{`Uint8Array.from({length: 2**40})`, "RangeError: Array buffer allocation failed"},
		{`class X extends Uint8Array {}; new X(2**40)`, "RangeError: Array buffer allocation failed"},
		{`new (Object.getPrototypeOf(new Uint8Array(1)).constructor)(2**40)`, "RangeError: Array buffer allocation failed"},
		{`new (new Uint8Array(1).buffer.constructor)(2**40)`, "RangeError: Array buffer allocation failed"},
		{`new Uint16Array(4).subarray(0, 2).constructor === Uint16Array ? new (new Uint16Array(4).slice().constructor)(2**40) : 0`, "RangeError: Array buffer allocation failed"},
		// The caps do not count conversions twice.
		{`var n = 0; 'ab'.repeat({valueOf() { n++; return 2**40; }})`, "RangeError: Invalid string length"},
	}
	for _, c := range cases {
		t.Run(c.src, func(t *testing.T) {
			before := settledHeap()
			peak := peakHeap()
			// The limit only stops a case that is stuck: building the
			// arrays some cases refuse takes seconds under -race.
			_, _, elapsed, raw := guardedRun(t, c.src, 30*time.Second)
			top := peak()
			var ex *goja.Exception
			if !errors.As(raw, &ex) || !strings.HasPrefix(ex.Value().String(), c.want) {
				t.Fatalf("error = %v, want %s", raw, c.want)
			}
			if top > before+300<<20 {
				t.Errorf("the heap grew from %d to %d MiB", before>>20, top>>20)
			}
			t.Logf("%v, heap peak +%d MiB", elapsed.Round(time.Microsecond), (top-min(top, before))>>20)
		})
	}
}

// capCases are compared between a plain goja runtime and one with the caps.
var capCases = []string{
	`'ab'.repeat(3) + '|' + 'x'.repeat(0) + '|' + ''.repeat(2**40)`,
	`(function () { try { 'x'.repeat(-1); } catch (e) { return e.name + e.message; } })()`,
	`(function () { try { 'x'.repeat(Infinity); } catch (e) { return e.name + e.message; } })()`,
	`(function () { try { String.prototype.repeat.call(null, 2); } catch (e) { return e.name; } })()`,
	`(function () { var n = 0; var r = 'ab'.repeat({valueOf() { n++; return 2; }}); return r + n; })()`,
	`(function () { var n = 0; var r = String.prototype.repeat.call({toString() { n++; return 'q'; }}, 3); return r + n; })()`,
	`'5'.padStart(3, '0') + '|' + 'abc'.padEnd(8, '12') + '|' + 'abc'.padStart(2) + '|' + 'abc'.padStart(6, '') + '|' + 'x'.padEnd(4)`,
	`'\u00e9'.padStart(4, '\u{1F600}') + '|' + 'x'.padEnd(2**40, '')`,
	`(function () { var n = 0; var r = 'a'.padEnd({valueOf() { n++; return 3; }}, {toString() { n++; return 'z'; }}); return r + n; })()`,
	`'a'.concat('b', 1, null, undefined, {toString() { return 'o'; }}, [2, 3])`,
	`[1, [2, [3, null]], undefined, 'x', {}].join() + '|' + [].join() + '|' + [1, 2].join(undefined) + '|' + [1, 2].join(null)`,
	`(function () { var a = [1]; a.push(a, 2); return a.join('-') + '|' + String(a); })()`,
	`Array.prototype.join.call({length: 3, 0: 'a', 2: 'c'}, '+') + '|' + Array.prototype.join.call('abc', '.')`,
	`(function () { var log = []; var o = {length: 2, get 0() { log.push('g0'); return {toString() { log.push('s0'); return 'A'; }}; }, get 1() { log.push('g1'); return 'B'; }}; return Array.prototype.join.call(o, {toString() { log.push('sep'); return '/'; }}) + log; })()`,
	`(function () { try { [Symbol()].join(); } catch (e) { return e.name; } })()`,
	`(function () { try { Array.prototype.join.call(null); } catch (e) { return e.name; } })()`,
	`[1.5, 'x', null, new Date(0).getTime(), [2, 3]].toLocaleString()`,
	`(function () { var a = [1]; a.push(a); return a.toLocaleString(); })()`,
	`(function () { try { [{toLocaleString: 5}].toLocaleString(); } catch (e) { return e.name; } })()`,
	`(function () { try { [{toLocaleString: 5, toString() { return '100%d'; }}].toLocaleString(); } catch (e) { return e.message; } })()`,
	`[1, 2, 3, 4].fill(0, 1, 3).join() + '|' + new Array(3).fill(7).join() + '|' + Array.prototype.fill.call({length: 2}, 1).length`,
	`[3, 1, 2].sort().join() + '|' + [1, 2].map(function (x) { return x * 2; }).join() + '|' + [10, 9, 1].sort(function (a, b) { return a - b; }).join()`,
	`[3, 1, 2].toSorted().join() + [1, 2].toReversed().join() + [1, 2, 3].toSpliced(1, 1, 'x').join() + [1, 2].with(0, 9).join()`,
	`Array.from('ab\u{1F600}').join() + '|' + Array.from({length: 3}, function (v, i) { return i * 2; }).join() + '|' + Array.from(new Set([1, 1, 2])).join()`,
	`Math.max.apply(null, [1, 5, 3]) + Reflect.apply(Math.min, null, [4, 2]) + Reflect.construct(Date, [0]).getTime() + Math.max.apply(null, {length: 2, 0: 1, 1: 8})`,
	`(function () { try { Math.max.apply(null, 5); } catch (e) { return e.name; } })()`,
	// A length getter is read once: the caps cannot be passed by answering
	// 0 to the check and more to the original.
	`(function () { var n = 0; var r = Math.max.apply(null, {get length() { return n++ ? 2**21 : 0; }}); return r + ':' + n; })()`,
	`(function () { var n = 0; var r = Reflect.apply(Math.max, null, new Proxy({}, {get(t, k) { return k === 'length' ? (n++ ? 2**21 : 1) : 7; }})); return r + ':' + n; })()`,
	`(function () { var n = 0; var d = Reflect.construct(Date, {get length() { return n++ ? 2**21 : 1; }, 0: 5}); return d.getTime() + ':' + n; })()`,
	`Math.max.apply(null, new Proxy([1, 7], {})) + Reflect.apply(Math.min, null, {length: 2, get 0() { return 3; }, 1: 9}) + Math.max.apply(null, new Uint8Array([4, 2])) + Math.max.apply(null, [, 1]) + Math.max.apply(null, new Array(3))`,
	`(function () { var n = 0; try { Reflect.apply(5, null, {length: 1, get 0() { n++; }}); } catch (e) { return e.name + n; } })()`,
	`(function () { var n = 0; try { Reflect.construct(Date, {length: 1, get 0() { n++; }}, 5); } catch (e) { return e.name + n; } })()`,
	`[Function.prototype.apply.length, Function.prototype.apply.name, String.prototype.repeat.length, String.prototype.padStart.length, Array.prototype.join.length, Array.from.length, JSON.stringify.length, Reflect.construct.length, Array.prototype.toLocaleString.length].join()`,
	`JSON.stringify({a: [1, 'x', {b: null, c: undefined, d: function () {}}], e: new Date(0), f: 'q"\n'})`,
	`JSON.stringify({a: [1, {b: 2}]}, null, 2) + JSON.stringify([1, [2]], null, '--') + JSON.stringify({a: 1}, null, new Number(3)) + JSON.stringify({a: 1}, null, new String('ab'))`,
	`JSON.stringify({a: 1, b: 'x', c: [1, 2]}, function (k, v) { return typeof v === 'number' ? v * 10 : v; })`,
	`JSON.stringify({a: 1, b: {a: 2, c: 3}, c: 4}, ['c', 'a'])`,
	`JSON.stringify({toJSON: function (k) { return 'tj' + k; }}) + JSON.stringify({x: {toJSON: function (k) { return k; }}})`,
	`(function () { var seen = []; JSON.stringify({a: [1]}, function (k, v) { seen.push(typeof this + ':' + k); return v; }); return seen.join(); })()`,
	`(function () { var o = {}; o.o = o; try { JSON.stringify(o); } catch (e) { return e.name; } })()`,
	`(function () { try { JSON.stringify({a: 1n}); } catch (e) { return e.name; } })()`,
	`[JSON.stringify(undefined), JSON.stringify(function () {}), JSON.stringify(Symbol()), JSON.stringify('\u{1F600}'), JSON.stringify(new String('s'))].join()`,
	`new Uint8Array([1, 2, 300]).join() + '|' + new Float64Array(2).length + '|' + new Int16Array(new ArrayBuffer(8), 2, 2).length + '|' + new ArrayBuffer(5).byteLength`,
	`[new Uint8Array(2) instanceof Uint8Array, new Uint8Array(2) instanceof Int8Array, new ArrayBuffer(1) instanceof ArrayBuffer, Uint8Array.name, Uint8Array.length, ArrayBuffer.name, Uint8Array.BYTES_PER_ELEMENT, Float64Array.BYTES_PER_ELEMENT].join()`,
	`[Object.getPrototypeOf(Uint8Array) === Object.getPrototypeOf(Int8Array), new Uint8Array(1).constructor === Uint8Array, Uint8Array.prototype.constructor === Uint8Array, new Uint8Array(4).buffer.constructor === ArrayBuffer, typeof Uint8Array].join()`,
	`(function () { class X extends Uint8Array { sum() { return this.reduce(function (a, b) { return a + b; }, 0); } } var x = new X([1, 2, 3]); return [x instanceof X, x instanceof Uint8Array, x.sum(), x.constructor === X, x.subarray(1).sum(), x.map(function (v) { return v * 2; }).sum(), X.from([4]).sum()].join(); })()`,
	`[Uint8Array.from([1, 2]).join(), Uint8Array.of(3, 4).join(), new Uint8Array(4).slice(1).constructor === Uint8Array, new Uint8Array([5, 6]).subarray(1)[0], ArrayBuffer.isView(new DataView(new ArrayBuffer(2)))].join()`,
	`(function () { try { Uint8Array(2); } catch (e) { return e.name; } })()`,
	`(function () { try { ArrayBuffer(2); } catch (e) { return e.name; } })()`,
	`(function () { try { new Uint8Array(-1); } catch (e) { return e.name; } })()`,
	`(function () { var n = 0; var a = new Uint8Array({valueOf() { n++; return 3; }}); return a.length + ':' + n; })()`,
	`(function () { var n = 0; var b = new ArrayBuffer({valueOf() { n++; return 3; }}); return b.byteLength + ':' + n; })()`,
	`new Uint8Array([1, 2]).toString() + Object.prototype.toString.call(new Uint8Array(1)) + ArrayBuffer[Symbol.species].name`,
}

func TestAllocationCapsKeepBehaviour(t *testing.T) {
	for _, c := range capCases {
		plainV, plainErr := goja.New().RunString(c)
		want := fmtResult(plainV, plainErr)
		gotV, gotErr := newVM().RunString(c)
		got := fmtResult(gotV, gotErr)
		if got != want {
			t.Errorf("%s\n  plain: %s\n  caps:  %s", c, want, got)
		}
	}
}

func fmtResult(v goja.Value, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return v.String()
}

// TestBufferCaps checks the capped buffer module: Buffer.alloc(2**40) and
// its kin throw instead of killing the process, and Buffer works as before.
func TestBufferCaps(t *testing.T) {
	newBufferVM := func(capped bool) *goja.Runtime {
		vm := newVM()
		reg := require.NewRegistry()
		if capped {
			reg.RegisterNativeModule("buffer", requireCappedBuffer)
		}
		reg.Enable(vm)
		b, err := vm.RunString(`require('buffer').Buffer`)
		if err != nil {
			t.Fatal(err)
		}
		_ = vm.Set("Buffer", b)
		return vm
	}
	for _, c := range []string{
		`Buffer.alloc(2**40)`,
		`Buffer.from({length: 2**40})`,
		`new Buffer({length: 2**40})`,
		`Buffer({length: 2**40})`,
		`Buffer.concat([], 2**40)`,
		// Without totalLength, concat allocates the sum of the lengths.
		`Buffer.concat(new Array(256).fill(Buffer.alloc(1<<26)))`,
		`Buffer.concat(new Array(32).fill(Buffer.alloc(1<<24)))`,
		`new (Buffer.from('a').constructor)({length: 2**40})`,
	} {
		_, err := newBufferVM(true).RunString(c)
		var ex *goja.Exception
		if !errors.As(err, &ex) || !strings.HasPrefix(ex.Value().String(), "RangeError: Array buffer allocation failed") {
			t.Errorf("%s: %v", c, err)
		}
	}
	for _, c := range []string{
		`Buffer.from('abc').toString('hex') + Buffer.alloc(3, 'x').toString() + Buffer.concat([Buffer.from('a'), Buffer.from('b')]).toString()`,
		`Buffer.concat([Buffer.from('ab'), Buffer.from('c')]).toString() + Buffer.concat([Buffer.from('ab')], 1).toString() + Buffer.concat([]).length`,
		`[Buffer.from('a') instanceof Buffer, Buffer.from('a') instanceof Uint8Array, Buffer.isBuffer(Buffer.from('a')), Buffer.from('a').constructor === Buffer, Buffer.name, Object.getPrototypeOf(Buffer) === Uint8Array].join()`,
		`Buffer.from([1, 2, 3]).readUInt16BE(1) + Buffer.byteLength('\u00e9') + new Buffer('xy').length + Buffer('z').toString()`,
		`Buffer.from('aGk=', 'base64').toString() + Buffer.from(new Uint8Array([104, 105]).buffer).toString()`,
	} {
		want := fmtResult(newBufferVM(false).RunString(c))
		got := fmtResult(newBufferVM(true).RunString(c))
		if got != want {
			t.Errorf("%s\n  plain:  %s\n  capped: %s", c, want, got)
		}
	}
}

// TestMemGuardHeapReadingClock: enter takes the watchdog's last heap
// reading for a run's floor only while it is fresh on a clock that never
// goes back. A reading stamped ahead of the clock (the wall clock was
// stepped back after it was taken, by NTP or a resumed VM) is of unknown
// age: an old, low reading would charge the run with everything the heap
// grew since, and stop it.
func TestMemGuardHeapReadingClock(t *testing.T) {
	floor := func(g *memGuard) uint64 {
		g.mu.Lock()
		defer g.mu.Unlock()
		for r := range g.runs {
			return r.floor
		}
		t.Fatal("no run registered")
		return 0
	}
	g, heap, _, _ := fakeGuard()
	g.interval = time.Minute
	heap.Store(900)
	g.lastHeap.Store(1)
	g.lastHeapAt.Store(time.Now().Add(time.Hour).UnixNano())
	leave := g.enter(goja.New(), 1000)
	if got := floor(g); got != 900 {
		t.Errorf("floor = %d from a reading stamped ahead of the clock, want 900 read now", got)
	}
	leave()

	g.noteHeap(5) // as the watchdog does
	leave = g.enter(goja.New(), 1000)
	if got := floor(g); got != 5 {
		t.Errorf("floor = %d, want the fresh reading 5", got)
	}
	leave()
}
