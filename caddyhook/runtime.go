// Package caddyhook runs Auth0 credentials-exchange Hooks and Actions in the
// goja JavaScript engine: it compiles scripts once, runs each exchange in a
// fresh runtime with a Node-style event loop, a sandboxed require and a time
// limit, maps the scripts' errors to OAuth errors, and applies Auth0's claim
// rules to their results. It knows nothing of Caddy or HTTP.
package caddyhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dop251/goja"
	"go.uber.org/zap"
)

// MaxClaimsSize is Auth0's limit on the custom claims one token may carry.
const MaxClaimsSize = 100 * 1024

// DefaultTimeout limits a whole run when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Client describes the OAuth client the token was issued to.
type Client struct {
	ID       string
	Name     string
	Tenant   string
	Metadata map[string]string
}

// Request describes the token request.
type Request struct {
	IP        string
	Method    string
	Hostname  string
	UserAgent string
	// Body holds the token request parameters, client credentials removed.
	Body map[string]any
}

// Input is everything a run needs to know about one exchange.
type Input struct {
	Client Client
	// Scope is the upstream token's scope; nil means the token has none,
	// which the hook sees as undefined.
	Scope    []string
	Audience string
	Request  Request
	// RequestedScopes are the scopes the client asked for.
	RequestedScopes []string
	// TokenClaims are the claims already in the upstream token; a custom
	// claim with one of these names is not added.
	TokenClaims map[string]json.RawMessage
}

// Result is what reaches the token.
type Result struct {
	// Scope replaces the token's scope; nil or empty means no scope.
	Scope []string
	// Claims are the accepted custom claims, as JSON.
	Claims map[string]json.RawMessage
}

// Config configures an Engine.
type Config struct {
	// Hook is the Auth0 Hook; it may be nil when Actions are set.
	Hook *Script
	// Actions run after the hook, in order, each seeing what the hook and the
	// earlier actions did.
	Actions []*Script
	Policy  ClaimsPolicy
	// Timeout limits the whole run, hook and actions together.
	Timeout time.Duration
	// Secrets are handed to hooks as context.webtask.secrets and to actions as
	// event.secrets.
	Secrets map[string]string
	// ModulesDir is the folder whose CommonJS packages scripts may require;
	// empty allows only the built-in modules.
	ModulesDir string
	// Storage keeps context.webtask.storage documents; nil makes storage
	// calls fail with an error the hook can handle.
	Storage Storage
	// StorageNamespace separates the storage documents of different tenants
	// sharing one storage.
	StorageNamespace string
	// Cache is api.cache; nil gives the engine a cache of its own.
	Cache  *ActionCache
	Logger *zap.Logger
}

// Engine runs the configured scripts; it is safe for concurrent use, as each
// run has a runtime of its own. Only api.cache is shared between runs.
type Engine struct {
	cfg     Config
	secrets string // JSON, encoded once
	modules *modules
	cache   *ActionCache
}

// NewEngine checks cfg, loads every script's top level once to check what it
// exports, and returns an Engine.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Hook == nil && len(cfg.Actions) == 0 {
		return nil, errors.New("no hook or action configured")
	}
	if cfg.Hook != nil && cfg.Hook.Kind != HookKind {
		return nil, fmt.Errorf("%s is not a hook", cfg.Hook.Name)
	}
	for _, a := range cfg.Actions {
		if a.Kind != ActionKind {
			return nil, fmt.Errorf("%s is not an action", a.Name)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Secrets == nil {
		cfg.Secrets = map[string]string{}
	}
	secrets, err := json.Marshal(cfg.Secrets)
	if err != nil {
		return nil, err
	}
	mods, err := newModules(cfg.ModulesDir)
	if err != nil {
		return nil, err
	}
	cache := cfg.Cache
	if cache == nil {
		cache = NewActionCache()
	}
	e := &Engine{cfg: cfg, secrets: string(secrets), modules: mods, cache: cache}
	for _, s := range e.scripts() {
		if err := e.checkExports(s); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Engine) scripts() []*Script {
	var all []*Script
	if e.cfg.Hook != nil {
		all = append(all, e.cfg.Hook)
	}
	return append(all, e.cfg.Actions...)
}

// checkExports runs a script's top level in a scratch runtime, so that a
// script exporting the wrong thing, or requiring a module that is not there,
// fails at config load rather than on the first token request.
func (e *Engine) checkExports(s *Script) error {
	vm := newVM()
	req := e.modules.enable(vm)
	timer := time.AfterFunc(2*time.Second, func() { vm.Interrupt("the top level took longer than 2s") })
	defer timer.Stop()
	exports, err := s.load(vm, req)
	if err != nil {
		return fmt.Errorf("%s: running top level: %v", s.Name, describeThrow(err))
	}
	_, err = s.entry(vm, exports)
	return err
}

// Run runs the hook and then the actions for one exchange. A returned error
// is always an *Error, ready to be sent to the client.
func (e *Engine) Run(ctx context.Context, in *Input) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()

	r := newRun(ctx, e, in)
	// The runtime is interrupted when time is up, which also ends endless
	// loops; it is never reused, so an interrupted runtime cannot leak state
	// into another exchange.
	stop := context.AfterFunc(ctx, func() { r.vm.Interrupt(timeoutCause(ctx)) })
	defer stop()
	defer r.loop.close()

	if e.cfg.Hook != nil {
		if err := r.runHook(e.cfg.Hook); err != nil {
			return nil, err
		}
	}
	for _, a := range e.cfg.Actions {
		if err := r.runAction(a); err != nil {
			return nil, err
		}
	}
	if err := r.checkSize(); err != nil {
		return nil, err
	}
	return &Result{Scope: r.scope, Claims: r.claims}, nil
}

func timeoutCause(ctx context.Context) *Error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return errorFor(CodeServerError, "request cancelled")
	}
	return errTimedOut()
}

