// Package caddyhook runs Auth0 credentials-exchange Hooks and Actions in the
// goja JavaScript engine: it compiles scripts once, runs each exchange in a
// warm runtime (worker.go) with a Node-style event loop, a sandboxed require
// and a time limit, maps the scripts' errors to OAuth errors, and applies
// Auth0's claim rules to their results. It knows nothing of Caddy; its only
// HTTP is the scripts' allow-listed outbound calls (fetch.go).
package caddyhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
	// Language is the client's preferred language tag, from its
	// Accept-Language header; "" when it states none. Actions see it as
	// event.request.language, left out when empty.
	Language string
	// GeoIP is Auth0's event.request.geoip for the client's address
	// (cityName, countryCode, latitude …); nil gives actions {}.
	GeoIP map[string]any
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
	// GrantScopes are the scopes the client is granted, as an Auth0 client
	// grant holds them: api.transaction.* target scopes outside them are
	// dropped when the run ends, as Auth0 drops what its authorization
	// policies do not allow. nil means the upstream token's Scope.
	GrantScopes []string
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
	// Dropped are the custom claims the scripts set and the token does not
	// get, with the reason; at most MaxDroppedReported of them
	// (DroppedTotal counts them all).
	Dropped      []DroppedClaim
	DroppedTotal int
}

// DroppedClaim is a custom claim a script set that does not reach the token.
type DroppedClaim struct {
	// Name is the claim's name, capped at 256 bytes.
	Name string `json:"name"`
	// Reason says why, for the operator ("the upstream token already has it").
	Reason string `json:"reason"`
	// Script is the name of the script that set it.
	Script string `json:"script"`
}

// MaxDroppedReported bounds Result.Dropped: a script may set any number of
// claims, and the list goes into a log line.
const MaxDroppedReported = 32

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
	// MemoryLimit is the Go heap size, in bytes, above which running
	// scripts are stopped with server_error "memory limit exceeded"
	// (memguard.go). The heap is the whole process's, so this bounds what
	// the runs together add to it. 0 means DefaultMemoryLimit(); negative
	// turns the watchdog off for this engine.
	MemoryLimit int64
	// Secrets are handed to hooks as context.webtask.secrets and to actions as
	// event.secrets.
	Secrets map[string]string
	// ActionSecrets are secrets of one action each, as Auth0 keeps secrets
	// per action: the action sees them in event.secrets over Secrets (its
	// own win); the hook and the other actions never do. Keys must be
	// among Actions.
	ActionSecrets map[*Script]map[string]string
	// ModulesDir is the folder whose CommonJS packages scripts may require;
	// empty allows only the built-in modules.
	ModulesDir string
	// Storage keeps context.webtask.storage documents; nil makes storage
	// calls fail with an error the hook can handle.
	Storage Storage
	// StorageNamespace separates the storage documents of different tenants
	// sharing one storage.
	StorageNamespace string
	// StorageKey names the hook's context.webtask.storage document, chosen
	// by the operator so that hooks at different paths (or on machines that
	// mount the hook file at different places) share one document. Empty
	// means one document per tenant and hook file path; see the
	// StorageKey function for the rule.
	StorageKey string
	// Cache is api.cache; nil gives the engine a cache of its own.
	Cache *ActionCache
	// IsolateRuns gives every exchange a fresh runtime, whose module top
	// level runs again, instead of a warm one from the engine's pool.
	IsolateRuns bool
	// FetchAllow are the URL prefixes scripts may call with fetch,
	// request, axios and node-fetch (fetch.go); empty refuses every call.
	FetchAllow []string
	// OnOutboundCall, when set, is called once per outbound call a script
	// makes (fetch, request, axios, node-fetch) with its outcome, one of the
	// Outbound* constants; it must be cheap and safe for concurrent use.
	// It lets the caller count calls without this package knowing how.
	OnOutboundCall func(outcome string)
	Logger         *zap.Logger
	// fetchRootCAs, set only by tests, verifies the TLS servers scripts
	// call; nil means the system's roots.
	fetchRootCAs *x509.CertPool
}

