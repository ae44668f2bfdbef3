// Package caddyhook runs Auth0 credentials-exchange Hooks and Actions in the
// goja JavaScript engine: it compiles scripts once, runs each exchange in a
// warm runtime (worker.go) with a Node-style event loop, a sandboxed require
// and a time limit, maps the scripts' errors to OAuth errors, and applies
// Auth0's claim rules to their results. It knows nothing of Caddy; its only
// HTTP is the scripts' allow-listed outbound calls (fetch.go).
package caddyhook

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	"github.com/dop251/goja"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

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
	// get, with the reason; at most maxDroppedReported of them
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

// maxDroppedReported bounds Result.Dropped: a script may set any number of
// claims, and the list goes into a log line.
const maxDroppedReported = 32

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
	// means one document per tenant and hook file path; see storageKey
	// for the rule.
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
	// makes (fetch, request, axios, node-fetch) with its outcome: "ok",
	// "http_error", "refused", "timeout" or "failed" (the outbound*
	// constants); it must be cheap and safe for concurrent use.
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
		e.storageKey = storageKey(cfg.StorageNamespace, cfg.Hook.Name, cfg.StorageKey)
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
				loadErr = fmt.Errorf("the top level took longer than %s (its time limit at load is the smaller of %s and the run's time limit)", limit, topLevelTimeout)
			}
			return scriptFault(fmt.Errorf("%s: running top level: %s", s.Name, describeLoadError(w.vm, loadErr)))
		}
		if exportErr != nil {
			return exportErr
		}
	}
	if r.fault != nil { // a microtask of the top level threw
		return scriptFault(fmt.Errorf("running top level: %s", r.fault.Description))
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
	// dropped lists the first maxDroppedReported of them for the Result.
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
	return nil, errors.New("the intrinsic Promise.resolve did not return a promise")
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
