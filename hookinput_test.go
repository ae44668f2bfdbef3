package credentialsexchange

import "testing"

func TestPreferredLanguage(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"en"}, "en"},
		{[]string{"fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"}, "fr-CH"},
		{[]string{"de;q=0.7, en-US;q=0.9"}, "en-US"},
		{[]string{"da, en-GB;q=0.8"}, "da"},
		{[]string{"en;q=0.5, fr;q=0.5"}, "en"},            // the first of equal weight
		{[]string{"*"}, ""},                               // no language stated
		{[]string{"de;q=0"}, ""},                          // "not acceptable"
		{[]string{"de;q=2, it;q=0.1"}, "it"},              // a weight out of range counts as 0
		{[]string{"<script>, es;q=0.3"}, "es"},            // malformed tags skipped
		{[]string{"zh-Hant-TW ;Q=0.8", "pt;q=0.9"}, "pt"}, // header lines combine
		{[]string{"x-toolongsubtag"}, ""},
	} {
		if got := preferredLanguage(tc.headers); got != tc.want {
			t.Errorf("preferredLanguage(%q) = %q, want %q", tc.headers, got, tc.want)
		}
	}
}