// Engine runs the configured scripts; it is safe for concurrent use, as each
// run has a runtime to itself while it lasts. Runtimes are kept warm in the
// engine's pool and serve one exchange after another (worker.go); nothing
// of one engine's runtimes reaches another engine.
type Engine struct {
	cfg        Config
	modules    *modules
	cache      *ActionCache
	storageKey string // the hook's storage document
	// actionSecrets holds, for each action with secrets of its own, those
	// merged over Config.Secrets (its own win), built once rather than on
	// every exchange.
	actionSecrets map[*Script]map[string]string
	pool          *pool
	warnings      *claimWarnings
	claimChecks   claimCheckCache
	fetcher       *fetcher
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
		if a == nil {
			return nil, errors.New("an action is nil")
		}
		if a.Kind != ActionKind {
			return nil, fmt.Errorf("%s is not an action", a.Name)
		}
	}
	if err := checkActionSecrets(cfg); err != nil {
		return nil, err
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
	mods, err := newModules(cfg.ModulesDir)
	if err != nil {
		return nil, err
	}
	cache := cfg.Cache
	if cache == nil {
		cache = NewActionCache()
	}
	f, err := newFetcher(cfg.FetchAllow, cfg.fetchRootCAs, cfg.Logger.Named("fetch"))
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, modules: mods, cache: cache, pool: &pool{max: defaultIdleWorkers()},
		warnings: newClaimWarnings(time.Now), fetcher: f}
	if cfg.Hook != nil {
		// The path is made absolute now, against the directory the
		// configuration was loaded in.
		e.storageKey = StorageKey(cfg.StorageNamespace, cfg.Hook.Name, cfg.StorageKey)
	}
	e.actionSecrets = map[*Script]map[string]string{}
	for s, own := range cfg.ActionSecrets {
		if len(own) > 0 {
			all := make(map[string]string, len(cfg.Secrets)+len(own))
			maps.Copy(all, cfg.Secrets)
			maps.Copy(all, own) // the action's own win
			e.actionSecrets[s] = all
		}
	}
	if err := e.warmUp(); err != nil {
		return nil, err
	}
	if cfg.OnOutboundCall != nil {
		f.onCall.Store(&cfg.OnOutboundCall)
	}
	return e, nil
}

// Close drops the engine's idle runtimes; runs still under way finish, and
// their runtimes are dropped too. The connections the scripts' calls left
// idle are closed rather than held until their idle time-out.
func (e *Engine) Close() {
	e.pool.close()
	if e.fetcher != nil {
		e.fetcher.client.CloseIdleConnections()
	}
}

// topLevelTimeout bounds the scripts' top level when it runs at config load.
const topLevelTimeout = 2 * time.Second

