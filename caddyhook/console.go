package caddyhook

import (
	"strconv"
	"strings"
	"time"

	"github.com/caddyhook/caddyhook/internal/textcap"
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
// script running when it calls it. Labels of console.time and count belong
// to the runtime, as they belong to the process in Node.
func (w *worker) installConsole() {
	vm := w.vm
	console := vm.NewObject()
	// emit logs one console line of the run under way, within its line
	// budget.
	emit := func(level zapcore.Level, source string, text func(r *run) string) {
		if r := w.run; r != nil {
			r.emit(level, source, text)
		}
	}
	levels := map[string]zapcore.Level{
		"log": zapcore.InfoLevel, "info": zapcore.InfoLevel, "debug": zapcore.DebugLevel,
		"warn": zapcore.WarnLevel, "error": zapcore.ErrorLevel, "trace": zapcore.DebugLevel,
		// Node's dir and table print their first argument; group and
		// groupCollapsed their label, without indenting what follows.
		"dir": zapcore.InfoLevel, "table": zapcore.InfoLevel,
		"group": zapcore.InfoLevel, "groupCollapsed": zapcore.InfoLevel,
	}
	for name, level := range levels {
		define(vm, console, name, func(call goja.FunctionCall) goja.Value {
			args := call.Arguments
			if (name == "dir" || name == "table") && len(args) > 1 {
				args = args[:1]
			}
			if len(args) > 0 || !strings.HasPrefix(name, "group") {
				emit(level, name, func(r *run) string { return r.format(args) })
			}
			return goja.Undefined()
		})
	}
	define(vm, console, "groupEnd", func(goja.FunctionCall) goja.Value { return goja.Undefined() })
	w.consoleCounters(console, emit)
	// Defined, not set: a setter a script put on the global object must not
	// run here, outside any script.
	_ = vm.GlobalObject().DefineDataProperty("console", console, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
}

// emit logs one console line of the run, within its bounds; text is only
// built when the line will be written.
func (r *run) emit(level zapcore.Level, source string, text func(r *run) string) {
	log := r.log
	if !log.enabled(level) {
		return
	}
	if r.consoleLines >= maxConsoleLines {
		r.consoleDropped++
		return
	}
	r.consoleLines++
	if ce := log.logger().Check(level, textcap.Cap(text(r), maxLogMessage)); ce != nil {
		ce.Write(zap.String("source", "console."+source))
	}
}

// maxConsoleLabels bounds the labels console.time and console.count keep,
// so that a script counting under ever new labels cannot grow them without
// end; past it, a new label is not kept (count says 1, timeEnd finds none).
// maxLabelLength bounds one label kept.
const (
	maxConsoleLabels = 1000
	maxLabelLength   = 256
)

// consoleCounters adds Node's console.time, timeEnd, timeLog, count,
// countReset and assert, which log through emit as console.log does.
func (w *worker) consoleCounters(console *goja.Object, emit func(zapcore.Level, string, func(*run) string)) {
	vm := w.vm
	timers, counts := map[string]time.Time{}, map[string]int{}
	// label is Node's `${label}` with 'default' for undefined: a Symbol
	// throws a TypeError to the script, an object's toString runs.
	label := func(v goja.Value) string {
		if goja.IsUndefined(v) {
			return "default"
		}
		s := toJSString(vm, v)
		if s.Length() > maxLabelLength {
			s = s.Substring(0, maxLabelLength)
		}
		return s.String()
	}
	elapsed := func(start time.Time) string {
		return strconv.FormatFloat(float64(time.Since(start).Microseconds())/1000, 'f', 3, 64) + "ms"
	}
	warn := func(source, text string) { emit(zapcore.WarnLevel, source, func(*run) string { return text }) }
	define(vm, console, "time", func(call goja.FunctionCall) goja.Value {
		l := label(call.Argument(0))
		if _, ok := timers[l]; ok {
			warn("time", "Warning: Label '"+l+"' already exists for console.time()")
		} else if len(timers) < maxConsoleLabels {
			timers[l] = time.Now()
		}
		return goja.Undefined()
	})
	timeEnd := func(source string, end bool) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			l := label(call.Argument(0))
			start, ok := timers[l]
			if !ok {
				warn(source, "Warning: No such label '"+l+"' for console."+source+"()")
				return goja.Undefined()
			}
			if end {
				delete(timers, l)
			}
			var data []goja.Value
			if !end && len(call.Arguments) > 1 {
				data = call.Arguments[1:]
			}
			emit(zapcore.InfoLevel, source, func(r *run) string {
				text := l + ": " + elapsed(start)
				if len(data) > 0 {
					text += " " + r.format(data)
				}
				return text
			})
			return goja.Undefined()
		}
	}
	define(vm, console, "timeEnd", timeEnd("timeEnd", true))
	define(vm, console, "timeLog", timeEnd("timeLog", false))
	define(vm, console, "count", func(call goja.FunctionCall) goja.Value {
		l := label(call.Argument(0))
		n := counts[l] + 1
		if _, ok := counts[l]; ok || len(counts) < maxConsoleLabels {
			counts[l] = n
		}
		emit(zapcore.InfoLevel, "count", func(*run) string { return l + ": " + strconv.Itoa(n) })
		return goja.Undefined()
	})
	define(vm, console, "countReset", func(call goja.FunctionCall) goja.Value {
		l := label(call.Argument(0))
		if _, ok := counts[l]; !ok {
			warn("countReset", "Warning: Count for '"+l+"' does not exist")
		} else {
			counts[l] = 0
		}
		return goja.Undefined()
	})
	define(vm, console, "assert", func(call goja.FunctionCall) goja.Value {
		if call.Argument(0).ToBoolean() {
			return goja.Undefined()
		}
		data := call.Arguments[min(1, len(call.Arguments)):]
		emit(zapcore.ErrorLevel, "assert", func(r *run) string {
			if len(data) == 0 {
				return "Assertion failed"
			}
			return "Assertion failed: " + r.format(data)
		})
		return goja.Undefined()
	})
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
	return textcap.Cap(b.String(), maxLogMessage)
}

func (r *run) formatOne(a goja.Value, room int) string {
	room = max(room, 1)
	switch v := a.(type) {
	case *goja.Symbol:
		return "Symbol(" + textcap.Cap(v.String(), room) + ")"
	case *goja.Object:
		text := "[object]"
		if !r.alive() {
			return text
		}
		guard(r.vm, func() {
			if _, isFn := goja.AssertFunction(v); !isFn {
				s, err := r.stringify(goja.Undefined(), v)
				if err != nil && isUncatchable(gojaCause(err)) {
					panic(err) // guard records it: the runtime is not reused
				}
				if err == nil {
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
