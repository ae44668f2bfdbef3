package jsonobject

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzEncode holds Encode to json.Marshal: for the members of any JSON
// object (valid values, as every caller's are, each as it is written in
// the object, duplicates resolved to the last as the callers' scanners
// do), the same bytes. It holds PlainString to json.Marshal too, for every
// member name.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":"x"}`, `{"a":{"c": [1, 2]},"<":"&"}`, `{"\u2028":"\u2028","é":"é","q\"":"\\"}`,
		"{\"a\":\"\u2028\",\"b\":\"<script>\"}", `{"a":"eyJ.eyJ.x","b":null,"c":-1.5e3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m := map[string]json.RawMessage{}
		if json.Unmarshal(body, &m) != nil || m == nil {
			return
		}
		got, err := Encode(m)
		want, werr := json.Marshal(m)
		if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("Encode = %s, %v; json.Marshal = %s, %v", got, err, want, werr)
		}
		for name := range m {
			quoted, _ := json.Marshal(name)
			if PlainString(name) && string(quoted) != `"`+name+`"` {
				t.Fatalf("PlainString(%q), but json.Marshal writes %s", name, quoted)
			}
		}
	})
}
