package caddyhook

// Running an Auth0 Hook: its arguments (client, scope, audience, context),
// its cb, and waiting for one or the other to end the run. What its result
// does to the token is claims.go's.

import (
	"encoding/json"

	"github.com/dop251/goja"
)

// hookArgs builds the hook's client, scope, audience and context.
func (r *run) hookArgs(log *scriptLog) ([]goja.Value, *Error) {
	in, vm := r.in, r.vm
	metadata, err := r.input(orEmpty(in.Client.Metadata))
	if err != nil {
		return nil, err
	}
	// Built member by member, in the order toJS would sort them: this runs
	// on every exchange, and going through Go maps cost a fifth of a warm
	// run.
	client := r.record(
		"id", vm.ToValue(validUTF8(in.Client.ID)), "metadata", metadata,
		"name", vm.ToValue(validUTF8(in.Client.Name)), "tenant", vm.ToValue(validUTF8(in.Client.Tenant)))
	scope := goja.Undefined()
	if in.Scope != nil {
		if scope, err = r.input(in.Scope); err != nil {
			return nil, err
		}
	}
	body, secrets, err := r.bodyAndSecrets(log, r.script)
	if err != nil {
		return nil, err
	}
	webtask := r.record("secrets", secrets)
	// storage is built when a hook first reads it (storage.go).
	get, set := r.w.storageAccessors()
	_ = webtask.DefineAccessorProperty("storage", get, set, goja.FLAG_TRUE, goja.FLAG_TRUE)
	r.webtask = webtask
	hookCtx := r.record(
		"body", body, "hostname", vm.ToValue(validUTF8(in.Request.Hostname)), "ip", vm.ToValue(validUTF8(in.Request.IP)),
		"userAgent", vm.ToValue(validUTF8(in.Request.UserAgent)), "webtask", webtask)
	args := make([]goja.Value, 4, 5) // and cb
	args[0], args[1], args[2], args[3] = client, scope, vm.ToValue(validUTF8(in.Audience)), hookCtx
	return args, nil
}

// record builds a plain object from name, value pairs (goja values), as
// toJS does.
func (r *run) record(pairs ...any) *goja.Object {
	obj := r.w.newPlain()
	for i := 0; i+1 < len(pairs); i += 2 {
		_ = obj.Set(pairs[i].(string), pairs[i+1])
	}
	return r.w.donePlain(obj)
}

// runHook runs an Auth0 Hook and waits for its cb, or for the rejection of
// what it returned.
func (r *run) runHook(s *Script) error {
	log, fn, err := r.start(s)
	if err != nil {
		return err
	}
	args, herr := r.hookArgs(log)
	if herr != nil {
		return herr
	}

	c := &hookCB{r: r, log: log}
	args = append(args, r.vm.ToValue(c.call))

	ret, err := fn(goja.Undefined(), args...)
	if err != nil {
		if f := c.failed(); f != nil {
			return f
		}
		return r.errorFromThrow(err, hookFailed)
	}
	// An async hook's promise, or any thenable, is awaited as await would:
	// its rejection fails the exchange unless cb was called first.
	var p *goja.Promise
	if _, isObj := ret.(*goja.Object); isObj && !c.finished && r.fault == nil {
		if p, err = r.await(ret); err != nil && !c.finished {
			c.finished = true
			c.failure = r.errorFromThrow(err, hookFailed)
		}
	}
	rejected := func() bool { return p != nil && p.State() == goja.PromiseStateRejected }
	if !c.finished {
		if !rejected() && r.fault == nil && !r.loop.pending() {
			// Nothing can call cb any more; say so now rather than leave
			// the operator with a bare time-out.
			log.Warn("hook returned without calling cb and has nothing scheduled; the exchange will time out")
		}
		if err := r.wait(func() bool { return c.finished || rejected() }); err != nil {
			return err
		}
		if !c.finished && rejected() {
			return r.rejected(p.Result(), hookFailed)
		}
	} else if r.fault != nil {
		return r.fault // what wait would have returned
	}
	if f := c.failed(); f != nil {
		return f
	}
	return r.applyHookResult(log, c.result)
}

// hookCB is the cb a hook run gets, and what it was called with.
type hookCB struct {
	r        *run
	log      *scriptLog
	finished bool
	warned   bool
	// serialising is set while the result is read: if that never returns,
	// failed reports "hook result cannot be serialised".
	serialising bool
	failure     *Error
	result      json.RawMessage
}

// failed is the hook's failure, if any.
func (c *hookCB) failed() *Error {
	if c.serialising && c.failure == nil {
		return errorFor(CodeServerError, "hook result cannot be serialised")
	}
	return c.failure
}

func (c *hookCB) call(call goja.FunctionCall) goja.Value {
	r, log := c.r, c.log
	r.ensureLive() // a module may keep the cb of an exchange that ended
	if c.finished {
		if !c.warned {
			c.warned = true
			log.Warn("hook called cb more than once; only the first call counts")
		}
		return goja.Undefined()
	}
	c.finished = true
	// ToBoolean never runs script code, whatever the value.
	if e := call.Argument(0); e.ToBoolean() {
		// Failed first: nothing the error value does while it is read
		// below can turn this into a success.
		c.failure = errorFor(CodeServerError, hookFailed)
		c.failure = r.errorFromValue(e)
		return goja.Undefined()
	}
	c.serialising = true // failed, until toJSON returns
	raw, ok, err := r.toJSON(call.Argument(1), maxResultJSON)
	c.serialising = false
	switch {
	case err != nil:
		c.failure = r.errorFromThrow(err, "it threw a value that is not an error")
		if r.alive() && !isUncatchable(gojaCause(err)) {
			c.failure = errorFor(CodeServerError, "hook result cannot be serialised: "+c.failure.Description)
		}
	case !ok:
		log.Warn("hook called cb without a result object; treating it as {} (the token gets no scope)")
	default:
		c.result = raw
	}
	return goja.Undefined()
}

// errorFromValue is errorFromValue for this run.
func (r *run) errorFromValue(v goja.Value) *Error {
	if !r.alive() {
		return errorFor(CodeServerError, hookFailed)
	}
	return errorFromValue(r.vm, v, hookFailed)
}
