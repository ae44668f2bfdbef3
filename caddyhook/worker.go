package caddyhook

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/dop251/goja"
)

// worker is one warm JavaScript runtime: Node's globals, require, the
// event loop and the guards installed once, and each script's module top
// level run once, the first time an exchange needs it. As on Auth0, where a
// container serves many executions, module-level variables and global
// persist between the exchanges one worker serves; the exchanges take turns,
// never sharing it at once.
type worker struct {
	eng     *Engine
	vm      *goja.Runtime
	loop    *loop
	regex   *regexGuard
	require goja.Value
	// The intrinsics, captured before any script runs: a script may replace
	// the globals, but the engine's own reading and awaiting must work as
	// JSON and await do.
	stringify, parse goja.Callable
	errorCtor        *goja.Object
	promiseCtor      *goja.Object
	promiseResolve   goja.Callable
	objectProto      *goja.Object
	freeze           goja.Callable
	// getOwnPropertyDescriptor is Object's, for storageHolder.
	getOwnPropertyDescriptor goja.Callable
	// storageGet and storageSet are the accessor of webtask.storage,
	// made on first use (storage.go).
	storageGet, storageSet goja.Value
	// entries holds each loaded script's entry point.
	entries map[*Script]goja.Callable
	// run is the exchange being served; nil between exchanges.
	run *run
	// fetchCalls counts the outbound calls in flight (fetch.go). One
	// counter serves every exchange: a runtime left with calls under way is
	// never reused (serve), so each exchange it serves starts at zero.
	fetchCalls *atomic.Int32
}

// newWorker builds a runtime with everything but the scripts.
func (e *Engine) newWorker() *worker {
	vm, globals := newRuntime()
	w := &worker{eng: e, vm: vm, entries: map[*Script]goja.Callable{}, fetchCalls: new(atomic.Int32)}
	// Backtracking regular expressions do not see vm.Interrupt; the guard
	// bounds them by the deadline of the exchange being served
	// (regexguard.go). It is bound to each exchange in serve.
	w.regex = installRegexGuard(vm, context.Background(), func() {})
	w.loop = newLoop(vm)
	w.loop.uncaught = func(err error) {
		if r := w.run; r != nil {
			r.fail(r.errorFromThrow(err, "an exception was thrown in a microtask"))
		}
	}
	w.require = e.modules.enable(vm, installFetch(vm, e.fetcher, w), globals.webCrypto)
	jsonObj := vm.Get("JSON").ToObject(vm)
	w.stringify, _ = goja.AssertFunction(jsonObj.Get("stringify"))
	w.parse, _ = goja.AssertFunction(jsonObj.Get("parse"))
	w.errorCtor = vm.Get("Error").ToObject(vm)
	w.promiseCtor = vm.Get("Promise").ToObject(vm)
	w.promiseResolve, _ = goja.AssertFunction(w.promiseCtor.Get("resolve"))
	w.objectProto = vm.NewObject().Prototype()
	objectCtor := vm.Get("Object").ToObject(vm)
	w.freeze, _ = goja.AssertFunction(objectCtor.Get("freeze"))
	w.getOwnPropertyDescriptor, _ = goja.AssertFunction(objectCtor.Get("getOwnPropertyDescriptor"))
	w.installConsole()
	return w
}

// serve makes r the worker's exchange until the returned end is called.
// end reports whether the worker may serve another exchange: not when the
// run was interrupted (time-out, cancellation, the memory or regex guard),
// panicked or failed loading a script, since its runtime may be left
// half-way through anything.
func (w *worker) serve(r *run) (end func() (reusable bool)) {
	var interrupted atomic.Bool
	interrupt := func() {
		interrupted.Store(true)
		w.vm.Interrupt(timeoutCause(r.ctx))
	}
	w.run = r
	w.regex.bind(r.ctx, interrupt)
	w.loop.begin()
	// Stopped by the watchdog when the heap passes the memory limit; a
	// script can only be stopped between two instructions, so the
	// built-ins that allocate in one call are capped as well (newVM).
	leave := memWatch.enter(w.vm, w.eng.cfg.MemoryLimit)
	// The runtime is interrupted when time is up, which also ends endless
	// loops.
	stop := context.AfterFunc(r.ctx, interrupt)
	return func() bool {
		// After stop and leave return, nothing interrupts the runtime any
		// more; a time-out that fired as the run finished still counts.
		stopped := !stop()
		memStopped := leave()
		_, overflowed := sawUncatchable.LoadAndDelete(w.vm)
		// Work still under way would never call back: a promise a module
		// keeps would stay pending for good. The runtime is not reused.
		pending := w.loop.pendingRef()
		w.loop.end()
		w.regex.bind(context.Background(), func() {})
		w.run = nil
		r.ended = true
		return !stopped && !memStopped && !overflowed && !pending && !interrupted.Load() && !r.broken && r.ctx.Err() == nil
	}
}

