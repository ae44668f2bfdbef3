// Package textcap cuts text that goes into logs, errors and OAuth answers
// to a bound, for the three packages of the module that quote text others
// chose (a script, the upstream, a client).
package textcap

import "unicode/utf8"

// mark ends a cut text.
const mark = "…"

// Cap returns s when it is at most max bytes, and otherwise its longest
// prefix that ends at a character boundary and, with "…" after it, is at
// most max bytes: the result is never longer than max (nor than "…").
func Cap(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(mark)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
