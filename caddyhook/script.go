package caddyhook

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/dop251/goja"
)

// Kind says which Auth0 programming model a script follows.
type Kind int

const (
	// HookKind is an Auth0 Hook: module.exports = function(client, scope, audience, context, cb).
	HookKind Kind = iota
	// ActionKind is an Auth0 Action: exports.onExecuteCredentialsExchange = async (event, api) => {}.
	ActionKind
)

// Script is a hook or action compiled once, at config load, and run in a
// fresh runtime for every exchange.
type Script struct {
	Name string // file name, used in logs and error messages
	Kind Kind
	prog *goja.Program
}

// maxScriptSize bounds a script's source; a larger file is almost certainly
// not a hook.
const maxScriptSize = 1 << 20

// Node wraps every CommonJS module in this function; the source starts on the
// wrapper's first line so that line numbers in errors match the file.
const (
	moduleHead = "(function (exports, require, module, __filename, __dirname) {"
	moduleTail = "\n})"
)

// Compile compiles src as a hook or action named name (normally its file
// path) in sloppy mode, as Node runs CommonJS modules. Errors name the file,
// line and column. NewEngine then checks what the script exports, since its
// top level may require modules that only the engine can provide.
func Compile(name string, src []byte, kind Kind) (*Script, error) {
	if len(src) > maxScriptSize {
		return nil, scriptFault(fmt.Errorf("%s: script is %d bytes, larger than the %d allowed", name, len(src), maxScriptSize))
	}
	prog, err := goja.Compile(name, moduleHead+string(src)+moduleTail, false)
	if err != nil {
		var syn *goja.CompilerSyntaxError
		if errors.As(err, &syn) {
			return nil, scriptFault(fmt.Errorf("%s: does not compile: %s", name, syn.Error()))
		}
		return nil, scriptFault(fmt.Errorf("%s: does not compile: %v", name, err))
	}
	return &Script{Name: name, Kind: kind, prog: prog}, nil
}

// load evaluates the module in vm and returns module.exports.
func (s *Script) load(vm *goja.Runtime, require goja.Value) (goja.Value, error) {
	wrapper, err := vm.RunProgram(s.prog)
	if err != nil {
		return nil, err
	}
	fn, ok := goja.AssertFunction(wrapper)
	if !ok {
		return nil, fmt.Errorf("%s: module wrapper is not a function", s.Name)
	}
	module := vm.NewObject()
	exports := vm.NewObject()
	_ = module.Set("exports", exports)
	if _, err := fn(goja.Undefined(), exports, require, module, vm.ToValue(s.Name), vm.ToValue(filepath.Dir(s.Name))); err != nil {
		return nil, err
	}
	return module.Get("exports"), nil
}

// entry returns the function the script exports for its kind.
func (s *Script) entry(vm *goja.Runtime, exports goja.Value) (goja.Callable, error) {
	switch s.Kind {
	case ActionKind:
		var fn goja.Value
		if obj, ok := exports.(*goja.Object); ok {
			fn = obj.Get("onExecuteCredentialsExchange")
		}
		if f, ok := goja.AssertFunction(fn); ok {
			return f, nil
		}
		return nil, scriptFault(fmt.Errorf("%s: an action must export onExecuteCredentialsExchange: exports.onExecuteCredentialsExchange = async (event, api) => { ... }", s.Name))
	default:
		if f, ok := goja.AssertFunction(exports); ok {
			return f, nil
		}
		return nil, scriptFault(fmt.Errorf("%s: a hook must export a function: module.exports = function (client, scope, audience, context, cb) { ... }", s.Name))
	}
}

// newVM returns a runtime set up as every script expects: Node's globals and
// the Auth0 error classes, with the built-ins that can allocate without
// bound in one call capped (memguard.go).
func newVM() *goja.Runtime {
	vm, _ := newRuntime()
	return vm
}

// newRuntime is newVM, also returning the builder of the runtime's Node
// globals, for what else needs them (modules.enable).
func newRuntime() (*goja.Runtime, *globalsBuilder) {
	vm := goja.New()
	vm.SetMaxCallStackSize(maxCallStackSize)
	installAllocationCaps(vm)
	if _, err := vm.RunProgram(prelude); err != nil {
		panic("caddyhook: prelude failed: " + err.Error())
	}
	return vm, installNodeGlobals(vm)
}

// maxCallStackSize ends runaway recursion long before it can exhaust the
// goroutine's stack. goja's stack overflow cannot be caught by the script
// (no catch or finally runs), so the run fails and its runtime is dropped.
const maxCallStackSize = 4096
