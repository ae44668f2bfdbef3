package caddyhook

import (
	"strings"

	"github.com/dop251/goja"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogMessage caps one console message, so a script cannot flood the log.
const maxLogMessage = 4096

// maxConsoleLines caps the console lines one run may log; the rest are
// counted and reported in one line at the end of the run.
const maxConsoleLines = 1000

// installConsole routes console.* to the log of the script running now, at
// the matching level. It is installed once per runtime: a script that kept
// console.log (or bound it) at its top level logs under the exchange and
// script running when it calls it.
func (w *worker) installConsole() {
	vm := w.vm
	console := vm.NewObject()
	levels := map[string]zapcore.Level{
		"log": zapcore.InfoLevel, "info": zapcore.InfoLevel, "debug": zapcore.DebugLevel,
		"warn": zapcore.WarnLevel, "error": zapcore.ErrorLevel, "trace": zapcore.DebugLevel,
	}
	for name, level := range levels {
		define(vm, console, name, func(call goja.FunctionCall) goja.Value {
			if r := w.run; r != nil {
				r.console(name, level, call.Arguments)
			}
			return goja.Undefined()
		})
	}
	// Defined, not set: a setter a script put on the global object must not
	// run here, outside any script.
	_ = vm.GlobalObject().DefineDataProperty("console", console, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
}

// console logs one console call of the run, within its bounds.
func (r *run) console(name string, level zapcore.Level, args []goja.Value) {
	log := r.log
	if !log.Core().Enabled(level) {
		return
	}
	if r.consoleLines >= maxConsoleLines {
		r.consoleDropped++
		return
	}
	r.consoleLines++
	if ce := log.Check(level, r.format(args)); ce != nil {
		ce.Write(zap.String("source", "console."+name))
	}
}

// format joins console arguments roughly as Node's util.format does: strings
// as they are, everything else as JSON where it can be. It never throws:
// a value that cannot be shown (a getter throws, a Proxy fails, a null
// prototype leaves it without toString) shows as [object].
func (r *run) format(args []goja.Value) string {
	var b strings.Builder
	for i, a := range args {
		if b.Len() > maxLogMessage {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.formatOne(a, maxLogMessage-b.Len()+1))
	}
	return capText(b.String(), maxLogMessage)
}

func (r *run) formatOne(a goja.Value, room int) string {
	room = max(room, 1)
	switch v := a.(type) {
	case *goja.Symbol:
		return "Symbol(" + capText(v.String(), room) + ")"
	case *goja.Object:
		text := "[object]"
		if !r.alive() {
			return text
		}
		guard(r.vm, func() {
			if _, isFn := goja.AssertFunction(v); !isFn {
				if s, err := r.stringify(goja.Undefined(), v); err == nil {
					if str := primitiveText(s, room); str != "" {
						text = str
						return
					}
				}
			}
			if str := primitiveText(v.ToString(), room); str != "" {
				text = str
			}
		})
		return text
	}
	if goja.IsUndefined(a) {
		return "undefined"
	}
	if goja.IsNull(a) {
		return "null"
	}
	return primitiveText(a, room)
}
