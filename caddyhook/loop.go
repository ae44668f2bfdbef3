package caddyhook

import (
	"context"
	"time"

	"github.com/dop251/goja"
)

// loop is a minimal Node-style event loop for one runtime: timers and
// immediates whose callbacks run on the goroutine that runs the runtime.
// Promise jobs need no help: goja runs them whenever a call from Go returns.
//
// A warm runtime serves many exchanges, one at a time; each is a generation
// of the loop (begin, end). Whatever an exchange leaves scheduled is
// dropped when it ends: nothing of one exchange's loop runs in the next.
type loop struct {
	vm        *goja.Runtime
	wake      chan func() error // timer and async callbacks, sent from other goroutines
	immediate []immediateJob
	timers    map[int64]*timer
	handles   map[*goja.Object]int64
	next      int64
	inflight  int // async operations (storage, fetch) not yet called back
	// gen is the exchange being served; callbacks scheduled under another
	// one are dropped. It is made when the exchange first schedules a timer
	// or async work (generation): most schedule none.
	gen *generation
	// uncaught receives an exception thrown by a queueMicrotask callback,
	// which nothing else can catch; the run fails with it, as Node would.
	uncaught func(error)
	// then is the intrinsic Promise.prototype.then, captured before any
	// script runs.
	then goja.Callable
}

// generation is one exchange's use of the loop; done is closed when it
// ends, releasing every goroutine still waiting to hand it a callback.
type generation struct{ done chan struct{} }

type timer struct {
	t      *time.Timer
	handle *goja.Object
	// unref is Node's timer.unref(): a timer the script says the program
	// need not wait for (AbortSignal.timeout's are). Dropping it when the
	// exchange ends leaves nothing half-done.
	unref bool
}

// maxTimerMillis is Node's largest timer delay (2^31-1 ms); larger ones
// become 1 ms, as in Node.
const maxTimerMillis = 1<<31 - 1

// maxPending bounds the timers and immediates one run may have scheduled at
// once: each armed timer that fires holds a goroutine until the loop takes
// its callback.
const maxPending = 10000

type immediateJob struct {
	handle *goja.Object
	run    func() error
}

func newLoop(vm *goja.Runtime) *loop {
	l := &loop{
		vm:       vm,
		wake:     make(chan func() error),
		timers:   map[int64]*timer{},
		handles:  map[*goja.Object]int64{},
		uncaught: func(error) {},
	}
	proto := vm.Get("Promise").ToObject(vm).Get("prototype").ToObject(vm)
	l.then, _ = goja.AssertFunction(proto.Get("then"))
	_ = vm.Set("setTimeout", func(c goja.FunctionCall) goja.Value { return l.schedule(c, false) })
	_ = vm.Set("setInterval", func(c goja.FunctionCall) goja.Value { return l.schedule(c, true) })
	_ = vm.Set("clearTimeout", l.clear)
	_ = vm.Set("clearInterval", l.clear)
	_ = vm.Set("setImmediate", l.setImmediate)
	_ = vm.Set("clearImmediate", l.clearImmediate)
	_ = vm.Set("queueMicrotask", l.queueMicrotask)
	return l
}

// queueMicrotask runs fn as a promise job, which is what a microtask is,
// through the intrinsic then; an exception it throws fails the run.
func (l *loop) queueMicrotask(c goja.FunctionCall) goja.Value {
	fn, ok := goja.AssertFunction(c.Argument(0))
	if !ok {
		throwTypeError(l.vm, `The "callback" argument must be of type function`)
	}
	p, resolve, _ := l.vm.NewPromise()
	_ = resolve(nil)
	job := l.vm.ToValue(func(goja.FunctionCall) goja.Value {
		if _, err := fn(goja.Undefined()); err != nil {
			if isUncatchable(err) {
				panic(err) // a time-out goes on ending the run
			}
			l.uncaught(err)
		}
		return goja.Undefined()
	})
	if _, err := l.then(l.vm.ToValue(p), job); err != nil {
		rethrow(l.vm, err)
	}
	return goja.Undefined()
}

func (l *loop) callback(c goja.FunctionCall) (goja.Callable, []goja.Value) {
	fn, ok := goja.AssertFunction(c.Argument(0))
	if !ok {
		throwTypeError(l.vm, "the callback argument must be a function")
	}
	if l.count() >= maxPending {
		panic(l.vm.NewGoError(errTooManyTimers))
	}
	var args []goja.Value
	if len(c.Arguments) > 2 {
		args = append(args, c.Arguments[2:]...)
	}
	return fn, args
}

const errTooManyTimers = textError("too many timers and immediates scheduled at once")

func (l *loop) count() int { return len(l.timers) + len(l.immediate) }

