package caddyhook

import (
	"fmt"
	"slices"
	"time"

	"github.com/dop251/goja"
	"go.uber.org/zap"
)

// runAction runs an Auth0 Action (exports.onExecuteCredentialsExchange) and
// waits until its promise settles. api.access.deny fails the exchange and
// stops later actions; a throw or a rejection is a server error.
func (r *run) runAction(s *Script) error {
	log, fn, err := r.start(s)
	if err != nil {
		return err
	}
	var denied *Error
	ret, err := fn(goja.Undefined(), r.event(), r.api(log, &denied))
	if denied != nil {
		return denied
	}
	if err != nil {
		return errorFromThrow(r.vm, err)
	}
	p, isPromise := ret.Export().(*goja.Promise)
	if !isPromise {
		return nil
	}
	if err := r.wait(func() bool { return p.State() != goja.PromiseStatePending }); err != nil {
		return err
	}
	if denied != nil {
		return denied
	}
	if p.State() == goja.PromiseStateRejected {
		return errorFor(CodeServerError, messageOf(r.vm, p.Result()))
	}
	return nil
}

// event builds the credentials-exchange event in Auth0's shape, reflecting
// what the hook and earlier actions did to the token.
func (r *run) event() goja.Value {
	in := r.in
	scope := r.scope
	if scope == nil {
		scope = []string{}
	}
	requested := in.RequestedScopes
	if requested == nil {
		requested = []string{}
	}
	event := r.fromJSON(map[string]any{
		"client": map[string]any{
			"client_id": in.Client.ID, "name": in.Client.Name, "metadata": orEmpty(in.Client.Metadata),
		},
		"tenant":          map[string]any{"id": in.Client.Tenant},
		"resource_server": map[string]any{"identifier": in.Audience},
		"accessToken":     map[string]any{"scope": scope, "customClaims": r.claims},
		"transaction":     map[string]any{"requested_scopes": requested},
		"request": map[string]any{
			"ip": in.Request.IP, "method": in.Request.Method, "hostname": in.Request.Hostname,
			"user_agent": in.Request.UserAgent, "body": orEmpty(in.Request.Body), "geoip": map[string]any{},
		},
	}).ToObject(r.vm)
	_ = event.Set("secrets", r.secrets())
	return event
}

// api builds the api object of one action. *denied receives the first
// api.access.deny.
func (r *run) api(log *zap.Logger, denied **Error) *goja.Object {
	vm := r.vm
	api := vm.NewObject()
	str := func(v goja.Value, what string) string {
		if s, ok := v.Export().(string); ok {
			return s
		}
		panic(vm.NewTypeError(what + " must be a string"))
	}

	accessToken := vm.NewObject()
	_ = accessToken.Set("setCustomClaim", func(call goja.FunctionCall) goja.Value {
		name := str(call.Argument(0), "the claim name")
		raw, ok, err := r.toJSON(call.Argument(1))
		switch {
		case err != nil:
			panic(err)
		case !ok:
			delete(r.claims, name) // setting undefined removes the claim
		default:
			r.setClaim(log, name, raw)
		}
		return api
	})
	_ = api.Set("accessToken", accessToken)

	access := vm.NewObject()
	_ = access.Set("deny", func(call goja.FunctionCall) goja.Value {
		if *denied == nil {
			code := call.Argument(0).String()
			reason := ""
			if v := call.Argument(1); !goja.IsUndefined(v) {
				reason = v.String()
			}
			*denied = errorFor(code, reason)
			log.Info("action denied the exchange", zap.String("error", (*denied).Code))
		}
		return api
	})
	_ = api.Set("access", access)

	transaction := vm.NewObject()
	_ = transaction.Set("addTargetScope", func(call goja.FunctionCall) goja.Value {
		s := str(call.Argument(0), "the scope")
		if !validScope(s) {
			panic(r.vm.NewTypeError(fmt.Sprintf("%q is not a valid scope", s)))
		}
		if !slices.Contains(r.scope, s) {
			r.scope = append(r.scope, s)
		}
		return api
	})
	_ = transaction.Set("removeTargetScope", func(call goja.FunctionCall) goja.Value {
		s := str(call.Argument(0), "the scope")
		out := r.scope[:0:0]
		for _, v := range r.scope {
			if v != s {
				out = append(out, v)
			}
		}
		r.scope = out
		return api
	})
	_ = transaction.Set("setTargetScopes", func(call goja.FunctionCall) goja.Value {
		raw, _, err := r.toJSON(call.Argument(0))
		if err != nil {
			panic(err)
		}
		scope, perr := parseScope(raw)
		if perr != nil {
			panic(vm.NewTypeError("setTargetScopes: " + perr.Error()))
		}
		r.scope = scope
		return api
	})
	_ = transaction.Set("clearTargetScopes", func() goja.Value {
		r.scope = []string{}
		return api
	})
	_ = api.Set("transaction", transaction)
	_ = api.Set("cache", r.cacheObject())
	return api
}

// cacheObject binds api.cache to the engine's cache.
func (r *run) cacheObject() *goja.Object {
	vm := r.vm
	c := r.eng.cache
	record := func(e cacheEntry) *goja.Object {
		o := vm.NewObject()
		_ = o.Set("value", e.value)
		_ = o.Set("expires_at", e.expiresAt.UnixMilli())
		return o
	}
	result := func(e *cacheEntry, code string) *goja.Object {
		o := vm.NewObject()
		if code != "" {
			_ = o.Set("type", "error")
			_ = o.Set("code", code)
			return o
		}
		_ = o.Set("type", "success")
		if e != nil {
			_ = o.Set("record", record(*e))
		}
		return o
	}
	obj := vm.NewObject()
	_ = obj.Set("get", func(key goja.Value) goja.Value {
		k, ok := key.Export().(string)
		if !ok {
			return goja.Undefined()
		}
		if e, found := c.get(k); found {
			return record(e)
		}
		return goja.Undefined()
	})
	_ = obj.Set("set", func(key, value, options goja.Value) *goja.Object {
		k, ok := key.Export().(string)
		if !ok {
			return result(nil, CacheInvalidKey)
		}
		v, ok := value.Export().(string)
		if !ok {
			return result(nil, CacheInvalidValue)
		}
		var ttl time.Duration
		var expiresAt time.Time
		if opts, isObj := options.(*goja.Object); isObj {
			if t := opts.Get("ttl"); t != nil && !goja.IsUndefined(t) {
				ttl = time.Duration(t.ToFloat() * float64(time.Millisecond))
				if ttl <= 0 {
					return result(nil, CacheInvalidOptions)
				}
			}
			if t := opts.Get("expires_at"); t != nil && !goja.IsUndefined(t) {
				expiresAt = time.UnixMilli(t.ToInteger())
			}
		}
		e, code := c.set(k, v, ttl, expiresAt)
		return result(&e, code)
	})
	_ = obj.Set("delete", func(key goja.Value) *goja.Object {
		k, _ := key.Export().(string)
		if e, found := c.delete(k); found {
			return result(&e, "")
		}
		return result(nil, "")
	})
	return obj
}
