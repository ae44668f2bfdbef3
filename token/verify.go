package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
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
	// Issuer, when set, is the value every token's iss claim must equal:
	// the upstream's issuer, so that a token another issuer signed with a
	// key the upstream's JWKS also holds (or, with insecure_skip_verify,
	// any token) is not taken for the upstream's. Empty skips the check.
	Issuer string
}

// errNotJWT is returned for an access token that is not a compact JWS.
var errNotJWT = errors.New("access token is not a JWT (compact JWS)")

// The reasons Verify fails for, as FailureReason gives them: a fixed set,
// so that a metric labelled with them stays bounded.
const (
	reasonMalformed       = "malformed"        // not a compact JWS, or its payload not a JSON object
	reasonHeader          = "header"           // a header the verifier refuses (alg none or HMAC, crit, …)
	reasonKeysUnavailable = "keys_unavailable" // the upstream's keys could not be had
	reasonUnknownKey      = "unknown_key"      // no upstream key fits the token's kid and alg
	reasonBadSignature    = "bad_signature"    // the signature does not verify
	reasonExpired         = "expired"          // exp has passed
	reasonNotYetValid     = "not_yet_valid"    // nbf is still to come
	reasonClaims          = "claims"           // no exp, or a date claim that is not a number
	reasonIssuer          = "issuer"           // iss missing or not the upstream's issuer
	reasonOther           = "other"            // anything else
)

// reasonError tags a verification error with its reason; its text is the
// error's own.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

func reasoned(reason string, err error) error { return &reasonError{reason, err} }

// FailureReason is the reason, one of the Reason* constants, that an error
// of Verify stands for; reasonOther for any other error.
func FailureReason(err error) string {
	var r *reasonError
	if errors.As(err, &r) {
		return r.reason
	}
	return reasonOther
}

// Verify decodes compact, checks its algorithm, signature, exp and nbf, and
// returns its header facts and claims. It refuses "none" and HMAC algorithms
// whatever the key source, so a public key can never be used as an HMAC
// secret.
func (v *Verifier) Verify(ctx context.Context, compact string) (*Token, error) {
	tok, payload, err := v.verifyJWS(ctx, compact)
	if err != nil {
		return nil, err
	}
	// parseClaims is json.Unmarshal into the map, without the reflection:
	// data after the object is refused rather than ignored.
	claims, ok := parseClaims(payload)
	if !ok {
		return nil, reasoned(reasonMalformed, errors.New("token payload is not a JSON object"))
	}
	tok.Claims = claims
	if err := v.checkIssuer(tok.Claims); err != nil {
		return nil, reasoned(reasonIssuer, err)
	}
	if err := v.checkTimes(tok.Claims); err != nil {
		return nil, err
	}
	return tok, nil
}

// checkIssuer compares the iss claim with Issuer exactly, as RFC 9068 §4
// and OpenID Connect Core §3.1.3.7 compare it: no normalisation, so that a
// trailing slash or a different case is another issuer.
func (v *Verifier) checkIssuer(claims map[string]json.RawMessage) error {
	if v.Issuer == "" {
		return nil
	}
	raw, ok := claims["iss"]
	if !ok {
		return fmt.Errorf("token has no iss claim; expected issuer %q", v.Issuer)
	}
	var iss string
	if err := json.Unmarshal(raw, &iss); err != nil {
		return fmt.Errorf("token claim iss is not a string; expected issuer %q", v.Issuer)
	}
	if iss != v.Issuer {
		// Bounded: the claim is the upstream's to choose.
		return fmt.Errorf("token issuer is %.200q; expected %q", iss, v.Issuer)
	}
	return nil
}

// verifyJWS is Verify up to the claims: the compact JWS parsed, its header
// checked and, unless the verifier has no keys, its signature verified.
func (v *Verifier) verifyJWS(ctx context.Context, compact string) (*Token, []byte, error) {
	if strings.Count(compact, ".") != 2 {
		return nil, nil, reasoned(reasonMalformed, errNotJWT)
	}
	parsed, err := parseCompact(compact)
	if err != nil {
		return nil, nil, reasoned(reasonMalformed, fmt.Errorf("%w: %v", errNotJWT, err))
	}
	tok, err := parsed.checkHeader()
	if err != nil {
		return nil, nil, reasoned(reasonHeader, err)
	}
	if v.Keys == nil { // insecure_skip_verify
		return tok, parsed.payload, nil
	}
	alg := parsed.alg
	keys, err := v.Keys.LookupKeys(ctx, tok.KeyID)
	if err != nil {
		return nil, nil, reasoned(reasonKeysUnavailable, fmt.Errorf("looking up upstream keys: %w", err))
	}
	// The algorithm each key is tried with is the header's, now that
	// checkHeader accepted it; keys published for another algorithm or for
	// encryption, or of a type that does not fit it, are skipped. (NewStaticKeys
	// and RemoteJWKS drop encryption keys already; a StaticKeys literal or
	// another KeyProvider may not.)
	tried := 0
	for _, k := range keys {
		if ka := k.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
			continue
		}
		if k.KeyUsage() == string(jwk.ForEncryption) {
			continue
		}
		pk, err := prepareKey(k)
		if err != nil || !keyAllows(pk, alg) {
			continue
		}
		tried++
		if verifySignature(alg, pk.pub, parsed.input, parsed.signature) {
			return tok, parsed.payload, nil
		}
	}
	if tried == 0 {
		return nil, nil, reasoned(reasonUnknownKey, fmt.Errorf("no upstream key fits the token (kid %q, alg %s)", tok.KeyID, alg))
	}
	return nil, nil, reasoned(reasonBadSignature, fmt.Errorf("token signature does not verify against the upstream keys (kid %q, alg %s)", tok.KeyID, alg))
}

func (v *Verifier) checkTimes(claims map[string]json.RawMessage) error {
	err := v.checkTimesOf(claims)
	if err == nil {
		return nil
	}
	var r *reasonError
	if errors.As(err, &r) {
		return err
	}
	return reasoned(reasonClaims, err)
}

func (v *Verifier) checkTimesOf(claims map[string]json.RawMessage) error {
	t := clock(v.Now)
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("token has no exp claim")
	}
	if !t.Before(exp.Add(v.Leeway)) {
		return reasoned(reasonExpired, fmt.Errorf("token expired at %s", exp.UTC().Format(time.RFC3339)))
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return err
	}
	if ok && t.Add(v.Leeway).Before(nbf) {
		return reasoned(reasonNotYetValid, fmt.Errorf("token is not valid before %s", nbf.UTC().Format(time.RFC3339)))
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
	f, err := jsonFloat(raw)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
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
	return prepareKeys(out), nil
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
	for i, k := range keys {
		if id := k.KeyID(); id != "" && id != kid {
			// Copy only when some key is left out: with one upstream key,
			// or keys that all match, there is nothing to allocate.
			out := append([]jwk.Key(nil), keys[:i]...)
			for _, k := range keys[i+1:] {
				if id := k.KeyID(); id == "" || id == kid {
					out = append(out, k)
				}
			}
			return out
		}
	}
	return keys
}

// jsonFloat is json.Unmarshal of raw into a float64, value and error alike;
// a plain number, as exp and nbf are, skips the JSON scanner.
func jsonFloat(raw []byte) (float64, error) {
	if isJSONNumber(raw) {
		// encoding/json hands a number's text to strconv.ParseFloat.
		return strconv.ParseFloat(string(raw), 64)
	}
	var f float64
	err := json.Unmarshal(raw, &f)
	return f, err
}