// warmUp runs every script's top level in a first runtime, so that a script
// exporting the wrong thing, or requiring a module that is not there, fails
// at config load rather than on the first token request. The runtime is
// then the pool's first warm one, unless its top level left work scheduled
// (that work would belong to no exchange) or isolate_runs is set.
func (e *Engine) warmUp() (err error) {
	// A top level slower than an exchange's time limit would fail every
	// exchange that gets a fresh runtime: say so now.
	limit := min(topLevelTimeout, e.cfg.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var w *worker
	var end func() bool
	defer func() {
		if x := recover(); x != nil {
			e.logPanic(x)
			err = errors.New("running the scripts' top level: internal error")
		}
		if end != nil && end() && err == nil && !e.cfg.IsolateRuns {
			e.pool.put(w)
		}
	}()
	w = e.newWorker()
	r := newRun(ctx, e, &Input{}, w)
	r.loading = true
	end = w.serve(r)
	for _, s := range e.scripts() {
		r.script, r.log = s, r.logger(s) // console at the top level
		_, loadErr, exportErr := w.entry(r, s)
		if loadErr != nil {
			if _, isInterrupt := gojaCause(loadErr).(*goja.InterruptedError); isInterrupt && ctx.Err() != nil {
				loadErr = fmt.Errorf("the top level took longer than %s (its time limit at load is the smaller of %s and timeout)", limit, topLevelTimeout)
			}
			return fmt.Errorf("%s: running top level: %s", s.Name, describeLoadError(w.vm, loadErr))
		}
		if exportErr != nil {
			return exportErr
		}
	}
	if r.fault != nil { // a microtask of the top level threw
		return fmt.Errorf("running top level: %s", r.fault.Description)
	}
	if w.loop.pendingRef() {
		// Every runtime's top level will leave the same: none is ever
		// reused, which the operator should know.
		e.cfg.Logger.Warn("the scripts' top level leaves timers or calls under way, so no runtime is reused: " +
			"every exchange gets a fresh one and runs the top level again (unref() such timers to keep runtimes warm)")
	}
	return nil
}

func (e *Engine) scripts() []*Script {
	var all []*Script
	if e.cfg.Hook != nil {
		all = append(all, e.cfg.Hook)
	}
	return append(all, e.cfg.Actions...)
}

// describeLoadError says why a script's top level failed, for the operator.
func describeLoadError(vm *goja.Runtime, err error) string {
	switch e := gojaCause(err).(type) {
	case *goja.InterruptedError:
		switch v := e.Value().(type) {
		case string:
			return v
		case *Error: // the memory guard's
			return v.Description
		}
		return "interrupted"
	case *goja.Exception:
		return describe(vm, e.Value(), "it threw a value that is not an error")
	}
	return errorFromThrow(vm, err, "it failed").Description
}

// Run runs the hook and then the actions for one exchange. A returned error
// is always an *Error, ready to be sent to the client. Run never panics: a
// panic, which would be a bug, is logged and fails the exchange.
func (e *Engine) Run(ctx context.Context, in *Input) (res *Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	var (
		w   *worker
		r   *run
		end func() bool
	)
	defer func() {
		if x := recover(); x != nil {
			if r != nil {
				r.broken = true
			}
			res, err = nil, e.recovered(x)
		}
		// A runtime goes back to the pool only when its run ended the way
		// scripts end: one that was interrupted, panicked or failed at its
		// top level is dropped, never reused.
		if end != nil && end() && !e.cfg.IsolateRuns {
			e.pool.put(w)
		}
	}()
	if !e.cfg.IsolateRuns {
		w = e.pool.get()
	}
	if w == nil {
		w = e.newWorker()
	}
	r = newRun(ctx, e, in, w)
	end = w.serve(r)
	defer r.logSummary()

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
	// Copies: a script may keep this run's api and call it in a later
	// exchange, which must not reach what the caller holds.
	return &Result{Scope: slices.Clone(r.grantedScope()), Claims: maps.Clone(r.claims),
		Dropped: slices.Clone(r.dropped), DroppedTotal: r.droppedClaims}, nil
}

// recovered turns a panic that reached Run into the exchange's error.
func (e *Engine) recovered(x any) *Error {
	e.logPanic(x)
	if err, ok := x.(error); ok && isUncatchable(err) {
		return errorFromThrow(nil, err, hookFailed)
	}
	return errorFor(CodeServerError, "internal error")
}

// logPanic logs a recovered panic with its stack. The panic value is left
// out unless it is a Go runtime error: any other value may carry script data
// (and a goja exception would run script code to print itself).
func (e *Engine) logPanic(x any) {
	fields := []zap.Field{zap.String("panic_type", fmt.Sprintf("%T", x)), zap.Stack("stack")}
	if re, ok := x.(runtime.Error); ok {
		fields = append(fields, zap.String("panic", re.Error()))
	}
	e.cfg.Logger.Error("caddyhook recovered from a panic (a bug); the exchange fails with server_error", fields...)
}

func timeoutCause(ctx context.Context) *Error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return errorFor(CodeServerError, "request cancelled")
	}
	return errTimedOut()
}

