package caddyhook

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"github.com/dop251/goja"
)

// OAuth 2.0 error codes a hook or action can produce.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidScope   = "invalid_scope"
	CodeServerError    = "server_error"
)

// Error is a failed exchange as the client must see it: an OAuth error code
// and a description. Which HTTP status answers it is the caller's business,
// as this package knows nothing of HTTP answers: CodeInvalidRequest and
// CodeInvalidScope are the client's errors, CodeServerError a failure of
// ours.
type Error struct {
	Code        string
	Description string
	// Where is where in the scripts the failure happened, for the
	// operator's log only: it is never sent to the client. Nil when the
	// failure has no place in a script (a time-out between runs, a denial
	// by an Auth0 error class, an internal error).
	Where *Location
}

// Location is where a script failed: the innermost frame of script code and
// the JavaScript stack, with goja's native (Go) frames left out, since they
// name Go functions and say nothing about the script.
type Location struct {
	File   string
	Line   int
	Column int
	// Stack is the JavaScript stack, one "at fn (file:line:col)" line per
	// frame, innermost first, at most maxStackFrames frames.
	Stack string
}

// maxStackFrames bounds Location.Stack: a deep recursion would otherwise put
// thousands of frames into one log line.
const maxStackFrames = 16

// ScriptError is a failure that is the script's own, found when it is
// compiled or loaded: it is too large or does not compile, its top level
// throws or runs past its time limit, or it exports no entry point. A
// caller tells it from a configuration problem (a missing file, an unknown
// policy) with errors.As; its text is the error's.
type ScriptError struct{ err error }

func (e *ScriptError) Error() string { return e.err.Error() }

func (e *ScriptError) Unwrap() error { return e.err }

func scriptFault(err error) error { return &ScriptError{err} }

func (e *Error) Error() string {
	return e.Code + ": " + e.Description
}

// errorFor builds an Error for an OAuth error code; unknown codes are
// server errors, because an operator typo must not produce a 4xx that blames
// the client.
func errorFor(code, description string) *Error {
	switch code {
	case CodeInvalidRequest, CodeInvalidScope:
		return &Error{Code: code, Description: description}
	}
	return &Error{Code: CodeServerError, Description: description}
}

// textError is an error that is only its text: the constant errors thrown
// to scripts (errExchangeEnded, errTooManyTimers …) and the reasons Go data
// cannot be handed to a script. Errors a caller tells apart keep a type of
// their own (scopeLimitError, errJSONTooLarge).
type textError string

func (e textError) Error() string { return string(e) }

// errTimedOut is the error for a run that passed its time limit.
func errTimedOut() *Error { return errorFor(CodeServerError, "hook timed out") }

// The descriptions of a failure whose value says nothing usable.
const (
	hookFailed   = "the hook failed"
	actionFailed = "the action failed"
	actionDenied = "the action denied the exchange"
)

// errorNames maps the error classes Auth0 injects into every hook (matched by
// the error's name, as Auth0's compiler does) to OAuth error codes.
// ExtensibilityUserError is the base class of the other three in Auth0's
// compiler (auth0/auth0-ext-compilers, lib/errors/ExtensibilityUserError.js),
// prepended to every hook with them; its name is what Auth0's server reads
// ("the main piece of data ... to determine what error was thrown"), and
// only the three subclasses name an OAuth error. The base class thrown
// itself is therefore a server error carrying its message: fail closed,
// never a 4xx that would blame the client.
var errorNames = map[string]string{
	"InvalidRequestError":    CodeInvalidRequest,
	"InvalidScopeError":      CodeInvalidScope,
	"ServerError":            CodeServerError,
	"ExtensibilityUserError": CodeServerError,
}

// preludeSource defines the error classes. Auth0's compiler constructs them as
// (code, message); its documentation shows (message), so one argument is the
// message and two are code and message. ExtensibilityUserError behaves as
// Auth0's: (message), named after the class it was constructed as, and the
// base of the others, so instanceof ExtensibilityUserError holds for them
// as on Auth0.
const preludeSource = `(function (g) {
	class ExtensibilityUserError extends Error {
		constructor(message) {
			super(message);
			this.name = this.constructor.name;
		}
	}
	class BaseError extends ExtensibilityUserError {
		constructor(code, message) {
			if (arguments.length < 2) { message = code; code = undefined; }
			super(message);
			this.code = code;
			this.name = this.constructor.name;
		}
	}
	class InvalidRequestError extends BaseError {}
	class InvalidScopeError extends BaseError {}
	class ServerError extends BaseError {}
	for (const c of [ExtensibilityUserError, BaseError, InvalidRequestError, InvalidScopeError, ServerError]) {
		Object.defineProperty(g, c.name, { value: c, writable: true, configurable: true, enumerable: false });
	}
})(this);`

