package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Signer signs access tokens with one private key.
type Signer struct {
	key jwk.Key // private, with kid and alg set
	pub jwk.Key // public part, as published
	alg jwa.SignatureAlgorithm
	// raw is the key as the crypto packages take it, converted once: jwx
	// converts a jwk.Key on every signature (for RSA that includes
	// rsa.PrivateKey.Precompute), which cost more than the signature
	// itself for ECDSA and EdDSA.
	raw crypto.Signer
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
		kid, err := thumbprint(priv)
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
	var raw any
	if err := priv.Raw(&raw); err != nil {
		return nil, err
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign", raw)
	}
	if rk, ok := signer.(*rsa.PrivateKey); ok {
		rk.Precompute()
	}
	return &Signer{key: priv, pub: pub, alg: chosen, raw: signer}, nil
}

// KeyID returns the "kid" written into every token header.
func (s *Signer) KeyID() string { return s.key.KeyID() }

// Algorithm returns the JWS algorithm the signer uses.
func (s *Signer) Algorithm() string { return s.alg.String() }

// PublicKey returns the public key to publish in a JWKS, with kid, alg and use.
func (s *Signer) PublicKey() jwk.Key { return s.pub }

// Sign returns a compact JWS over payload (the JSON claims) whose protected
// header holds the signer's alg and kid, plus typ when it is not empty.
// It is written out here rather than through jws.Sign, which builds a
// header object and converts the key on every call; tests check every
// algorithm against jws.Verify.
func (s *Signer) Sign(typ string, payload []byte) (string, error) {
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ,omitempty"`
	}{s.alg.String(), s.KeyID(), typ})
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	enc := base64.RawURLEncoding
	input := make([]byte, 0, enc.EncodedLen(len(hdr))+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(512))
	input = enc.AppendEncode(input, hdr)
	input = append(input, '.')
	input = enc.AppendEncode(input, payload)
	sig, err := s.signature(input)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	out := append(input, '.')
	return string(enc.AppendEncode(out, sig)), nil
}

// signature signs the JWS signing input as RFC 7518 §3 says for s.alg.
func (s *Signer) signature(input []byte) ([]byte, error) {
	if s.alg == jwa.EdDSA {
		k, ok := s.raw.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("EdDSA needs an Ed25519 key")
		}
		return ed25519.Sign(k, input), nil
	}
	h, digest := digestFor(s.alg, input)
	if digest == nil {
		return nil, fmt.Errorf("unsupported signing algorithm %s", s.alg)
	}
	switch k := s.raw.(type) {
	case *rsa.PrivateKey:
		switch s.alg {
		case jwa.RS256, jwa.RS384, jwa.RS512:
			return rsa.SignPKCS1v15(rand.Reader, k, h, digest)
		case jwa.PS256, jwa.PS384, jwa.PS512:
			return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
	case *ecdsa.PrivateKey:
		switch s.alg {
		case jwa.ES256, jwa.ES384, jwa.ES512:
			r, sv, err := ecdsa.Sign(rand.Reader, k, digest)
			if err != nil {
				return nil, err
			}
			// R and S, each left-padded to the curve's size (RFC 7518 §3.4).
			size := (k.Curve.Params().BitSize + 7) / 8
			out := make([]byte, 2*size)
			r.FillBytes(out[:size])
			sv.FillBytes(out[size:])
			return out, nil
		}
	}
	return nil, fmt.Errorf("algorithm %s does not fit a %T", s.alg, s.raw)
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