// run is the state of one exchange, served by a worker: the worker's
// runtime, loop and JSON.stringify (copied here for brevity; the other
// intrinsics are read from w), and the exchange's result.
type run struct {
	ctx context.Context
	// storageInflight counts this exchange's storage operations started
	// and not yet called back, whichever storage object started them
	// (storage.go); only the loop's goroutine touches it.
	storageInflight int
	eng             *Engine
	in              *Input
	w               *worker
	vm              *goja.Runtime
	loop            *loop
	stringify       goja.Callable
	// script is the script running now, and log its logger (console uses
	// it).
	script *Script
	log    *scriptLog
	// engineLog is log before the first script starts: the engine's own.
	engineLog scriptLog
	// webtask is the hook's context.webtask, whose storage accessor is
	// the worker's (storage.go).
	webtask *goja.Object
	// ended is set when the exchange is over: the api objects it handed to
	// scripts refuse to act after that, though a script may keep them.
	ended bool
	// broken says the worker must not serve another exchange.
	broken bool
	// loading is set while the scripts' top level runs at config load:
	// outbound calls made then never go out.
	loading bool
	scope   []string
	claims  map[string]json.RawMessage
	// fault is the first failure found outside a script's own flow (a limit
	// passed, an exception thrown in a microtask); it fails the exchange
	// whatever the script does afterwards.
	fault *Error
	// droppedClaims counts the claims dropped, to keep their logging
	// bounded.
	droppedClaims int
	// dropped lists the first MaxDroppedReported of them for the Result.
	dropped []DroppedClaim
	// consoleLines counts the console lines logged, consoleDropped those
	// past maxConsoleLines.
	consoleLines, consoleDropped int
	// actionGrant is what the actions' target scopes are cut to when the
	// run ends (grantedScope); nil until the first action runs.
	actionGrant map[string]bool
}

func newRun(ctx context.Context, e *Engine, in *Input, w *worker) *run {
	r := &run{
		ctx: ctx, eng: e, in: in, w: w, vm: w.vm, loop: w.loop, stringify: w.stringify,
		scope: in.Scope, claims: map[string]json.RawMessage{},
		engineLog: scriptLog{base: e.cfg.Logger, built: e.cfg.Logger},
	}
	r.log = &r.engineLog
	return r
}

// fail records the first fault of the run.
func (r *run) fail(e *Error) {
	if r.fault == nil && e != nil {
		r.fault = e
	}
}

// alive reports whether the run still has time; no script code is started
// once it has not.
func (r *run) alive() bool { return r.ctx.Err() == nil }

// describe is describe for this run; after the time limit it runs no script
// code and gives fallback.
func (r *run) describe(v goja.Value, fallback string) string {
	if !r.alive() {
		return fallback
	}
	return describe(r.vm, v, fallback)
}

// rejected is the Error for a promise a script returned that was rejected
// with v: its description, and where v was made when it is an error.
func (r *run) rejected(v goja.Value, fallback string) *Error {
	out := errorFor(CodeServerError, r.describe(v, fallback))
	if r.alive() {
		out.Where = valueLocation(r.vm, v)
	}
	return out
}

// errorFromThrow is errorFromThrow for this run. A stack overflow or an
// interrupt leaves the runtime half-way through the script (goja runs no
// catch or finally block for them): it is not reused.
func (r *run) errorFromThrow(err error, fallback string) *Error {
	if isUncatchable(gojaCause(err)) {
		r.broken = true
	}
	if _, isEx := gojaCause(err).(*goja.Exception); isEx && !r.alive() {
		return timeoutCause(r.ctx)
	}
	return errorFromThrow(r.vm, err, fallback)
}