var prelude = goja.MustCompile("caddyhook:prelude", preludeSource, true)

// Every value that comes back from a script is hostile: its getters throw,
// its prototype may be null (so it has no toString), a Proxy may stand in
// for it, and Symbols refuse conversion to strings. The functions below are
// the only way this package reads such a value for a message: they never
// panic, never call toString or valueOf, and read name and message only when
// they are primitives.

// maxDescription caps an error description taken from a script: a script
// could throw a string of a gigabyte.
const maxDescription = 1024

// protect runs f in a JavaScript frame of its own, so that a JavaScript
// exception, a time-out interrupt or a stack overflow raised by script code
// that f reaches (a getter, a Proxy trap) comes back as an error instead of a
// panic; f's own error is returned otherwise. It works both from Go, outside
// any script, and inside a native function. A panic that is not goja's (a
// bug in Go code) is not caught here: Engine.Run reports those.
func protect(vm *goja.Runtime, f func() error) (err error) {
	fn, _ := goja.AssertFunction(vm.ToValue(func(goja.FunctionCall) goja.Value {
		err = f()
		return goja.Undefined()
	}))
	if _, jsErr := fn(goja.Undefined()); jsErr != nil {
		if isUncatchable(gojaCause(jsErr)) {
			sawUncatchable.Store(vm, struct{}{})
		}
		return jsErr
	}
	return err
}

// sawUncatchable holds the runtimes in which protect caught a stack
// overflow or an interrupt. goja cannot unwind a stack overflow: the
// script's catch and finally blocks in between never ran, so its state is
// half-way through something, even when the caller of protect goes on (a
// description falls back to a default). Such a runtime must never serve
// another exchange; the worker checks and forgets it when the exchange
// ends (worker.go). It is package-level only because goja.Runtime has no
// slot for data of ours; an entry lives no longer than one exchange.
var sawUncatchable sync.Map // *goja.Runtime → struct{}

// guard runs f under protect and reports whether it finished.
func guard(vm *goja.Runtime, f func()) bool {
	return protect(vm, func() error { f(); return nil }) == nil
}

// isUncatchable reports whether err is a goja error that scripts cannot
// catch: a time-out interrupt or a stack overflow.
func isUncatchable(err error) bool {
	switch err.(type) {
	case *goja.InterruptedError, *goja.StackOverflowError:
		return true
	}
	return false
}

// rethrow turns err, from a goja call made inside a native function, into a
// panic goja understands: its own exceptions and interrupts as they are, any
// other error as a GoError the script can catch. A native function must
// never panic with a plain Go error: goja would let it crash the process.
func rethrow(vm *goja.Runtime, err error) {
	switch err.(type) {
	case *goja.Exception, *goja.InterruptedError, *goja.StackOverflowError:
		panic(err)
	}
	panic(vm.NewGoError(err))
}

// throwTypeError throws a TypeError whose message is msg, taken literally.
func throwTypeError(vm *goja.Runtime, msg string) {
	panic(vm.NewTypeError("%s", msg))
}

// primitiveText returns v as text when it is a string, number, boolean or
// BigInt, capped at max characters, and "" for anything else (objects,
// Symbols, undefined, null). It never runs script code.
func primitiveText(v goja.Value, max int) string {
	switch x := v.(type) {
	case nil, *goja.Object, *goja.Symbol:
		return ""
	case goja.String:
		if x.Length() > max {
			// One character more than fits, so that textcap.Cap marks the cut.
			return textcap.Cap(x.Substring(0, max+1).String(), max)
		}
		return textcap.Cap(x.String(), max)
	}
	if goja.IsUndefined(v) || goja.IsNull(v) {
		return ""
	}
	return textcap.Cap(v.String(), max)
}

// scriptString returns v when it is a primitive string; ok is false for
// anything else. It never runs script code.
func scriptString(v goja.Value) (string, bool) {
	if s, ok := v.(goja.String); ok {
		return s.String(), true
	}
	return "", false
}

// errorFields reads the name and message of a script's error value, as
// primitives; a getter that throws, a Proxy that fails or a value that is
// not a primitive leaves the field empty.
func errorFields(vm *goja.Runtime, v goja.Value) (name, message string) {
	obj, ok := v.(*goja.Object)
	if !ok {
		return "", primitiveText(v, maxDescription)
	}
	err := protect(vm, func() error { message = primitiveText(obj.Get("message"), maxDescription); return nil })
	if err != nil && isUncatchable(gojaCause(err)) {
		// Time is up (or the stack is): run no more script code. From Go,
		// goja has already cleared the interrupt, so nothing would stop a
		// getter that loops.
		return "", ""
	}
	guard(vm, func() { name = primitiveText(obj.Get("name"), 64) })
	return name, message
}

