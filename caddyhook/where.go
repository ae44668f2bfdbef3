package caddyhook

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/dop251/goja"
)

// maxWhereFrames bounds the stack kept in Error.Where.
const maxWhereFrames = 10

// exceptionWhere is the script stack of an exception, innermost first, one
// "at <function> (<file>:<line>:<column>)" line per frame: frames of the
// operator's scripts and modules only, since the natives' and the
// prelude's say nothing to the operator and name Go internals. "" when no
// frame is in a script.
func exceptionWhere(ex *goja.Exception) string {
	var b strings.Builder
	n := 0
	for _, f := range ex.Stack() {
		p := f.Position()
		if p.Filename == "" || strings.HasPrefix(p.Filename, "caddyhook:") {
			continue
		}
		if n == maxWhereFrames {
			b.WriteString("\n…")
			break
		}
		col := p.Column
		if p.Line == 1 && col > len(moduleHead) {
			// The module wrapper's head shares the script's first line.
			col -= len(moduleHead)
		}
		if n > 0 {
			b.WriteByte('\n')
		}
		n++
		b.WriteString("at ")
		if fn := f.FuncName(); fn != "" && fn != "<anonymous>" {
			b.WriteString(validUTF8(capText(fn, 128)) + " (")
		} else {
			b.WriteString("<anonymous> (")
		}
		b.WriteString(validUTF8(p.Filename) + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(col) + ")")
	}
	return b.String()
}

// stackFrameLine matches a frame of goja's Error.prototype.stack text:
// "\tat fn (file:line:col(pc))" or "\tat file:line:col(pc)".
var stackFrameLine = regexp.MustCompile(`^\tat (?:(.+) \()?(.+):(\d+):(\d+)\(\d+\)\)?$`)

// valueWhere is exceptionWhere for a value a promise was rejected with (an
// async hook or action that threw): the script frames of its stack
// property when it is an Error object. Reading the property may run a
// getter the script defined; it is read as describe reads message, and
// only while the run is alive. It never panics.
func (r *run) valueWhere(v goja.Value) string {
	obj, ok := v.(*goja.Object)
	if !ok || !r.alive() {
		return ""
	}
	var stack string
	guard(r.vm, func() { stack = primitiveText(obj.Get("stack"), 16*1024) })
	var b strings.Builder
	n := 0
	for _, line := range strings.Split(stack, "\n") {
		m := stackFrameLine.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(m[2], "caddyhook:") {
			continue
		}
		if n == maxWhereFrames {
			b.WriteString("\n…")
			break
		}
		lineNo, _ := strconv.Atoi(m[3])
		col, _ := strconv.Atoi(m[4])
		if lineNo == 1 && col > len(moduleHead) {
			col -= len(moduleHead)
		}
		if n > 0 {
			b.WriteByte('\n')
		}
		n++
		fn := m[1]
		if fn == "" {
			fn = "<anonymous>"
		}
		b.WriteString("at " + capText(fn, 128) + " (" + capText(m[2], 1024) + ":" + strconv.Itoa(lineNo) + ":" + strconv.Itoa(col) + ")")
	}
	return validUTF8(b.String())
}
