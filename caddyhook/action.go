package caddyhook

import (
	"fmt"
	"slices"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"github.com/dop251/goja"
	"go.uber.org/zap"
)

// runAction runs an Auth0 Action (exports.onExecuteCredentialsExchange) and
// waits for what it returns as await would. api.access.deny fails the
// exchange and stops later actions; a throw or a rejection is a server
// error.
func (r *run) runAction(s *Script) error {
	log, fn, err := r.start(s)
	if err != nil {
		return err
	}
	if r.actionGrant == nil {
		r.actionGrant = r.grant()
	}
	event, eerr := r.event(s, log)
	if eerr != nil {
		return eerr
	}
	a := &actionAPI{r: r, log: log}
	defer func() { a.returned = true }()
	ret, err := fn(goja.Undefined(), event, a.object())
	if a.denied != nil {
		return a.denied
	}
	if err != nil {
		return r.errorFromThrow(err, actionFailed)
	}
	if r.fault != nil {
		return r.fault
	}
	if _, isObj := ret.(*goja.Object); !isObj {
		return nil // a primitive: await gives it back at once
	}
	// A promise, or any thenable, is awaited: a thenable's then may deny or
	// reject, as it would under Node.
	p, err := r.await(ret)
	if a.denied != nil {
		return a.denied
	}
	if err != nil {
		return r.errorFromThrow(err, actionFailed)
	}
	werr := r.wait(func() bool { return a.denied != nil || p.State() != goja.PromiseStatePending })
	if a.denied != nil {
		return a.denied
	}
	if werr != nil {
		return werr
	}
	if p.State() == goja.PromiseStateRejected {
		return r.rejected(p.Result(), actionFailed)
	}
	return nil
}

// errActionReturned is thrown by the api of an action whose run is over.
const errActionReturned = textError("this api belongs to an action that has returned; await what it starts")

// checkActionSecrets refuses secrets for a script that is not one of the
// actions: they would never be seen, which is a configuration mistake.
func checkActionSecrets(cfg Config) error {
	for s := range cfg.ActionSecrets {
		if !slices.Contains(cfg.Actions, s) {
			name := "a nil script"
			if s != nil {
				name = s.Name
			}
			return fmt.Errorf("secrets are given for %s, which is not one of the actions", name)
		}
	}
	return nil
}

// event builds the credentials-exchange event in Auth0's shape, reflecting
// what the hook and earlier actions did to the token. As hookArgs does, it
// is built member by member, in the order toJS would sort them: it runs for
// every action of every exchange.
func (r *run) event(s *Script, log *scriptLog) (goja.Value, *Error) {
	in, vm := r.in, r.vm
	str := func(s string) goja.Value { return vm.ToValue(validUTF8(s)) }
	body, secrets, err := r.bodyAndSecrets(log, s)
	if err != nil {
		return nil, err
	}
	// Each of these is a fresh object or array: a script changing one
	// (target_scopes, say) does not change another.
	inputs := make([]goja.Value, 6)
	for i, v := range []any{
		orEmpty(in.Client.Metadata), orEmpty(in.Request.GeoIP), r.claims,
		r.scope, in.RequestedScopes, r.scope, // nil is [], as toJS gives it
	} {
		if inputs[i], err = r.input(v); err != nil {
			return nil, err
		}
	}
	metadata, geoip, claims, scope, requested, target := inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5]
	var members [14]any
	pairs := append(members[:0], "body", body, "geoip", geoip, "hostname", str(in.Request.Hostname), "ip", str(in.Request.IP))
	if in.Request.Language != "" { // optional on Auth0, absent when not known
		pairs = append(pairs, "language", str(in.Request.Language))
	}
	pairs = append(pairs, "method", str(in.Request.Method), "user_agent", str(in.Request.UserAgent))
	request := r.record(pairs...)
	return r.record(
		"accessToken", r.record("customClaims", claims, "scope", scope),
		"client", r.record("client_id", str(in.Client.ID), "metadata", metadata, "name", str(in.Client.Name)),
		"request", request,
		"resource_server", r.record("identifier", str(in.Audience)),
		"secrets", secrets,
		"tenant", r.record("id", str(in.Client.Tenant)),
		"transaction", r.record("requested_scopes", requested, "target_scopes", target),
	), nil
}

