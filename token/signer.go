package token

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Signer signs access tokens with one private key.
type Signer struct {
	key jwk.Key // private, with kid and alg set
	pub jwk.Key // public part, as published
	alg jwa.SignatureAlgorithm
}

// NewSigner returns a Signer for the private key. alg may be empty to use the
// key's own "alg" member, or else the key type's default (RS256 for RSA, the
// curve's ES algorithm for EC, EdDSA for Ed25519). The key ID is the key's own
// "kid" member, or its RFC 7638 thumbprint.
func NewSigner(key jwk.Key, alg string) (*Signer, error) {
	isPrivate, err := jwk.IsPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if !isPrivate {
		return nil, errors.New("a signing key must be a private key, this is a public key")
	}
	algs, err := algorithmsFor(key)
	if err != nil {
		return nil, err
	}
	chosen := algs[0]
	if alg == "" && key.Algorithm() != nil && key.Algorithm().String() != "" {
		alg = key.Algorithm().String()
	}
	if alg != "" {
		var a jwa.SignatureAlgorithm
		if err := a.Accept(alg); err != nil {
			return nil, fmt.Errorf("unknown signing algorithm %q", alg)
		}
		if !keyAllows(key, a) {
			return nil, fmt.Errorf("algorithm %s does not fit this key (it allows %s)", alg, joinAlgs(algs))
		}
		chosen = a
	}

	priv, err := cloneKey(key)
	if err != nil {
		return nil, err
	}
	if priv.KeyID() == "" {
		kid, err := Thumbprint(priv)
		if err != nil {
			return nil, fmt.Errorf("computing key thumbprint: %w", err)
		}
		_ = priv.Set(jwk.KeyIDKey, kid)
	}
	_ = priv.Set(jwk.AlgorithmKey, chosen)
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, err
	}
	_ = pub.Set(jwk.KeyUsageKey, jwk.ForSignature)
	return &Signer{key: priv, pub: pub, alg: chosen}, nil
}

// KeyID returns the "kid" written into every token header.
func (s *Signer) KeyID() string { return s.key.KeyID() }

// Algorithm returns the JWS algorithm the signer uses.
func (s *Signer) Algorithm() string { return s.alg.String() }

// PublicKey returns the public key to publish in a JWKS, with kid, alg and use.
func (s *Signer) PublicKey() jwk.Key { return s.pub }

// Sign returns a compact JWS over payload (the JSON claims) whose protected
// header holds the signer's alg and kid, plus typ when it is not empty.
func (s *Signer) Sign(typ string, payload []byte) (string, error) {
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, s.KeyID())
	if typ != "" {
		_ = hdr.Set(jws.TypeKey, typ)
	}
	out, err := jws.Sign(payload, jws.WithKey(s.alg, s.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return string(out), nil
}

func cloneKey(k jwk.Key) (jwk.Key, error) {
	var raw any
	if err := k.Raw(&raw); err != nil {
		return nil, err
	}
	c, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	if kid := k.KeyID(); kid != "" {
		_ = c.Set(jwk.KeyIDKey, kid)
	}
	return c, nil
}

func joinAlgs(algs []jwa.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func encodeSegment(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