// run is the state of one exchange: its own runtime, loop and result.
type run struct {
	ctx       context.Context
	eng       *Engine
	in        *Input
	vm        *goja.Runtime
	loop      *loop
	require   goja.Value
	stringify goja.Callable
	parse     goja.Callable
	errorCtor *goja.Object
	scope     []string
	claims    map[string]json.RawMessage
}

func newRun(ctx context.Context, e *Engine, in *Input) *run {
	vm := newVM()
	r := &run{ctx: ctx, eng: e, in: in, vm: vm, loop: newLoop(vm), scope: in.Scope, claims: map[string]json.RawMessage{}}
	r.require = e.modules.enable(vm)
	// Keep our own references: a script may replace the global JSON.
	jsonObj := vm.Get("JSON").ToObject(vm)
	r.stringify, _ = goja.AssertFunction(jsonObj.Get("stringify"))
	r.parse, _ = goja.AssertFunction(jsonObj.Get("parse"))
	r.errorCtor = vm.Get("Error").ToObject(vm)
	return r
}

// fromJSON builds a plain JavaScript value from Go data through JSON, so that
// scripts see ordinary objects and arrays, exactly as Node would hand them.
func (r *run) fromJSON(v any) goja.Value {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only ever called with JSON-safe data built here
	}
	out, err := r.parse(goja.Undefined(), r.vm.ToValue(string(b)))
	if err != nil {
		panic(err)
	}
	return out
}

// toJSON serialises a script's value as Auth0 did, through JSON.stringify;
// ok is false for values JSON cannot hold (undefined, functions).
func (r *run) toJSON(v goja.Value) (json.RawMessage, bool, error) {
	s, err := r.stringify(goja.Undefined(), v)
	if err != nil {
		return nil, false, err
	}
	if goja.IsUndefined(s) {
		return nil, false, nil
	}
	return json.RawMessage(s.String()), true, nil
}

func (r *run) logger(s *Script) *zap.Logger {
	return r.eng.cfg.Logger.With(zap.String("script", s.Name), zap.String("client_id", r.in.Client.ID))
}

// start loads a script into the run's runtime, with console logging under
// its name, and returns its entry point.
func (r *run) start(s *Script) (*zap.Logger, goja.Callable, error) {
	log := r.logger(s)
	r.installConsole(log)
	exports, err := s.load(r.vm, r.require)
	if err != nil {
		return nil, nil, errorFromThrow(r.vm, err)
	}
	fn, err := s.entry(r.vm, exports)
	if err != nil {
		return nil, nil, errorFor(CodeServerError, err.Error())
	}
	return log, fn, nil
}

// runHook runs an Auth0 Hook and waits for its cb.
func (r *run) runHook(s *Script) error {
	log, fn, err := r.start(s)
	if err != nil {
		return err
	}

	in := r.in
	client := r.fromJSON(map[string]any{
		"id": in.Client.ID, "name": in.Client.Name, "tenant": in.Client.Tenant, "metadata": orEmpty(in.Client.Metadata),
	})
	scope := goja.Undefined()
	if in.Scope != nil {
		scope = r.fromJSON(in.Scope)
	}
	hookCtx := r.fromJSON(map[string]any{
		"ip": in.Request.IP, "userAgent": in.Request.UserAgent, "hostname": in.Request.Hostname,
		"body": orEmpty(in.Request.Body),
	}).ToObject(r.vm)
	webtask := r.vm.NewObject()
	_ = webtask.Set("secrets", r.secrets())
	_ = webtask.Set("storage", r.storage(s))
	_ = hookCtx.Set("webtask", webtask)

	var (
		finished bool
		failure  *Error
		result   json.RawMessage
	)
	cb := func(call goja.FunctionCall) goja.Value {
		if finished {
			log.Warn("hook called cb more than once; only the first call counts")
			return goja.Undefined()
		}
		finished = true
		if e := call.Argument(0); e.ToBoolean() {
			failure = errorFromValue(r.vm, e)
			return goja.Undefined()
		}
		raw, ok, err := r.toJSON(call.Argument(1))
		switch {
		case err != nil:
			failure = errorFor(CodeServerError, "hook result cannot be serialised: "+describeThrow(err))
		case !ok:
			log.Warn("hook called cb without a result object; treating it as {} (the token gets no scope)")
		default:
			result = raw
		}
		return goja.Undefined()
	}

	ret, err := fn(goja.Undefined(), client, scope, r.vm.ToValue(in.Audience), hookCtx, r.vm.ToValue(cb))
	if err != nil {
		return errorFromThrow(r.vm, err)
	}
	r.onRejection(ret, func(reason goja.Value) {
		if !finished {
			finished = true
			failure = errorFor(CodeServerError, messageOf(r.vm, reason))
		}
	})
	if !finished && !r.loop.pending() {
		// Nothing can call cb any more; say so now rather than leave the
		// operator with a bare time-out.
		log.Warn("hook returned without calling cb and has nothing scheduled; the exchange will time out")
	}
	if err := r.wait(func() bool { return finished }); err != nil {
		return err
	}
	if failure != nil {
		return failure
	}
	return r.applyHookResult(log, result)
}