// grant is the set of scopes the actions' target scopes may end with: the
// client's grant (Input.GrantScopes, else the scopes the upstream issued)
// and, when a hook ran, the scope it returned. Auth0 filters Actions'
// target scopes by the client grant ("Unauthorized additions are silently
// dropped"), but a Hook's scope result replaced the token's scope
// unfiltered (its starter code pushes arbitrary scopes), so a scope the
// hook set is not taken away merely because an action ran after it.
func (r *run) grant() map[string]bool {
	granted := r.in.GrantScopes
	if granted == nil {
		granted = r.in.Scope
	}
	set := make(map[string]bool, len(granted)+len(r.scope))
	for _, s := range granted {
		set[s] = true
	}
	if r.eng.cfg.Hook != nil {
		for _, s := range r.scope {
			set[s] = true
		}
	}
	return set
}

// grantedScope is the run's final scope: the target scopes cut to the
// grant, once every action has run, as Auth0 evaluates them "after all
// Actions finish". Without actions it is the hook's scope as it stands.
func (r *run) grantedScope() []string {
	if r.actionGrant == nil {
		return r.scope
	}
	out := r.scope[:0:0]
	for _, s := range r.scope {
		if r.actionGrant[s] {
			out = append(out, s)
		}
	}
	return out
}

// actionAPI is the api object of one action's run, and what it was told.
type actionAPI struct {
	r   *run
	log *scriptLog
	obj *goja.Object // api, which its methods return
	// denied receives the first api.access.deny.
	denied *Error
	// returned is set when this action's run is over; its api may still be
	// called later in the exchange (from a timer), and must not act then.
	returned bool
}

// object builds api: its objects are the engine's plain objects (newPlain),
// its methods native functions of this run.
func (a *actionAPI) object() *goja.Object {
	r := a.r
	w, vm := r.w, r.vm
	a.obj = w.newPlain()
	accessToken := w.newPlain()
	_ = accessToken.Set("setCustomClaim", vm.ToValue(a.setCustomClaim))
	_ = a.obj.Set("accessToken", w.donePlain(accessToken))
	access := w.newPlain()
	_ = access.Set("deny", vm.ToValue(a.deny))
	_ = a.obj.Set("access", w.donePlain(access))
	transaction := w.newPlain()
	_ = transaction.Set("addTargetScope", vm.ToValue(a.addTargetScope))
	_ = transaction.Set("removeTargetScope", vm.ToValue(a.removeTargetScope))
	_ = transaction.Set("setTargetScopes", vm.ToValue(a.setTargetScopes))
	_ = transaction.Set("clearTargetScopes", vm.ToValue(a.clearTargetScopes))
	_ = a.obj.Set("transaction", w.donePlain(transaction))
	_ = a.obj.Set("cache", r.cacheObject())
	return w.donePlain(a.obj)
}

func (a *actionAPI) str(v goja.Value, what string) string {
	if s, ok := scriptString(v); ok {
		return s
	}
	throwTypeError(a.r.vm, what+" must be a string")
	return ""
}

// overLimit fails the exchange, whatever the script does with the
// exception it also gets.
func (a *actionAPI) overLimit(err error) {
	a.r.fail(errorFor(CodeServerError, err.Error()))
	panic(a.r.vm.NewGoError(err))
}

// live refuses a call from a script that kept this api: after the
// exchange, or after this action's run, whose result is already taken.
func (a *actionAPI) live() {
	a.r.ensureLive()
	if a.returned {
		panic(a.r.vm.NewGoError(errActionReturned))
	}
}