// define sets a data property on an object built here, without running any
// setter a script may have put on Object.prototype.
func define(vm *goja.Runtime, obj *goja.Object, name string, v any) {
	_ = obj.DefineDataProperty(name, vm.ToValue(v), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
}

// maxInputDepth bounds the nesting of data handed to scripts; it is
// encoding/json's own limit, so no request body that decoded can pass it.
const maxInputDepth = 10000

// toJS builds a plain JavaScript value from Go data, as Node's JSON.parse
// would hand it over: objects (keys sorted), arrays, strings, numbers
// (json.Number too, with Infinity for one too large, as JSON.parse gives),
// booleans and null. It never panics; data it cannot hand over is an error.
func (r *run) toJS(v any) (goja.Value, error) { return r.toJSDepth(v, 0) }

func (r *run) toJSDepth(v any, depth int) (goja.Value, error) {
	if depth > maxInputDepth {
		return nil, textError(fmt.Sprintf("data nested more than %d deep", maxInputDepth))
	}
	vm := r.vm
	switch x := v.(type) {
	case nil:
		return goja.Null(), nil
	case goja.Value:
		return x, nil
	case string:
		return vm.ToValue(validUTF8(x)), nil
	case bool:
		return vm.ToValue(x), nil
	case json.Number:
		f, err := parseJSONNumber(string(x))
		if err != nil {
			return nil, err
		}
		return vm.ToValue(f), nil
	case float64:
		return vm.ToValue(x), nil
	case float32:
		return vm.ToValue(float64(x)), nil
	case int:
		return vm.ToValue(x), nil
	case int64:
		return vm.ToValue(x), nil
	case json.RawMessage:
		out, err := r.w.parse(goja.Undefined(), vm.ToValue(string(x)))
		if err != nil {
			return nil, textError("JSON the runtime cannot parse")
		}
		return out, nil
	case []any:
		items := make([]any, len(x))
		for i, item := range x {
			jv, err := r.toJSDepth(item, depth+1)
			if err != nil {
				return nil, err
			}
			items[i] = jv
		}
		return vm.NewArray(items...), nil
	case []string:
		items := make([]any, len(x))
		for i, s := range x {
			items[i] = vm.ToValue(validUTF8(s)) // NewArray takes a goja value as it is
		}
		return vm.NewArray(items...), nil
	case map[string]any:
		return toJSObject(r, x, depth)
	case map[string]string:
		return toJSStrings(r, x)
	case map[string]json.RawMessage:
		return toJSObject(r, x, depth)
	}
	// Anything else goes through encoding/json, as it always did.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, textError(fmt.Sprintf("a %T cannot be encoded as JSON", v))
	}
	return r.toJSDepth(json.RawMessage(b), depth)
}

func toJSObject[V any](r *run, m map[string]V, depth int) (goja.Value, error) {
	if len(m) == 0 {
		return r.vm.NewObject(), nil
	}
	obj := r.w.newPlain()
	var small [16]string
	for _, k := range sortedKeys(m, small[:0]) {
		jv, err := r.toJSDepth(m[k], depth+1)
		if err != nil {
			return nil, err
		}
		if err := obj.Set(validUTF8(k), jv); err != nil {
			return nil, textError("an object member cannot be defined")
		}
	}
	return r.w.donePlain(obj), nil
}

// toJSStrings is toJSObject for the string maps every run hands over
// (metadata, secrets), without boxing each value on the way.
func toJSStrings(r *run, m map[string]string) (goja.Value, error) {
	if len(m) == 0 {
		return r.vm.NewObject(), nil
	}
	obj := r.w.newPlain()
	var small [16]string
	for _, k := range sortedKeys(m, small[:0]) {
		if err := obj.Set(validUTF8(k), r.vm.ToValue(validUTF8(m[k]))); err != nil {
			return nil, textError("an object member cannot be defined")
		}
	}
	return r.w.donePlain(obj), nil
}