// entry returns s's entry point, running its module top level first if
// this worker has not yet. The top level runs as part of r, bounded by its
// time; a failure there breaks the worker. loadErr is what the top level
// threw; exportErr says the script does not export what its kind needs.
func (w *worker) entry(r *run, s *Script) (fn goja.Callable, loadErr, exportErr error) {
	if fn, ok := w.entries[s]; ok {
		return fn, nil, nil
	}
	return w.load(r, s)
}

// load is entry for a script the worker has not loaded yet; apart, so that
// what its closure captures is allocated only then.
func (w *worker) load(r *run, s *Script) (fn goja.Callable, loadErr, exportErr error) {
	// In a frame of its own: reading module.exports may run a getter.
	if err := protect(w.vm, func() error {
		exports, err := s.load(w.vm, w.require)
		if err != nil {
			loadErr = err
			return nil
		}
		fn, exportErr = s.entry(w.vm, exports)
		return nil
	}); err != nil && loadErr == nil {
		loadErr = err
	}
	if loadErr != nil || exportErr != nil {
		r.broken = true
		return nil, loadErr, exportErr
	}
	w.entries[s] = fn
	return fn, nil, nil
}

// frozen makes fn a native function and freezes it with the intrinsic
// Object.freeze: a function the worker hands to every exchange must carry
// nothing from one to the next.
func (w *worker) frozen(fn func(goja.FunctionCall) goja.Value) goja.Value {
	f := w.vm.ToValue(fn)
	if _, err := w.freeze(goja.Undefined(), f); err != nil {
		panic("caddyhook: freezing a native function: " + err.Error())
	}
	return f
}

// newPlain starts an ordinary object for the engine to fill with data
// members by setting them, before donePlain finishes it. Until then it has
// no prototype, so setting a member creates it whatever a script put on
// Object.prototype (a setter never runs), as defining it would, and costs
// less: goja's DefineDataProperty allocates a descriptor per member.
func (w *worker) newPlain() *goja.Object { return w.vm.CreateObject(nil) }

// donePlain gives obj, from newPlain, the intrinsic Object.prototype: it is
// then what NewObject and the members defined one by one would have made.
func (w *worker) donePlain(obj *goja.Object) *goja.Object {
	_ = obj.SetPrototype(w.objectProto)
	return obj
}

// ensureLive throws, in a native function, when a script calls an api
// object of an exchange that has ended (a module may keep one): nothing of
// an ended exchange may act on its result or on the exchange under way.
func (r *run) ensureLive() {
	if r.ended {
		panic(r.vm.NewGoError(errExchangeEnded))
	}
}

const errExchangeEnded = textError("this object belongs to an exchange that has ended")

// pool keeps one engine's idle workers. The last one returned is the first
// taken, so that a quiet handler keeps serving from the same warm runtime.
type pool struct {
	mu     sync.Mutex
	idle   []*worker
	max    int
	closed bool
}

// defaultIdleWorkers is how many idle runtimes an engine keeps: enough for
// every core to run one exchange while another waits on I/O. More
// exchanges at once build more runtimes, which are dropped when the pool is
// full.
func defaultIdleWorkers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

func (p *pool) get() *worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return w
	}
	return nil
}

// put keeps w for a later exchange, unless the pool is full or closed.
func (p *pool) put(w *worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed && len(p.idle) < p.max {
		p.idle = append(p.idle, w)
	}
}

// close drops every idle worker and keeps any returned later.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	clear(p.idle)
	p.idle = nil
}

// size reports the idle workers (for tests).
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