func (a *actionAPI) setCustomClaim(call goja.FunctionCall) goja.Value {
	r := a.r
	a.live()
	name := a.str(call.Argument(0), "the claim name")
	raw, ok, err := r.toJSON(call.Argument(1), maxClaimsSize)
	switch {
	case err != nil:
		if _, tooLarge := err.(errJSONTooLarge); tooLarge {
			a.overLimit(fmt.Errorf("custom claim %q is more than the %d bytes all custom claims may have", textcap.Cap(name, 64), maxClaimsSize))
		}
		rethrow(r.vm, err)
	case !ok:
		delete(r.claims, name) // setting undefined removes the claim
	default:
		r.setClaim(a.log, name, raw)
	}
	return a.obj
}

func (a *actionAPI) deny(call goja.FunctionCall) goja.Value {
	r := a.r
	r.ensureLive()
	if a.returned {
		// After the action's run: nothing reads denied any more, but a
		// denial must never be lost, so it fails the exchange.
		defer func() { r.fail(a.denied) }()
	}
	if a.denied != nil {
		return a.obj
	}
	// Denied first: however the arguments behave while they are read
	// below, a call to deny denies.
	a.denied = errorFor(CodeServerError, actionDenied)
	// A code that is not a string, or not one of ours, is a server error
	// (errorFor's rule).
	code, _ := scriptString(call.Argument(0))
	reason := actionDenied
	if v := call.Argument(1); !goja.IsUndefined(v) {
		if text := r.denyReason(v); text != "" {
			reason = text
		}
	}
	a.denied = errorFor(code, reason)
	a.log.Info("action denied the exchange", zap.String("error", a.denied.Code))
	return a.obj
}

func (a *actionAPI) addTargetScope(call goja.FunctionCall) goja.Value {
	r := a.r
	a.live()
	s := a.str(call.Argument(0), "the scope")
	if !validScope(s) {
		throwTypeError(r.vm, fmt.Sprintf("%q is not a valid scope", textcap.Cap(s, 64)))
	}
	if !slices.Contains(r.scope, s) {
		next := append(slices.Clip(r.scope), s)
		if err := checkScopeLimits(next); err != nil {
			a.overLimit(err)
		}
		r.scope = next
	}
	return a.obj
}

func (a *actionAPI) removeTargetScope(call goja.FunctionCall) goja.Value {
	r := a.r
	a.live()
	s := a.str(call.Argument(0), "the scope")
	out := r.scope[:0:0]
	for _, v := range r.scope {
		if v != s {
			out = append(out, v)
		}
	}
	r.scope = out
	return a.obj
}

func (a *actionAPI) setTargetScopes(call goja.FunctionCall) goja.Value {
	r := a.r
	a.live()
	raw, _, err := r.toJSON(call.Argument(0), maxResultJSON)
	if _, tooLarge := err.(errJSONTooLarge); tooLarge {
		a.overLimit(scopeLimitError(fmt.Sprintf("the scopes given to setTargetScopes are more than %d bytes", maxResultJSON)))
	}
	if err != nil {
		rethrow(r.vm, err)
	}
	scope, perr := parseScope(raw)
	if _, tooMany := perr.(scopeLimitError); tooMany {
		a.overLimit(perr)
	}
	if perr != nil {
		throwTypeError(r.vm, "setTargetScopes: "+perr.Error())
	}
	r.scope = scope
	return a.obj
}

func (a *actionAPI) clearTargetScopes(goja.FunctionCall) goja.Value {
	a.live()
	a.r.scope = []string{}
	return a.obj
}

// denyReason reads the reason given to api.access.deny: a primitive as
// text, an object through its toString, guarded; "" when it cannot be read.
func (r *run) denyReason(v goja.Value) string {
	if obj, isObj := v.(*goja.Object); isObj {
		var text string
		if r.alive() {
			guard(r.vm, func() { text = primitiveText(obj.ToString(), maxDescription) })
		}
		return cleanDescription(text)
	}
	return cleanDescription(primitiveText(v, maxDescription))
}