// sortedKeys returns m's keys in order, in buf when they fit.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	keys := buf[:0]
	if len(m) > cap(buf) {
		keys = make([]string, 0, len(m))
	}
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validUTF8 replaces each byte of s that is not UTF-8 with U+FFFD, as
// encoding/json does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// parseJSONNumber reads a JSON number as JSON.parse does: the nearest
// double, Infinity when it is too large and 0 when it is too small.
func parseJSONNumber(s string) (float64, error) {
	if !isJSONNumber(s) {
		return 0, textError("a number that is not a JSON number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, textError("a number that is not a JSON number")
	}
	return f, nil // on ErrRange, ParseFloat gives ±Inf or ±0, as JSON.parse does
}

// isJSONNumber reports whether s is a number in JSON's grammar (RFC 8259 §6).
func isJSONNumber(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// bodyAndSecrets builds the two inputs hooks and actions both get: the
// request body and a fresh copy of s's secrets.
func (r *run) bodyAndSecrets(log *scriptLog, s *Script) (body, secrets goja.Value, err *Error) {
	body, jerr := r.toJS(orEmpty(r.in.Request.Body))
	if jerr != nil { // only the client controls the body: its invalid_request
		log.Info("the request body cannot be given to the script", zap.String("reason", jerr.Error()))
		return nil, nil, errorFor(CodeInvalidRequest, "the request body cannot be given to the hook")
	}
	all, own := r.eng.actionSecrets[s]
	if !own {
		all = r.eng.cfg.Secrets
	}
	if secrets, err = r.input(all); err != nil {
		return nil, nil, err
	}
	return body, secrets, nil
}

// input hands Go data the engine built (not the client) to a script.
func (r *run) input(v any) (goja.Value, *Error) {
	out, err := r.toJS(v)
	if err != nil {
		return nil, errorFor(CodeServerError, "the hook's input cannot be built: "+err.Error())
	}
	return out, nil
}

// errJSONTooLarge is toJSON's error for a value whose JSON is too long.
type errJSONTooLarge int

func (e errJSONTooLarge) Error() string {
	return fmt.Sprintf("the value is more than %d bytes as JSON", int(e))
}

// maxResultJSON bounds the JSON of a hook's result object, before its
// claims are sorted out; the claims that reach the token are bounded by
// MaxClaimsSize.
const maxResultJSON = 16 << 20

// toJSON serialises a script's value as Auth0 did, through JSON.stringify;
// ok is false for values JSON cannot hold (undefined, functions). A result
// of more than max characters is an error, found before it is copied.
func (r *run) toJSON(v goja.Value, max int) (json.RawMessage, bool, error) {
	s, err := r.stringify(goja.Undefined(), v)
	if err != nil {
		return nil, false, err
	}
	str, ok := s.(goja.String)
	if !ok {
		return nil, false, nil
	}
	if str.Length() > max {
		return nil, false, errJSONTooLarge(max)
	}
	return json.RawMessage(str.String()), true, nil
}

// scriptLog is the logger of one script's part of a run: the engine's,
// with the script's name and the client's id, built the first time
// something is logged. Most runs log nothing, and With costs a production
// core the encoding of its fields.
type scriptLog struct {
	base           *zap.Logger
	script, client string
	built          *zap.Logger
}

func (r *run) logger(s *Script) *scriptLog {
	return &scriptLog{base: r.eng.cfg.Logger, script: s.Name, client: r.in.Client.ID}
}

// logger returns the logger with its fields.
func (l *scriptLog) logger() *zap.Logger {
	if l.built == nil {
		l.built = l.base.With(zap.String("script", l.script), zap.String("client_id", l.client))
	}
	return l.built
}

// enabled reports whether the logger writes entries of level; With keeps
// the level of the logger it extends.
func (l *scriptLog) enabled(level zapcore.Level) bool {
	if l.built != nil {
		return l.built.Core().Enabled(level)
	}
	return l.base.Core().Enabled(level)
}

func (l *scriptLog) Warn(msg string, fields ...zap.Field) { l.logger().Warn(msg, fields...) }
func (l *scriptLog) Info(msg string, fields ...zap.Field) { l.logger().Info(msg, fields...) }

// start makes s the run's current script, with console logging under its
// name, and returns its entry point, loading it into the worker first if
// needed.
func (r *run) start(s *Script) (*scriptLog, goja.Callable, error) {
	if !r.alive() {
		return nil, nil, timeoutCause(r.ctx)
	}
	log := r.logger(s)
	r.script, r.log = s, log
	fn, loadErr, exportErr := r.w.entry(r, s)
	switch {
	case loadErr != nil:
		return nil, nil, r.errorFromThrow(loadErr, failedText(s))
	case exportErr != nil:
		return nil, nil, errorFor(CodeServerError, exportErr.Error())
	}
	return log, fn, nil
}

func failedText(s *Script) string {
	if s.Kind == ActionKind {
		return actionFailed
	}
	return hookFailed
}

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

// await resolves v through the intrinsic Promise.resolve, as await does: a
// promise is taken as it is, a thenable is adopted (its then runs as a
// job), anything else is a fulfilled promise. The error is what
// Promise.resolve threw.
func (r *run) await(v goja.Value) (*goja.Promise, error) {
	if !r.alive() {
		return nil, timeoutCause(r.ctx)
	}
	res, err := r.w.promiseResolve(r.w.promiseCtor, v)
	if err != nil {
		return nil, err
	}
	if obj, ok := res.(*goja.Object); ok {
		// Promise.resolve on the intrinsic constructor always returns a
		// real promise, and exporting one runs no script code.
		if p, ok := obj.Export().(*goja.Promise); ok {
			return p, nil
		}
	}
	return nil, errors.New("Promise.resolve did not return a promise")
}

// wait runs the event loop until done, mapping a time-out or a callback
// that throws to the Error the client gets. A fault ends the wait.
func (r *run) wait(done func() bool) *Error {
	if err := r.loop.run(r.ctx, func() bool { return r.fault != nil || done() }); err != nil {
		if !r.alive() {
			return timeoutCause(r.ctx)
		}
		return r.errorFromThrow(err, "an exception was thrown in a callback")
	}
	return r.fault
}

// applyHookResult applies cb's result object: its scope replaces the token's,
// and its other members are custom claims, subject to the claim rules.
func (r *run) applyHookResult(log *scriptLog, raw json.RawMessage) error {
	var buf [8]jsonMember
	members := buf[:0]
	if raw != nil {
		var ok bool
		if members, ok = objectMembers(raw, members); !ok {
			log.Warn("hook result is not an object; treating it as {} (the token gets no scope)")
			members = buf[:0]
		}
	}
	var scopeRaw json.RawMessage
	for _, m := range members {
		if string(m.name) == "scope" {
			scopeRaw = m.value
		}
	}
	scope, err := parseScope(scopeRaw)
	if err != nil {
		return errorFor(CodeServerError, "hook result: "+err.Error())
	}
	r.scope = scope
	for _, m := range members {
		if string(m.name) != "scope" {
			value := json.RawMessage(m.value)
			if len(raw) > maxSharedResult {
				// A claim kept must not keep the whole of a large result.
				value = bytes.Clone(value)
			}
			r.setClaim(log, string(m.name), value)
		}
	}
	return nil
}

// maxSharedResult is the largest hook result whose claims are slices of
// it rather than copies.
const maxSharedResult = 4 << 10

// setClaim adds a custom claim when the policy accepts its name and the
// upstream token does not already carry it; otherwise it is dropped, as on
// Auth0 ("the transaction won't fail"), and a warning says so.
func (r *run) setClaim(log *scriptLog, name string, value json.RawMessage) {
	if ok, why := r.eng.claimChecks.check(r.eng.cfg.Policy, name); !ok {
		r.dropClaim(log, name, why)
		return
	}
	if _, taken := r.in.TokenClaims[name]; taken {
		r.dropClaim(log, name, "the upstream token already has it")
		return
	}
	r.claims[name] = value
}

// maxDroppedClaimLogs is how many dropped claims one run hands to the
// rate-limited warning; past it they are only counted.
const maxDroppedClaimLogs = 10

func (r *run) dropClaim(log *scriptLog, name, why string) {
	r.droppedClaims++
	script := ""
	if r.script != nil {
		script = r.script.Name
	}
	if len(r.dropped) < MaxDroppedReported {
		r.dropped = append(r.dropped, DroppedClaim{Name: capText(name, 256), Reason: why, Script: script})
	}
	if r.droppedClaims <= maxDroppedClaimLogs {
		r.eng.warnings.warn(log.logger(), script, name, why)
	}
}

// logSummary logs what the run counted instead of logging it line by line.
func (r *run) logSummary() {
	if n := r.droppedClaims - maxDroppedClaimLogs; n > 0 {
		r.eng.cfg.Logger.Warn("more custom claims dropped", zap.String("client_id", r.in.Client.ID),
			zap.Int("not_logged", n), zap.Int("dropped", r.droppedClaims))
	}
	if n := r.consoleDropped; n > 0 {
		r.eng.cfg.Logger.Warn("console output of the run was cut", zap.String("client_id", r.in.Client.ID),
			zap.Int("lines_dropped", n), zap.Int("max_lines", maxConsoleLines))
	}
}

func (r *run) checkSize() error {
	if r.fault != nil {
		return r.fault
	}
	total := 0
	for name, v := range r.claims {
		total += len(name) + len(v)
	}
	if total > MaxClaimsSize {
		return errorFor(CodeServerError, fmt.Sprintf("custom claims are %d bytes, more than the %d allowed", total, MaxClaimsSize))
	}
	if err := checkScopeLimits(r.scope); err != nil {
		return errorFor(CodeServerError, err.Error())
	}
	return nil
}

// Limits on the scope a token may get: past them the exchange fails, rather
// than the scope being cut.
const (
	// MaxScopes is the most scope tokens one access token may carry.
	MaxScopes = 1000
	// MaxScopeSize is the most bytes the token's scope may have, as the
	// space-separated string a scope claim holds.
	MaxScopeSize = 16 * 1024
)

// scopeLimitError is a scope past MaxScopes or MaxScopeSize.
type scopeLimitError string

func (e scopeLimitError) Error() string { return string(e) }

// checkScopeLimits fails a scope past MaxScopes or MaxScopeSize.
func checkScopeLimits(scope []string) error {
	if len(scope) > MaxScopes {
		return scopeLimitError(fmt.Sprintf("the token would have more than the %d scopes allowed", MaxScopes))
	}
	if size := scopeSize(scope); size > MaxScopeSize {
		return scopeLimitError(fmt.Sprintf("the token's scope would be %d bytes, more than the %d allowed", size, MaxScopeSize))
	}
	return nil
}

func scopeSize(scope []string) int {
	n := 0
	for i, s := range scope {
		if i > 0 {
			n++
		}
		n += len(s)
	}
	return n
}

// parseScope reads a result's scope: absent or null is no scope, otherwise an
// array of strings. Duplicates are dropped, order kept. A scope past the
// limits is an error.
func parseScope(raw json.RawMessage) ([]string, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	// The common case, plain strings, is read in place, each converted only
	// when kept.
	if n, ok := plainStrings(raw); ok {
		b := scopeBuilder{out: make([]string, 0, min(n, MaxScopes+1))}
		for item := range eachPlainString(raw) {
			if len(item) == 0 || b.hasBytes(item) {
				continue
			}
			if b.add(string(item)); b.err != nil {
				return nil, b.err
			}
		}
		return b.finish()
	}
	var list []any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("scope must be an array of strings")
	}
	b := scopeBuilder{out: make([]string, 0, min(len(list), MaxScopes+1))}
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("scope must be an array of strings, it holds %s", jsonKind(v))
		}
		if s == "" || b.has(s) {
			continue
		}
		if b.add(s); b.err != nil {
			return nil, b.err
		}
	}
	return b.finish()
}