// describe is the text of a value a script threw, rejected with or passed as
// an error: its message, else its name, else the value itself when it is a
// primitive, else fallback. It never panics.
func describe(vm *goja.Runtime, v goja.Value, fallback string) string {
	name, msg := errorFields(vm, v)
	if msg == "" {
		msg = name
	}
	if msg = cleanDescription(msg); msg == "" {
		return fallback
	}
	return msg
}

// errorFromValue turns the error a hook passed to cb into an Error: the
// injected classes by name, anything else a server error whose description
// is the error's message (or the value itself, for cb('text')). It never
// panics.
func errorFromValue(vm *goja.Runtime, v goja.Value, fallback string) *Error {
	name, msg := errorFields(vm, v)
	if code, ok := errorNames[name]; ok {
		out := errorFor(code, cleanDescription(msg))
		if out.Code == CodeServerError {
			out.Where = valueLocation(vm, v)
		}
		return out
	}
	if msg == "" {
		msg = name
	}
	if msg = cleanDescription(msg); msg == "" {
		msg = fallback
	}
	out := errorFor(CodeServerError, msg)
	out.Where = valueLocation(vm, v)
	return out
}

// errorFromThrow turns an exception or an interrupt from goja into an Error.
// It never panics.
func errorFromThrow(vm *goja.Runtime, err error, fallback string) *Error {
	switch e := gojaCause(err).(type) {
	case *goja.InterruptedError:
		// Where the script was when it was stopped: the loop that ran out
		// the time, or the allocation past the memory limit.
		if inner, ok := e.Value().(*Error); ok {
			return located(inner, stackLocation(e.Stack()))
		}
		return located(errTimedOut(), stackLocation(e.Stack()))
	case *goja.StackOverflowError:
		return located(errorFor(CodeServerError, "maximum call stack size exceeded"), stackLocation(e.Stack()))
	case *goja.Exception:
		out := errorFor(CodeServerError, describe(vm, e.Value(), fallback))
		if loc := stackLocation(e.Stack()); loc != nil {
			out.Where = loc
		} else {
			out.Where = valueLocation(vm, e.Value())
		}
		return out
	case *Error:
		return e
	}
	// Not goja's: its text is the description, but never Go internals
	// (a goja exception's text ends with its first frame, which may name a
	// Go function).
	if msg := cleanDescription(err.Error()); msg != "" {
		return errorFor(CodeServerError, msg)
	}
	return errorFor(CodeServerError, fallback)
}

// located sets where on a copy of err; the *Error values made once and
// shared must not be written.
func located(err *Error, where *Location) *Error {
	if where == nil {
		return err
	}
	c := *err
	c.Where = where
	return &c
}

// stackLocation is the Location of goja's stack frames: the first frame of
// script code, and the script frames as text. It runs no script code. Nil
// when no frame is script code.
func stackLocation(frames []goja.StackFrame) *Location {
	var st stackText
	for i := range frames {
		f := &frames[i]
		if f.SrcName() == "<native>" {
			continue // a Go function: its name is Go internals
		}
		p := f.Position()
		if !st.add(f.FuncName(), p.Filename, p.Line, p.Column) {
			break
		}
	}
	return st.location()
}

// stackFrameLine matches a frame line of a JavaScript error's stack as goja
// writes it: "at fn (file:line:col(pc))" or "at file:line:col(pc)".
var stackFrameLine = regexp.MustCompile(`^\s*at (?:(.*) \()?(.+):(\d+):(\d+)\(\d+\)\)?$`)

