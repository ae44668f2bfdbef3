package credentialsexchange

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"

	"github.com/caddyhook/caddyhook/token"
)

// keySource is where the handler gets the key that signs and the keys it
// publishes: a configured key file, or a keyring kept in Caddy's storage.
type keySource interface {
	Signer() *token.Signer
	PublicKeys() []jwk.Key
	// ObserveLifetime is told the lifetime of every token signed, so that
	// retired keys stay published long enough.
	ObserveLifetime(time.Duration)
}

// staticKeys is signing_key with any publish_key entries.
type staticKeys struct {
	signer  *token.Signer
	publish []jwk.Key
}

func (s staticKeys) Signer() *token.Signer { return s.signer }

func (s staticKeys) PublicKeys() []jwk.Key {
	return append([]jwk.Key{s.signer.PublicKey()}, s.publish...)
}

func (staticKeys) ObserveLifetime(time.Duration) {}

// managedKeys is the keyring plus any publish_key entries.
type managedKeys struct {
	*token.Keyring
	publish []jwk.Key
}

func (m managedKeys) PublicKeys() []jwk.Key {
	return append(m.Keyring.PublicKeys(), m.publish...)
}

// keyringStorageKey is where the keyring of a tenant lives in Caddy's
// storage; instances configured with the same tenant share it.
func keyringStorageKey(tenant string) string {
	if tenant == "" {
		tenant = "default"
	}
	return path.Join("caddyhook", "keys", token.SafeName(tenant), "keyring.json")
}

// provisionKeys sets h.keys: the configured signing_key, or else the
// keyring in Caddy's storage, created on first start and refreshed (and
// rotated) in the background until Cleanup.
func (h *Handler) provisionKeys(ctx caddy.Context) error {
	publish, err := loadPublishKeys(h.PublishKeys)
	if err != nil {
		return err
	}
	if h.SigningKey != "" {
		signer, err := loadSigner(h.SigningKey, h.SigningAlg)
		if err != nil {
			return err
		}
		h.keys = staticKeys{signer: signer, publish: publish}
		return nil
	}

	alg := h.SigningAlg
	if alg == "" {
		alg = DefaultSigningAlg
	}
	ring, err := token.OpenKeyring(ctx, token.KeyringConfig{
		Storage:      ctx.Storage(),
		StorageKey:   keyringStorageKey(h.tenant),
		Alg:          alg,
		Rotation:     time.Duration(h.KeyRotation),
		PublishAhead: time.Duration(h.KeyPublishAhead),
		RetainMax:    time.Duration(h.KeyRetainMax),
	})
	if err != nil {
		return fmt.Errorf("signing keys in Caddy's storage: %w", err)
	}
	h.keys = managedKeys{Keyring: ring, publish: publish}

	refreshCtx, cancel := context.WithCancel(context.Background())
	h.stopRefresh = cancel
	go h.refreshKeys(refreshCtx, ring, h.keyRefreshInterval())
	return nil
}

// keyRefreshInterval is how often an instance re-reads the keyring: often
// enough to see the next key well within the publish-ahead window.
func (h *Handler) keyRefreshInterval() time.Duration {
	d := time.Minute
	if r := time.Duration(h.KeyRotation); r > 0 && r/10 < d {
		d = r / 10
	}
	if d < time.Second {
		d = time.Second
	}
	return d
}

func (h *Handler) refreshKeys(ctx context.Context, ring *token.Keyring, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	before := ring.States()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if err := ring.Refresh(ctx); err != nil {
			if ctx.Err() == nil {
				h.logger.Error("refreshing signing keys from storage; signing with the keys already loaded", zap.Error(err))
			}
			continue
		}
		after := ring.States()
		for kid, st := range after {
			if before[kid] != st {
				h.logger.Info("signing key changed state", zap.String("kid", kid), zap.String("state", string(st)))
			}
		}
		for kid := range before {
			if _, ok := after[kid]; !ok {
				h.logger.Info("signing key removed from the JWKS", zap.String("kid", kid))
			}
		}
		before = after
	}
}

// loadPublishKeys reads publish_key files: public keys that are published
// in the JWKS but never sign, for a manual rotation.
func loadPublishKeys(paths []string) ([]jwk.Key, error) {
	var out []jwk.Key
	for _, p := range paths {
		keys, err := readKeys("publish_key", p)
		if err != nil {
			return nil, err
		}
		pubs, err := token.PublishableKeys(keys)
		if err != nil {
			return nil, fmt.Errorf("publish_key %s: %w", p, err)
		}
		out = append(out, pubs...)
	}
	return out, nil
}

// newRemoteJWKS makes the fetcher of an upstream JWKS URL, configured or
// discovered.
func (h *Handler) newRemoteJWKS(url string) *token.RemoteJWKS {
	return &token.RemoteJWKS{
		URL:        url,
		Client:     &http.Client{Timeout: 10 * time.Second},
		TTL:        upstreamJWKSTTL,
		MinRefresh: upstreamJWKSMinRefetch,
		RetryAfter: upstreamJWKSRetryAfter,
		OnFetch:    metrics().jwksFetched,
	}
}

func (h *Handler) buildVerifier() (*token.Verifier, error) {
	// The issuer a discovered document names must equal the configured
	// one, so the configured one is what tokens are held to.
	v := &token.Verifier{Leeway: clockLeeway, Issuer: h.UpstreamIssuer}
	h.discovery = h.newDiscovery()
	switch {
	case h.UpstreamJWKS != "":
		// A JWKS URL on the proxy's own host gets the proxy's keys merged
		// in: they are never upstream keys.
		v.Keys = &token.ExcludeKeys{Keys: h.newRemoteJWKS(h.UpstreamJWKS), Own: h.publicKeys}
	case h.UpstreamKey != "":
		static, err := loadUpstreamKeys(h.UpstreamKey)
		if err != nil {
			return nil, err
		}
		v.Keys = static
	case h.InsecureSkipVerify:
		h.logger.Warn("insecure_skip_verify is set: upstream token signatures are NOT verified")
	case h.discovery != nil:
		// A discovered jwks_uri is usually on the issuer's public host,
		// which may well be this proxy.
		v.Keys = &token.ExcludeKeys{
			Keys: &token.DiscoveredJWKS{Discovery: h.discovery, New: h.newRemoteJWKS},
			Own:  h.publicKeys,
		}
	}
	return v, nil
}

// readKeys reads the keys in a key file named by option, with errors that
// name both.
func readKeys(option, path string) ([]jwk.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", option, err)
	}
	keys, err := token.ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", option, path, err)
	}
	return keys, nil
}

func loadSigner(path, alg string) (*token.Signer, error) {
	keys, err := readKeys("signing_key", path)
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("signing_key %s: holds %d keys, want exactly one private key", path, len(keys))
	}
	s, err := token.NewSigner(keys[0], alg)
	if err != nil {
		return nil, fmt.Errorf("signing_key %s: %w", path, err)
	}
	return s, nil
}

func loadUpstreamKeys(path string) (token.StaticKeys, error) {
	keys, err := readKeys("upstream_key", path)
	if err != nil {
		return nil, err
	}
	static, err := token.NewStaticKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("upstream_key %s: %w", path, err)
	}
	return static, nil
}