// wait runs the event loop until done, mapping a time-out or a callback
// that throws to the Error the client gets.
func (r *run) wait(done func() bool) *Error {
	if err := r.loop.run(r.ctx, done); err != nil {
		if r.ctx.Err() != nil {
			return timeoutCause(r.ctx)
		}
		return errorFromThrow(r.vm, err)
	}
	return nil
}

// secrets returns a fresh copy of the secrets for one script.
func (r *run) secrets() goja.Value {
	v, _ := r.parse(goja.Undefined(), r.vm.ToValue(r.eng.secrets))
	return v
}

// onRejection calls fn when v is a promise that rejects: an async hook that
// throws fails the exchange instead of waiting for the time limit.
func (r *run) onRejection(v goja.Value, fn func(reason goja.Value)) {
	if _, ok := v.Export().(*goja.Promise); !ok {
		return
	}
	then, ok := goja.AssertFunction(v.ToObject(r.vm).Get("then"))
	if !ok {
		return
	}
	_, _ = then(v, goja.Undefined(), r.vm.ToValue(func(reason goja.Value) { fn(reason) }))
}

// messageOf returns an error's message, or the value as a string.
func messageOf(vm *goja.Runtime, v goja.Value) string {
	if obj, ok := v.(*goja.Object); ok {
		if msg := stringProp(vm, obj, "message"); msg != "" {
			return msg
		}
	}
	if v == nil || goja.IsUndefined(v) {
		return "promise rejected"
	}
	return v.String()
}

// applyHookResult applies cb's result object: its scope replaces the token's,
// and its other members are custom claims, subject to the claim rules.
func (r *run) applyHookResult(log *zap.Logger, raw json.RawMessage) error {
	obj := map[string]json.RawMessage{}
	if raw != nil {
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			log.Warn("hook result is not an object; treating it as {} (the token gets no scope)")
			obj = map[string]json.RawMessage{}
		}
	}
	scope, err := parseScope(obj["scope"])
	if err != nil {
		return errorFor(CodeServerError, "hook result: "+err.Error())
	}
	r.scope = scope
	for name, value := range obj {
		if name == "scope" {
			continue
		}
		r.setClaim(log, name, value)
	}
	return nil
}

// setClaim adds a custom claim when the policy accepts its name and the
// upstream token does not already carry it; otherwise it is ignored, as on
// Auth0, and the reason goes to the debug log.
func (r *run) setClaim(log *zap.Logger, name string, value json.RawMessage) {
	if ok, why := r.eng.cfg.Policy.Check(name); !ok {
		log.Debug("custom claim ignored", zap.String("claim", name), zap.String("reason", why))
		return
	}
	if _, taken := r.in.TokenClaims[name]; taken {
		log.Debug("custom claim ignored", zap.String("claim", name), zap.String("reason", "the upstream token already has it"))
		return
	}
	r.claims[name] = value
}

func (r *run) checkSize() error {
	total := 0
	for name, v := range r.claims {
		total += len(name) + len(v)
	}
	if total > MaxClaimsSize {
		return errorFor(CodeServerError, fmt.Sprintf("custom claims are %d bytes, more than the %d allowed", total, MaxClaimsSize))
	}
	return nil
}

// parseScope reads a result's scope: absent or null is no scope, otherwise an
// array of strings. Duplicates are dropped, order kept.
func parseScope(raw json.RawMessage) ([]string, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var list []any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("scope must be an array of strings")
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("scope must be an array of strings, it holds %v", v)
		}
		if s == "" || seen[s] {
			continue
		}
		if !validScope(s) {
			return nil, fmt.Errorf("scope %q holds a character a scope token cannot have", s)
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, nil
}

// orEmpty hands scripts {} rather than null for an absent map.
// validScope reports whether s is one scope token (RFC 6749 §3.3): not
// empty, no spaces, quotes or backslashes.
func validScope(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\n\"\\")
}

func orEmpty[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}