func (l *loop) schedule(c goja.FunctionCall, repeat bool) goja.Value {
	fn, args := l.callback(c)
	// ToFloat runs valueOf for an object, or throws a TypeError for a
	// Symbol: both reach the script as exceptions, as in Node.
	ms := c.Argument(1).ToFloat()
	if !(ms >= 1) || ms > maxTimerMillis { // also catches NaN, as Node does
		ms = 1 // Node's rule: below 1 ms, or out of range, is 1 ms
	}
	delay := time.Duration(ms * float64(time.Millisecond))
	l.next++
	id := l.next
	handle := l.vm.NewObject()
	self := func(goja.FunctionCall) goja.Value { return handle }
	setRef := func(ref bool) func(goja.FunctionCall) goja.Value {
		return func(goja.FunctionCall) goja.Value {
			if t, ok := l.timers[id]; ok {
				t.unref = !ref
			}
			return handle
		}
	}
	define(l.vm, handle, "ref", setRef(true))
	define(l.vm, handle, "unref", setRef(false))
	define(l.vm, handle, "hasRef", func(goja.FunctionCall) goja.Value {
		t, ok := l.timers[id]
		return l.vm.ToValue(ok && !t.unref)
	})
	define(l.vm, handle, "refresh", self)
	l.handles[handle] = id

	var job func() error
	job = func() error {
		if _, live := l.timers[id]; !live {
			return nil // cleared after it fired but before it ran
		}
		if repeat {
			l.arm(id, handle, delay, job)
		} else {
			l.drop(id)
		}
		_, err := fn(goja.Undefined(), args...)
		return err
	}
	l.arm(id, handle, delay, job)
	return handle
}

func (l *loop) arm(id int64, handle *goja.Object, d time.Duration, job func() error) {
	g := l.generation()
	unref := false
	if t, ok := l.timers[id]; ok { // an interval re-armed keeps its state
		unref = t.unref
	}
	l.timers[id] = &timer{handle: handle, unref: unref, t: time.AfterFunc(d, func() {
		select {
		case l.wake <- l.within(g, job):
		case <-g.done:
		}
	})}
}

// within wraps a callback scheduled under generation g: it runs only while
// g is still the loop's exchange.
func (l *loop) within(g *generation, job func() error) func() error {
	return func() error {
		if l.gen != g {
			return nil
		}
		return job()
	}
}

func (l *loop) drop(id int64) {
	if t, ok := l.timers[id]; ok {
		t.t.Stop()
		delete(l.timers, id)
		delete(l.handles, t.handle)
	}
}

func (l *loop) clear(c goja.FunctionCall) goja.Value {
	if obj, ok := c.Argument(0).(*goja.Object); ok {
		if id, ok := l.handles[obj]; ok {
			l.drop(id)
		}
	}
	return goja.Undefined()
}

func (l *loop) setImmediate(c goja.FunctionCall) goja.Value {
	fn, args := l.callback(c)
	handle := l.vm.NewObject()
	l.immediate = append(l.immediate, immediateJob{handle: handle, run: func() error {
		_, err := fn(goja.Undefined(), args...)
		return err
	}})
	return handle
}

func (l *loop) clearImmediate(c goja.FunctionCall) goja.Value {
	v, ok := c.Argument(0).(*goja.Object)
	if !ok {
		return goja.Undefined()
	}
	for i, job := range l.immediate {
		if job.handle == v {
			l.immediate = append(l.immediate[:i:i], l.immediate[i+1:]...)
			break
		}
	}
	return goja.Undefined()
}

// async runs work on its own goroutine and then the callback it returns on
// the loop, so slow I/O never blocks the runtime and never runs JavaScript
// off the loop's goroutine. A panic in work (a storage module's bug) fails
// the run instead of the process.
func (l *loop) async(work func() func() error) {
	g := l.generation()
	l.inflight++
	go func() {
		var job func() error
		func() {
			defer func() {
				if recover() != nil {
					job = func() error { return errorFor(CodeServerError, "a background operation failed") }
				}
			}()
			job = work()
		}()
		select {
		case l.wake <- l.within(g, func() error { l.inflight--; return job() }):
		case <-g.done:
		}
	}()
}

// pending reports whether anything is still scheduled.
func (l *loop) pending() bool { return len(l.timers) > 0 || len(l.immediate) > 0 || l.inflight > 0 }

// pendingRef reports whether anything the program waits for is still
// scheduled, as Node's event loop counts it: every timer but the unref'd
// ones, immediates, and async work under way.
func (l *loop) pendingRef() bool {
	if len(l.immediate) > 0 || l.inflight > 0 {
		return true
	}
	for _, t := range l.timers {
		if !t.unref {
			return true
		}
	}
	return false
}

// run runs callbacks until done reports true, a callback throws, or ctx ends.
// No callback starts once ctx has ended.
func (l *loop) run(ctx context.Context, done func() bool) error {
	for !done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(l.immediate) > 0 {
			job := l.immediate[0]
			l.immediate = l.immediate[1:]
			if err := job.run(); err != nil {
				return err
			}
			continue
		}
		select {
		case job := <-l.wake:
			if err := job(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// begin starts an exchange's generation; JavaScript runs in the runtime
// only between begin and end.
func (l *loop) begin() {
	l.gen = nil
}

// generation returns the exchange's generation, making it on first use.
func (l *loop) generation() *generation {
	if l.gen == nil {
		l.gen = &generation{done: make(chan struct{})}
	}
	return l.gen
}

// end ends the exchange's generation: its timers are stopped, its
// immediates dropped, and the callbacks of its async work still under way
// will never run.
func (l *loop) end() {
	if l.gen != nil {
		close(l.gen.done)
		l.gen = nil
	}
	for id := range l.timers {
		l.drop(id)
	}
	l.immediate = nil
	l.inflight = 0
}
