package textcap

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCap(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456…"},
		{"ééééé", 6, "é…"},   // é is 2 bytes: no half character
		{"abc", 0, "…"},      // the mark alone when nothing fits
		{"日本語テキスト", 8, "日…"}, // 3-byte characters
	} {
		got := Cap(tc.s, tc.max)
		if got != tc.want {
			t.Errorf("Cap(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Cap(%q, %d) = %q is not UTF-8", tc.s, tc.max, got)
		}
		if len(got) > tc.max && got != "…" {
			t.Errorf("Cap(%q, %d) = %d bytes", tc.s, tc.max, len(got))
		}
	}
	if got := Cap(strings.Repeat("x", 1<<20), 1024); len(got) != 1024 {
		t.Errorf("a long text cut to %d bytes, want 1024", len(got))
	}
}
