package caddyhook

import (
	"strings"

	"github.com/dop251/goja"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogMessage caps one console message, so a script cannot flood the log.
const maxLogMessage = 4096

// installConsole routes console.* to log at the matching level.
func (r *run) installConsole(log *zap.Logger) {
	console := r.vm.NewObject()
	levels := map[string]zapcore.Level{
		"log": zapcore.InfoLevel, "info": zapcore.InfoLevel, "debug": zapcore.DebugLevel,
		"warn": zapcore.WarnLevel, "error": zapcore.ErrorLevel, "trace": zapcore.DebugLevel,
	}
	for name, level := range levels {
		level := level
		_ = console.Set(name, func(call goja.FunctionCall) goja.Value {
			if ce := log.Check(level, r.format(call.Arguments)); ce != nil {
				ce.Write(zap.String("source", "console."+name))
			}
			return goja.Undefined()
		})
	}
	_ = r.vm.Set("console", console)
}

// format joins console arguments roughly as Node's util.format does: strings
// as they are, everything else as JSON where it can be.
func (r *run) format(args []goja.Value) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if _, isObj := a.(*goja.Object); isObj {
			if _, isFn := goja.AssertFunction(a); !isFn {
				if raw, ok, err := r.toJSON(a); err == nil && ok {
					b.Write(raw)
					continue
				}
			}
		}
		b.WriteString(a.String())
		if b.Len() > maxLogMessage {
			break
		}
	}
	s := b.String()
	if len(s) > maxLogMessage {
		s = s[:maxLogMessage] + "…(truncated)"
	}
	return s
}
