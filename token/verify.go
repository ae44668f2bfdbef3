package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Token is a decoded JWT access token. Claims keeps every claim's JSON as the
// upstream wrote it, so that re-signing changes only what the hook changed.
type Token struct {
	Alg    string
	KeyID  string
	Type   string // the header "typ", such as "at+jwt"; empty when absent
	Claims map[string]json.RawMessage
}

// Expiry returns the token's exp claim.
func (t *Token) Expiry() (time.Time, bool) {
	exp, ok, err := numericDate(t.Claims, "exp")
	return exp, ok && err == nil
}

// KeyProvider finds the keys that may have signed a token.
type KeyProvider interface {
	// LookupKeys returns the candidate public keys for kid, which may be
	// empty when the token header names none.
	LookupKeys(ctx context.Context, kid string) ([]jwk.Key, error)
}

// Verifier checks upstream access tokens.
type Verifier struct {
	// Keys verifies signatures. Nil skips signature verification, which is
	// only ever done on the operator's explicit insecure_skip_verify.
	Keys KeyProvider
	// Leeway tolerates clock skew when checking exp and nbf.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// ErrNotJWT is returned for an access token that is not a compact JWS.
var ErrNotJWT = errors.New("access token is not a JWT (compact JWS)")

// Verify decodes compact, checks its algorithm, signature, exp and nbf, and
// returns its header facts and claims. It refuses "none" and HMAC algorithms
// whatever the key source, so a public key can never be used as an HMAC
// secret.
func (v *Verifier) Verify(ctx context.Context, compact string) (*Token, error) {
	if strings.Count(compact, ".") != 2 {
		return nil, ErrNotJWT
	}
	var (
		tok     *Token
		payload []byte
		err     error
	)
	if v.Keys == nil {
		tok, payload, err = parseUnverified(compact)
	} else {
		tok, payload, err = v.verifySignature(ctx, compact)
	}
	if err != nil {
		return nil, err
	}
	// Unmarshal, not a Decoder: no read buffer per token, and data after
	// the object is refused rather than ignored.
	if err := json.Unmarshal(payload, &tok.Claims); err != nil || tok.Claims == nil {
		return nil, errors.New("token payload is not a JSON object")
	}
	if err := v.checkTimes(tok.Claims); err != nil {
		return nil, err
	}
	return tok, nil
}

// checkHeader reads the facts of a parsed JWS that Verify depends on, and
// refuses what it must: more than one signature, an algorithm that is not
// asymmetric, critical extensions, b64.
func checkHeader(msg *jws.Message) (*Token, jwa.SignatureAlgorithm, error) {
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return nil, "", ErrNotJWT
	}
	hdr := sigs[0].ProtectedHeaders()
	alg := hdr.Algorithm()
	if !asymmetricAlgorithms[alg] {
		return nil, "", fmt.Errorf("token algorithm %q is refused: only RSA, ECDSA and EdDSA signatures are accepted", alg)
	}
	if crit := hdr.Critical(); crit != nil {
		// RFC 7515 §4.1.11: extensions listed in crit must be understood,
		// and this verifier understands none (b64=false would even change
		// what the signature covers).
		return nil, "", fmt.Errorf("token header lists critical extensions %q that are not understood", crit)
	}
	if _, ok := hdr.Get("b64"); ok {
		// jwx honours b64 even outside crit (RFC 7797 §6 requires it
		// there), and b64=false makes the signature cover the raw payload.
		return nil, "", errors.New("token header has a b64 member")
	}
	return &Token{Alg: alg.String(), KeyID: hdr.KeyID(), Type: hdr.Type()}, alg, nil
}

// parseUnverified reads a token without checking its signature, for
// insecure_skip_verify; the header rules still apply.
func parseUnverified(compact string) (*Token, []byte, error) {
	msg, err := jws.Parse([]byte(compact), jws.WithCompact())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotJWT, err)
	}
	tok, _, err := checkHeader(msg)
	if err != nil {
		return nil, nil, err
	}
	return tok, msg.Payload(), nil
}

