package caddyhook

import (
	"context"
	"time"

	"github.com/dop251/goja"
)

// loop is a minimal Node-style event loop for one run: timers and immediates
// whose callbacks run on the goroutine that owns the runtime. Promise jobs need
// no help: goja runs them whenever a call from Go returns.
type loop struct {
	vm        *goja.Runtime
	wake      chan func() error // timer callbacks, sent by time.AfterFunc goroutines
	immediate []immediateJob
	timers    map[int64]*time.Timer
	handles   map[*goja.Object]int64
	next      int64
	inflight  int // async operations (storage) not yet called back
	closed    chan struct{}
}

// maxTimerMillis is Node's largest timer delay (2^31-1 ms); larger ones
// become 1 ms, as in Node.
const maxTimerMillis = 1<<31 - 1

type immediateJob struct {
	handle *goja.Object
	run    func() error
}

func newLoop(vm *goja.Runtime) *loop {
	l := &loop{
		vm:      vm,
		wake:    make(chan func() error),
		timers:  map[int64]*time.Timer{},
		handles: map[*goja.Object]int64{},
		closed:  make(chan struct{}),
	}
	_ = vm.Set("setTimeout", func(c goja.FunctionCall) goja.Value { return l.schedule(c, false) })
	_ = vm.Set("setInterval", func(c goja.FunctionCall) goja.Value { return l.schedule(c, true) })
	_ = vm.Set("clearTimeout", l.clear)
	_ = vm.Set("clearInterval", l.clear)
	_ = vm.Set("setImmediate", l.setImmediate)
	_ = vm.Set("clearImmediate", l.clearImmediate)
	_ = vm.Set("queueMicrotask", func(fn goja.Callable) {
		// Run as a promise job, which is what a microtask is.
		p, resolve, _ := vm.NewPromise()
		_ = resolve(nil)
		then, _ := goja.AssertFunction(vm.ToValue(p).ToObject(vm).Get("then"))
		_, _ = then(vm.ToValue(p), vm.ToValue(func() { _, _ = fn(goja.Undefined()) }))
	})
	return l
}

func (l *loop) callback(c goja.FunctionCall) (goja.Callable, []goja.Value) {
	fn, ok := goja.AssertFunction(c.Argument(0))
	if !ok {
		panic(l.vm.NewTypeError("the callback argument must be a function"))
	}
	var args []goja.Value
	if len(c.Arguments) > 2 {
		args = append(args, c.Arguments[2:]...)
	}
	return fn, args
}

func (l *loop) schedule(c goja.FunctionCall, repeat bool) goja.Value {
	fn, args := l.callback(c)
	ms := c.Argument(1).ToFloat()
	if !(ms >= 1) || ms > maxTimerMillis { // also catches NaN, as Node does
		ms = 1 // Node's rule: below 1 ms, or out of range, is 1 ms
	}
	delay := time.Duration(ms * float64(time.Millisecond))
	l.next++
	id := l.next
	handle := l.vm.NewObject()
	self := func() goja.Value { return handle }
	_ = handle.Set("ref", self)
	_ = handle.Set("unref", self)
	_ = handle.Set("hasRef", func() bool { return true })
	_ = handle.Set("refresh", self)
	l.handles[handle] = id

	var job func() error
	job = func() error {
		if _, live := l.timers[id]; !live {
			return nil // cleared after it fired but before it ran
		}
		if repeat {
			l.arm(id, delay, job)
		} else {
			l.drop(id)
		}
		_, err := fn(goja.Undefined(), args...)
		return err
	}
	l.arm(id, delay, job)
	return handle
}

func (l *loop) arm(id int64, d time.Duration, job func() error) {
	l.timers[id] = time.AfterFunc(d, func() {
		select {
		case l.wake <- job:
		case <-l.closed:
		}
	})
}

func (l *loop) drop(id int64) {
	if t, ok := l.timers[id]; ok {
		t.Stop()
		delete(l.timers, id)
	}
}

func (l *loop) clear(v goja.Value) {
	if obj, ok := v.(*goja.Object); ok {
		if id, ok := l.handles[obj]; ok {
			l.drop(id)
		}
	}
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

func (l *loop) clearImmediate(v goja.Value) {
	for i, job := range l.immediate {
		if job.handle == v {
			l.immediate = append(l.immediate[:i:i], l.immediate[i+1:]...)
			return
		}
	}
}

// async runs work on its own goroutine and then the callback it returns on
// the loop, so slow I/O never blocks the runtime and never runs JavaScript
// off the loop's goroutine.
func (l *loop) async(work func() func() error) {
	l.inflight++
	go func() {
		job := work()
		select {
		case l.wake <- func() error { l.inflight--; return job() }:
		case <-l.closed:
		}
	}()
}

// pending reports whether anything is still scheduled.
func (l *loop) pending() bool { return len(l.timers) > 0 || len(l.immediate) > 0 || l.inflight > 0 }

// run runs callbacks until done reports true, a callback throws, or ctx ends.
func (l *loop) run(ctx context.Context, done func() bool) error {
	for !done() {
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

// close stops every timer, so nothing of this run outlives it.
func (l *loop) close() {
	close(l.closed)
	for id := range l.timers {
		l.drop(id)
	}
}