// scopeBuilder collects a scope token by token, in order.
type scopeBuilder struct {
	out []string
	// seen indexes out once it is too long for a linear search.
	seen map[string]bool
	err  error
}

const scopeLinearSearch = 16

func (b *scopeBuilder) has(s string) bool {
	if b.seen != nil {
		return b.seen[s]
	}
	return slices.Contains(b.out, s)
}

func (b *scopeBuilder) hasBytes(s []byte) bool {
	if b.seen != nil {
		return b.seen[string(s)]
	}
	for _, t := range b.out {
		if t == string(s) {
			return true
		}
	}
	return false
}

// add adds s, neither empty nor already there; an invalid token, or one
// too many, sets err.
func (b *scopeBuilder) add(s string) {
	if !validScope(s) {
		b.err = fmt.Errorf("scope %q holds a character a scope token cannot have", capText(s, 64))
		return
	}
	b.out = append(b.out, s)
	switch {
	case b.seen != nil:
		b.seen[s] = true
	case len(b.out) > scopeLinearSearch:
		b.seen = make(map[string]bool, 2*len(b.out))
		for _, t := range b.out {
			b.seen[t] = true
		}
	}
	if len(b.out) > MaxScopes {
		b.err = checkScopeLimits(b.out)
	}
}

func (b *scopeBuilder) finish() ([]string, error) {
	if err := checkScopeLimits(b.out); err != nil {
		return nil, err
	}
	return b.out, nil
}

// jsonKind names the JSON type of a value decoded by encoding/json.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a value that is not a string"
}

// validScope reports whether s is one scope token (RFC 6749 §3.3): not
// empty, printable ASCII only, no spaces, quotes or backslashes. Anything
// else could split into more scopes for a resource server that splits on
// any white space.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// orEmpty hands scripts {} rather than null for an absent map.
func orEmpty[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// gojaCause finds the goja error (or *Error) err wraps, unwrapping only
// errors that are not goja's: unwrapping a goja exception can run script
// code.
func gojaCause(err error) error {
	for e := err; e != nil; {
		switch e.(type) {
		case *goja.Exception, *goja.InterruptedError, *goja.StackOverflowError, *Error:
			return e
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return err
}
