package caddyhook

import (
	"fmt"
	"net/http"

	"github.com/dop251/goja"
)

// OAuth 2.0 error codes a hook or action can produce.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidScope   = "invalid_scope"
	CodeServerError    = "server_error"
)

// Error is a failed exchange as the client must see it: an OAuth error code,
// a description, and the HTTP status that goes with them.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Description)
}

// errorFor builds an Error for an OAuth error code; unknown codes are
// server errors, because an operator typo must not produce a 4xx that blames
// the client.
func errorFor(code, description string) *Error {
	switch code {
	case CodeInvalidRequest, CodeInvalidScope:
		return &Error{Status: http.StatusBadRequest, Code: code, Description: description}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeServerError, Description: description}
}

// errTimedOut is the error for a run that passed its time limit.
func errTimedOut() *Error { return errorFor(CodeServerError, "hook timed out") }

// errorNames maps the error classes Auth0 injects into every hook (matched by
// the error's name, as Auth0's compiler does) to OAuth error codes.
var errorNames = map[string]string{
	"InvalidRequestError": CodeInvalidRequest,
	"InvalidScopeError":   CodeInvalidScope,
	"ServerError":         CodeServerError,
}

// preludeSource defines the error classes. Auth0's compiler constructs them as
// (code, message); its documentation shows (message), so one argument is the
// message and two are code and message.
const preludeSource = `(function (g) {
	class BaseError extends Error {
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
	for (const c of [BaseError, InvalidRequestError, InvalidScopeError, ServerError]) {
		Object.defineProperty(g, c.name, { value: c, writable: true, configurable: true, enumerable: false });
	}
})(this);`

var prelude = goja.MustCompile("caddyhook:prelude", preludeSource, true)

// errorFromValue turns the error a hook passed to cb into an Error: the
// injected classes by name, anything else a server error whose description
// is the error's message (or the value itself, for cb('text')).
func errorFromValue(vm *goja.Runtime, v goja.Value) *Error {
	if obj, ok := v.(*goja.Object); ok {
		name := stringProp(vm, obj, "name")
		msg := stringProp(vm, obj, "message")
		if code, ok := errorNames[name]; ok {
			return errorFor(code, msg)
		}
		if msg == "" {
			msg = v.String()
		}
		return errorFor(CodeServerError, msg)
	}
	return errorFor(CodeServerError, v.String())
}

// errorFromThrow turns an exception or an interrupt from goja into an Error.
func errorFromThrow(vm *goja.Runtime, err error) *Error {
	switch e := err.(type) {
	case *goja.InterruptedError:
		if inner, ok := e.Value().(*Error); ok {
			return inner
		}
		return errTimedOut()
	case *goja.Exception:
		v := e.Value()
		if obj, ok := v.(*goja.Object); ok {
			if msg := stringProp(vm, obj, "message"); msg != "" {
				return errorFor(CodeServerError, msg)
			}
		}
		return errorFor(CodeServerError, v.String())
	case *goja.StackOverflowError:
		return errorFor(CodeServerError, "maximum call stack size exceeded")
	case *Error:
		return e
	}
	return errorFor(CodeServerError, err.Error())
}

func stringProp(vm *goja.Runtime, obj *goja.Object, name string) string {
	v := obj.Get(name)
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return ""
	}
	return v.String()
}