// verifySignature parses and verifies the token in one pass of jws.Verify:
// the header is checked, and the keys chosen, in its key provider, which
// sees the message jws.Verify parsed. (Parsing first with jws.Parse, as this
// did, read every token twice.) The algorithm each key is tried with is the
// header's, once checkHeader accepted it.
func (v *Verifier) verifySignature(ctx context.Context, compact string) (*Token, []byte, error) {
	var (
		tok       *Token
		alg       jwa.SignatureAlgorithm
		headerErr error
		lookupErr error
		tried     int
	)
	provider := jws.KeyProviderFunc(func(ctx context.Context, sink jws.KeySink, _ *jws.Signature, msg *jws.Message) error {
		if tok, alg, headerErr = checkHeader(msg); headerErr != nil {
			return headerErr
		}
		keys, err := v.Keys.LookupKeys(ctx, tok.KeyID)
		if err != nil {
			lookupErr = fmt.Errorf("looking up upstream keys: %w", err)
			return lookupErr
		}
		for _, k := range keys {
			if ka := k.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
				continue
			}
			if !keyAllows(k, alg) {
				continue
			}
			tried++
			sink.Key(alg, k)
		}
		return nil
	})
	// WithCompact: jwx otherwise also reads the JSON serialization, which
	// the dot count above does not keep out.
	payload, err := jws.Verify([]byte(compact), jws.WithCompact(), jws.WithKeyProvider(provider), jws.WithContext(ctx))
	switch {
	case err == nil:
		return tok, payload, nil
	case headerErr != nil:
		return nil, nil, headerErr
	case lookupErr != nil:
		return nil, nil, lookupErr
	case tok == nil: // jws.Verify could not parse it
		return nil, nil, fmt.Errorf("%w: %v", ErrNotJWT, err)
	case tried == 0:
		return nil, nil, fmt.Errorf("no upstream key fits the token (kid %q, alg %s)", tok.KeyID, alg)
	}
	return nil, nil, fmt.Errorf("token signature does not verify against the upstream keys (kid %q, alg %s)", tok.KeyID, alg)
}

func (v *Verifier) checkTimes(claims map[string]json.RawMessage) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("token has no exp claim")
	}
	if !t.Before(exp.Add(v.Leeway)) {
		return fmt.Errorf("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return err
	}
	if ok && t.Add(v.Leeway).Before(nbf) {
		return fmt.Errorf("token is not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	return nil
}

// The NumericDate range this verifier reads: 0001-01-01 to 9999-12-31 UTC.
const (
	minNumericDate = -62135596800
	maxNumericDate = 253402300799
)

func numericDate(claims map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false, fmt.Errorf("token claim %s is not a number", name)
	}
	// Clamp to years 1 to 9999 before converting: int64(1e19) overflows to
	// a date in the distant past, which would make an nbf of 1e19 pass.
	f = max(minNumericDate, min(f, maxNumericDate))
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// StaticKeys is a fixed list of upstream public keys, as read from
// upstream_key.
type StaticKeys []jwk.Key

// NewStaticKeys keeps the public parts of keys that can verify signatures.
func NewStaticKeys(keys []jwk.Key) (StaticKeys, error) {
	out, err := verificationKeys(keys)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no signature verification key found")
	}
	return out, nil
}

// verificationKeys returns the public parts of keys, skipping keys meant for
// encryption. err names the first key that cannot sign or verify at all
// (symmetric, or of an unsupported type or size); out holds the rest, so a
// caller that must tolerate such keys (a remote JWKS) can ignore err.
func verificationKeys(keys []jwk.Key) (out []jwk.Key, err error) {
	out = make([]jwk.Key, 0, len(keys))
	for _, k := range keys {
		if k.KeyUsage() == string(jwk.ForEncryption) {
			continue
		}
		if _, unfit := algorithmsFor(k); unfit != nil {
			if err == nil {
				err = unfit
			}
			continue
		}
		pub, perr := k.PublicKey()
		if perr != nil {
			if err == nil {
				err = perr
			}
			continue
		}
		out = append(out, pub)
	}
	return out, err
}

// LookupKeys returns the keys whose kid is kid, plus the keys without one.
func (s StaticKeys) LookupKeys(_ context.Context, kid string) ([]jwk.Key, error) {
	return matchKID(s, kid), nil
}

func matchKID(keys []jwk.Key, kid string) []jwk.Key {
	if kid == "" {
		return keys
	}
	var out []jwk.Key
	for _, k := range keys {
		if k.KeyID() == "" || k.KeyID() == kid {
			out = append(out, k)
		}
	}
	return out
}
