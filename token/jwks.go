package token

import (
	"encoding/json"
	"errors"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// MergeJWKS returns upstream, a JWKS document, with keys added to its "keys"
// array. Upstream entries whose kid equals one of keys are replaced, and every
// other top-level member is kept. With a nil upstream the result holds keys
// alone. Only public members of keys are written.
func MergeJWKS(upstream []byte, keys []jwk.Key) ([]byte, error) {
	doc := map[string]json.RawMessage{}
	var entries []json.RawMessage
	if upstream != nil {
		if err := json.Unmarshal(upstream, &doc); err != nil {
			return nil, errors.New("upstream JWKS is not a JSON object")
		}
		if raw, ok := doc["keys"]; ok {
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, errors.New("upstream JWKS keys member is not an array")
			}
		} else {
			return nil, errors.New("upstream JWKS has no keys member")
		}
	}

	ours := make(map[string]bool, len(keys))
	for _, k := range keys {
		ours[k.KeyID()] = true
	}
	merged := make([]json.RawMessage, 0, len(entries)+len(keys))
	for _, e := range entries {
		var id struct {
			Kid string `json:"kid"`
		}
		if json.Unmarshal(e, &id) == nil && id.Kid != "" && ours[id.Kid] {
			continue
		}
		merged = append(merged, e)
	}
	for _, k := range keys {
		pub, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(pub)
		if err != nil {
			return nil, err
		}
		merged = append(merged, b)
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	doc["keys"] = b
	return json.Marshal(doc)
}
