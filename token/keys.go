// Package token decodes, verifies and re-signs JWT access tokens and publishes
// signing keys as a JWKS. It knows nothing of JavaScript or Caddy: it turns
// compact JWS strings into claims and claims back into compact JWS strings.
package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// minRSABits is the smallest RSA modulus accepted for signing or verifying;
// smaller keys are breakable and most resource servers refuse them anyway.
const minRSABits = 2048

// ParseKeys reads every key in data, which may hold one or more PEM blocks
// (PKCS#1, PKCS#8, SEC1, PKIX public keys, certificates), a JSON Web Key, or a
// JSON Web Key Set. It does not judge whether the keys fit any purpose.
func ParseKeys(data []byte) ([]jwk.Key, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("no key found: the file is empty")
	}
	if trimmed[0] == '{' {
		var probe struct {
			Keys json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(trimmed, &probe); err != nil {
			return nil, fmt.Errorf("parsing JSON key: %w", err)
		}
		if probe.Keys != nil {
			set, err := jwk.Parse(trimmed)
			if err != nil {
				return nil, fmt.Errorf("parsing JWK set: %w", err)
			}
			keys := make([]jwk.Key, 0, set.Len())
			for i := 0; i < set.Len(); i++ {
				k, _ := set.Key(i)
				keys = append(keys, k)
			}
			if len(keys) == 0 {
				return nil, errors.New("the JWK set holds no keys")
			}
			return keys, nil
		}
		k, err := jwk.ParseKey(trimmed)
		if err != nil {
			return nil, fmt.Errorf("parsing JWK: %w", err)
		}
		return []jwk.Key{k}, nil
	}

	var keys []jwk.Key
	rest := trimmed
	for {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		raw, _, err := jwk.DecodePEM(pem.EncodeToMemory(block))
		if err != nil {
			// The parser's own text ends in ASN.1 internals that tell an
			// operator nothing; keep the part that names what failed.
			msg, _, _ := strings.Cut(err.Error(), ": asn1:")
			return nil, fmt.Errorf("PEM block %q is not a valid key: %s", block.Type, msg)
		}
		k, err := jwk.FromRaw(raw)
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		keys = append(keys, k)
		rest = next
	}
	if len(keys) == 0 {
		return nil, errors.New("no key found: expected PEM, a JWK or a JWK set")
	}
	return keys, nil
}

// algorithmsFor returns the signature algorithms a key can be used with,
// default first. It is the single place that ties key types to algorithms, so
// that neither signing nor verification can be talked into key confusion
// (an RSA public key used as an HMAC secret, an EC key with the wrong curve).
func algorithmsFor(key jwk.Key) ([]jwa.SignatureAlgorithm, error) {
	if p, ok := key.(*preparedKey); ok {
		return p.algs, nil
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	return rawAlgorithms(raw)
}

// rawAlgorithms is algorithmsFor of a key as the crypto packages hold it.
func rawAlgorithms(raw any) ([]jwa.SignatureAlgorithm, error) {
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		return rsaAlgorithms(&k.PublicKey)
	case *rsa.PublicKey:
		return rsaAlgorithms(k)
	case *ecdsa.PrivateKey:
		return ecAlgorithms(k.Curve)
	case *ecdsa.PublicKey:
		return ecAlgorithms(k.Curve)
	case ed25519.PrivateKey, ed25519.PublicKey:
		return []jwa.SignatureAlgorithm{jwa.EdDSA}, nil
	case []byte:
		return nil, errors.New("symmetric (oct) keys are not supported: a token signed with one cannot be verified through a public JWKS")
	default:
		return nil, fmt.Errorf("unsupported key type %T (want RSA, EC P-256/P-384/P-521 or Ed25519)", raw)
	}
}

func rsaAlgorithms(k *rsa.PublicKey) ([]jwa.SignatureAlgorithm, error) {
	if k.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
	}
	return []jwa.SignatureAlgorithm{jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512}, nil
}

func ecAlgorithms(c elliptic.Curve) ([]jwa.SignatureAlgorithm, error) {
	switch c {
	case elliptic.P256():
		return []jwa.SignatureAlgorithm{jwa.ES256}, nil
	case elliptic.P384():
		return []jwa.SignatureAlgorithm{jwa.ES384}, nil
	case elliptic.P521():
		return []jwa.SignatureAlgorithm{jwa.ES512}, nil
	}
	return nil, fmt.Errorf("unsupported elliptic curve %s (want P-256, P-384 or P-521)", c.Params().Name)
}

// keyAllows reports whether key may verify or sign with alg.
func keyAllows(key jwk.Key, alg jwa.SignatureAlgorithm) bool {
	algs, err := algorithmsFor(key)
	if err != nil {
		return false
	}
	return slices.Contains(algs, alg)
}

// asymmetricAlgorithms are the only token algorithms accepted from an
// upstream; "none" and the HMAC family are absent on purpose.
var asymmetricAlgorithms = map[jwa.SignatureAlgorithm]bool{
	jwa.RS256: true, jwa.RS384: true, jwa.RS512: true,
	jwa.PS256: true, jwa.PS384: true, jwa.PS512: true,
	jwa.ES256: true, jwa.ES384: true, jwa.ES512: true,
	jwa.EdDSA: true,
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of key's public part,
// base64url-encoded, which is the key ID used unless one is configured.
func thumbprint(key jwk.Key) (string, error) {
	pub, err := key.PublicKey()
	if err != nil {
		return "", err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return encodeSegment(tp), nil
}

// PublishableKeys returns the public parts of keys as they are published:
// with a kid (the RFC 7638 thumbprint unless the key has one), an alg when
// the key allows only one, and use "sig". Symmetric keys are refused.
func PublishableKeys(keys []jwk.Key) ([]jwk.Key, error) {
	pubs, err := verificationKeys(keys)
	if err != nil {
		return nil, err
	}
	if len(pubs) == 0 {
		return nil, errors.New("no signature key found (keys marked use \"enc\" are not published)")
	}
	for _, pub := range pubs {
		if pub.KeyID() == "" {
			kid, err := thumbprint(pub)
			if err != nil {
				return nil, err
			}
			_ = pub.Set(jwk.KeyIDKey, kid)
		}
		if algs, _ := algorithmsFor(pub); len(algs) == 1 && (pub.Algorithm() == nil || pub.Algorithm().String() == "") {
			_ = pub.Set(jwk.AlgorithmKey, algs[0])
		}
		_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
	}
	return pubs, nil
}

// SafeName turns s into something usable as one segment of a storage key.
func SafeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if out := strings.Trim(b.String(), "."); out != "" {
		return out
	}
	return "_"
}