// valueLocation is the Location an error value's own stack property gives,
// for an error that was passed (cb(err), a rejection) rather than thrown:
// its stack is where it was made. The property is read only as a
// primitive, under protect; native frames are left out. Nil without a
// usable stack.
func valueLocation(vm *goja.Runtime, v goja.Value) *Location {
	obj, ok := v.(*goja.Object)
	if !ok || vm == nil {
		return nil
	}
	var stack, head string
	headKnown := false
	if !guard(vm, func() {
		stack, _ = scriptString(obj.Get("stack"))
		head, headKnown = errorHead(obj)
	}) || stack == "" {
		return nil
	}
	// The stack starts with the error's name and message, which may hold
	// any text (a client's, passed to new Error), lines shaped like frames
	// included: frames are read only after it.
	if headKnown && strings.HasPrefix(stack, head+"\n") {
		stack = stack[len(head)+1:]
	}
	if len(stack) > 16*1024 {
		stack = stack[:16*1024]
	}
	var st stackText
	for _, line := range strings.Split(strings.ToValidUTF8(stack, "\uFFFD"), "\n") {
		m := stackFrameLine.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			continue // the message line, or a native frame
		}
		l, _ := strconv.Atoi(m[3])
		c, _ := strconv.Atoi(m[4])
		if !st.add(m[1], m[2], l, c) {
			break
		}
	}
	return st.location()
}

// errorHead is the first line goja writes into an error's stack (the
// text Error.prototype.toString gives), when name and message are strings
// or undefined; ok is false otherwise. Call it under guard: a getter runs.
func errorHead(obj *goja.Object) (head string, ok bool) {
	field := func(name, undefined string) (string, bool) {
		v := obj.Get(name)
		if v == nil || goja.IsUndefined(v) {
			return undefined, true
		}
		return scriptString(v)
	}
	name, okName := field("name", "Error")
	msg, okMsg := field("message", "")
	switch {
	case !okName || !okMsg:
		return "", false
	case name == "":
		return msg, true
	case msg == "":
		return name, true
	}
	return name + ": " + msg, true
}

// stackText gathers the script frames of a stack into a Location.
type stackText struct {
	loc *Location
	b   strings.Builder
	n   int
}

// add appends one frame, unless it belongs to the runtime's own programs
// ("caddyhook:prelude" and the like), which say nothing about the script.
// A first-line column is counted from the script's own text, not from the
// module wrapper compiled in front of it. It returns false once the stack
// is full.
func (s *stackText) add(fn, file string, line, col int) bool {
	if file == "" || strings.HasPrefix(file, "caddyhook:") {
		return true
	}
	if line == 1 && col > len(moduleHead) {
		col -= len(moduleHead)
	}
	file = textcap.Cap(file, 256) // a stack property's text is the script's
	if s.loc == nil {
		s.loc = &Location{File: file, Line: line, Column: col}
	}
	if s.n == maxStackFrames {
		s.b.WriteString("\n    …")
		return false
	}
	if s.n > 0 {
		s.b.WriteByte('\n')
	}
	if fn == "" {
		fn = "<anonymous>"
	}
	fmt.Fprintf(&s.b, "    at %s (%s:%d:%d)", textcap.Cap(fn, 128), file, line, col)
	s.n++
	return true
}

func (s *stackText) location() *Location {
	if s.loc != nil {
		s.loc.Stack = strings.ToValidUTF8(s.b.String(), "\uFFFD")
	}
	return s.loc
}

// goDump matches what goja puts in some of its own messages when it cannot
// convert an object: a Go struct dump with pointers, which must reach
// neither a client nor a log.
var (
	gojaConvert = regexp.MustCompile(`(?s)Could not convert .* to primitive`)
	goStruct    = regexp.MustCompile(`&\{[^{}]*\}`)
	goType      = regexp.MustCompile(`\s*\(\*?goja\.[A-Za-z]+\)`)
	goPointer   = regexp.MustCompile(`0x[0-9a-f]{8,}`)
	// goFrame is a goja stack frame of a Go function, as an exception's
	// text ends with one: " at github.com/x/y.(*T).f-fm (native)".
	goFrame = regexp.MustCompile(`\s*\bat \S+ ?\(native\)`)
)

// cleanDescription makes text from a script fit for an error description:
// valid UTF-8, no Go struct dumps, at most maxDescription bytes.
func cleanDescription(s string) string {
	if len(s) > 4*maxDescription {
		s = s[:4*maxDescription]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.Contains(s, "Could not convert") {
		s = gojaConvert.ReplaceAllString(s, "Cannot convert object to primitive value")
	}
	if strings.Contains(s, "native)") {
		s = goFrame.ReplaceAllString(s, "")
	}
	// goja's class for Go errors thrown into scripts: its name is Go
	// internals to a client.
	s = strings.ReplaceAll(s, "GoError: ", "")
	if strings.Contains(s, "&{") || strings.Contains(s, "goja.") || strings.Contains(s, "0x") {
		s = goStruct.ReplaceAllString(s, "[object]")
		s = goType.ReplaceAllString(s, "")
		s = goPointer.ReplaceAllString(s, "0x…")
	}
	return textcap.Cap(strings.TrimSpace(s), maxDescription)
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
