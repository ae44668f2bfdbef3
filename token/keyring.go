package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Storage is where a Keyring keeps its keys. Caddy's storage modules
// (certmagic.Storage) satisfy it; its lock is what makes several instances
// sharing one storage behave as one issuer.
type Storage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// defaultRetainMax bounds how long a retired key stays published when
// KeyringConfig.RetainMax is zero.
const defaultRetainMax = 24 * time.Hour

// generableAlgorithms are the algorithms a Keyring can make keys for.
var generableAlgorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}

// GenerateKey makes a private key for alg: RSA 2048 for RS256/PS256, the
// matching curve for ES256/ES384, Ed25519 for EdDSA.
func GenerateKey(alg string) (jwk.Key, error) {
	var raw any
	var err error
	switch alg {
	case "RS256", "PS256":
		raw, err = rsa.GenerateKey(rand.Reader, minRSABits)
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		raw, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("cannot generate keys for %q (want one of %v)", alg, generableAlgorithms)
	}
	if err != nil {
		return nil, err
	}
	return jwk.FromRaw(raw)
}

// KeyringConfig configures a Keyring.
type KeyringConfig struct {
	Storage Storage
	// StorageKey names the keyring document in Storage.
	StorageKey string
	// Alg is the algorithm of generated keys, one CheckGenerable accepts.
	// It has no default here: the caller's configuration defines it.
	Alg string
	// Rotation is how long a key signs before the next one takes over;
	// zero never rotates.
	Rotation time.Duration
	// PublishAhead is how long before it signs a new key is published, so
	// every cached copy of the JWKS holds it by then. It must exceed the
	// JWKS cache lifetime plus the refresh interval of every instance.
	PublishAhead time.Duration
	// RetainMax bounds how long a retired key stays published: until the
	// longest token lifetime seen has passed, but never longer than this;
	// zero means 24 hours.
	RetainMax time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// keyringDoc is the document kept in storage. It holds private keys: it is
// written only to storage and never logged or served.
type keyringDoc struct {
	Version     int          `json:"version"`
	MaxLifetime duration     `json:"max_token_lifetime"`
	Keys        []keyringKey `json:"keys"`
}

type keyringKey struct {
	KeyID     string          `json:"kid"`
	Alg       string          `json:"alg"`
	Private   json.RawMessage `json:"private_jwk"`
	Created   time.Time       `json:"created"`
	Activates time.Time       `json:"activates"`
	Retires   *time.Time      `json:"retires,omitempty"`
}

// duration is a time.Duration written as a string in JSON.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = duration(v)
	return err
}

// KeyState is where a key is in its life.
type KeyState string

// Key states, in the order a key goes through them.
const (
	KeyPublished KeyState = "published" // in the JWKS, not yet signing
	KeySigning   KeyState = "signing"
	KeyRetired   KeyState = "retired" // no longer signing, still in the JWKS
)

// Keyring is a set of generated signing keys kept in shared storage: the
// first instance creates the first key under the storage lock, every
// instance loads the same keys, and rotation is decided under the same lock
// and picked up by the others on their next Refresh. Which key signs is a
// function of the document and the clock, so instances agree without talking.
type Keyring struct {
	cfg KeyringConfig

	mu          sync.RWMutex
	doc         keyringDoc
	signers     map[string]*Signer
	maxLifetime time.Duration // longest token lifetime this instance has seen
}

// OpenKeyring loads the keyring from storage, creating it with a first key
// when there is none.
func OpenKeyring(ctx context.Context, cfg KeyringConfig) (*Keyring, error) {
	if cfg.Storage == nil || cfg.StorageKey == "" {
		return nil, errors.New("keyring needs a storage and a storage key")
	}
	if err := CheckGenerable(cfg.Alg); err != nil {
		return nil, err
	}
	if cfg.RetainMax <= 0 {
		cfg.RetainMax = defaultRetainMax
	}
	k := &Keyring{cfg: cfg, signers: map[string]*Signer{}}
	if err := k.update(ctx, true); err != nil {
		return nil, err
	}
	return k, nil
}

// CheckGenerable reports whether keys can be generated for alg. Its error
// names the algorithm, not the setting it came from: the caller adds that.
func CheckGenerable(alg string) error {
	for _, a := range generableAlgorithms {
		if a == alg {
			return nil
		}
	}
	return fmt.Errorf("%q cannot be used for generated keys (want one of %v)", alg, generableAlgorithms)
}

// Refresh reloads the keyring from storage and, when a rotation or a prune is
// due, does it under the storage lock. Instances call it on a timer.
func (k *Keyring) Refresh(ctx context.Context) error {
	data, err := k.cfg.Storage.Load(ctx, k.cfg.StorageKey)
	if errors.Is(err, fs.ErrNotExist) {
		return k.update(ctx, true) // deleted from storage: start again
	}
	if err != nil {
		return fmt.Errorf("reading keyring: %w", err)
	}
	doc, err := k.decode(data)
	if err != nil {
		return err
	}
	if k.changesDue(doc, clock(k.cfg.Now)) || time.Duration(doc.MaxLifetime) < k.localMaxLifetime() {
		return k.update(ctx, false)
	}
	return k.install(doc)
}

// update is the only writer: under the storage lock it loads the document,
// creates, rotates and prunes as due, stores it if changed, and installs it.
func (k *Keyring) update(ctx context.Context, create bool) error {
	if err := k.cfg.Storage.Lock(ctx, k.cfg.StorageKey); err != nil {
		return fmt.Errorf("locking keyring: %w", err)
	}
	defer func() { _ = k.cfg.Storage.Unlock(context.Background(), k.cfg.StorageKey) }()

	var doc keyringDoc
	data, err := k.cfg.Storage.Load(ctx, k.cfg.StorageKey)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !create {
			return errors.New("the keyring disappeared from storage")
		}
		doc = keyringDoc{Version: 1}
	case err != nil:
		return fmt.Errorf("reading keyring: %w", err)
	default:
		if doc, err = k.decode(data); err != nil {
			return err
		}
	}
	now := clock(k.cfg.Now)
	changed := false
	if local := k.localMaxLifetime(); time.Duration(doc.MaxLifetime) < local {
		doc.MaxLifetime, changed = duration(local), true
	}
	if len(doc.Keys) == 0 {
		if err := k.addKey(&doc, now); err != nil {
			return err
		}
		changed = true
	}
	if k.rotateIfDue(&doc, now) {
		changed = true
	}
	if k.prune(&doc, now) {
		changed = true
	}
	if changed {
		out, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		if err := k.cfg.Storage.Store(ctx, k.cfg.StorageKey, out); err != nil {
			return fmt.Errorf("writing keyring: %w", err)
		}
	}
	return k.install(doc)
}

func (k *Keyring) decode(data []byte) (keyringDoc, error) {
	var doc keyringDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("keyring in storage is corrupt: %w", err)
	}
	return doc, nil
}

func (k *Keyring) addKey(doc *keyringDoc, activates time.Time) error {
	key, err := GenerateKey(k.cfg.Alg)
	if err != nil {
		return err
	}
	s, err := NewSigner(key, k.cfg.Alg)
	if err != nil {
		return err
	}
	priv, err := json.Marshal(s.key)
	if err != nil {
		return err
	}
	doc.Keys = append(doc.Keys, keyringKey{
		KeyID: s.KeyID(), Alg: k.cfg.Alg, Private: priv, Created: clock(k.cfg.Now), Activates: activates,
	})
	return nil
}

// signingIndex returns the index of the key that signs at now: the latest
// activated one. Keys are kept in activation order.
func signingIndex(doc keyringDoc, now time.Time) int {
	idx := -1
	for i, key := range doc.Keys {
		if !key.Activates.After(now) {
			idx = i
		}
	}
	return idx
}

// nextActivation says whether the next key is due to be published now and
// when it will start signing: Rotation after the newest key started, or
// PublishAhead from now when the signing key's algorithm is no longer the
// configured one. A missed rotation is never made up by signing with a key
// that was published less than PublishAhead ago.
func (k *Keyring) nextActivation(doc keyringDoc, now time.Time) (time.Time, bool) {
	if len(doc.Keys) == 0 {
		return time.Time{}, false
	}
	last := doc.Keys[len(doc.Keys)-1]
	if last.Activates.After(now) {
		return time.Time{}, false // the next key is already published
	}
	earliest := now.Add(k.cfg.PublishAhead)
	if last.Alg != k.cfg.Alg {
		return earliest, true
	}
	if k.cfg.Rotation <= 0 {
		return time.Time{}, false
	}
	next := last.Activates.Add(k.cfg.Rotation)
	if now.Before(next.Add(-k.cfg.PublishAhead)) {
		return time.Time{}, false
	}
	if next.Before(earliest) {
		next = earliest
	}
	return next, true
}

// rotateIfDue publishes the next key PublishAhead before it signs, and sets
// the signing key to retire when the next one takes over.
func (k *Keyring) rotateIfDue(doc *keyringDoc, now time.Time) bool {
	next, due := k.nextActivation(*doc, now)
	if !due {
		return false
	}
	if err := k.addKey(doc, next); err != nil {
		return false
	}
	doc.Keys[len(doc.Keys)-2].Retires = &next
	return true
}

// removeAt is when a retired key leaves the JWKS: after the longest token it
// can have signed has expired, bounded by RetainMax.
func (k *Keyring) removeAt(doc keyringDoc, key keyringKey) (time.Time, bool) {
	if key.Retires == nil {
		return time.Time{}, false
	}
	// With no token lifetime recorded yet, keep the key as long as allowed:
	// dropping it early would break tokens, keeping it costs nothing.
	keep := time.Duration(doc.MaxLifetime)
	if keep <= 0 || (k.cfg.RetainMax > 0 && keep > k.cfg.RetainMax) {
		keep = k.cfg.RetainMax
	}
	return key.Retires.Add(keep + clockSkew), true
}

// clockSkew is added to retention so instances whose clocks differ a little
// do not drop a key a token still needs.
const clockSkew = time.Minute

func (k *Keyring) prune(doc *keyringDoc, now time.Time) bool {
	kept := doc.Keys[:0]
	pruned := false
	for _, key := range doc.Keys {
		if at, ok := k.removeAt(*doc, key); ok && !now.Before(at) {
			pruned = true
			continue
		}
		kept = append(kept, key)
	}
	doc.Keys = kept
	return pruned
}

// changesDue reports whether update would change doc at now; Refresh takes
// the storage lock only then.
func (k *Keyring) changesDue(doc keyringDoc, now time.Time) bool {
	if len(doc.Keys) == 0 {
		return true
	}
	if _, due := k.nextActivation(doc, now); due {
		return true
	}
	for _, key := range doc.Keys {
		if at, ok := k.removeAt(doc, key); ok && !now.Before(at) {
			return true
		}
	}
	return false
}

// install makes doc the keyring's current state, parsing keys it has not
// seen before.
func (k *Keyring) install(doc keyringDoc) error {
	signers := make(map[string]*Signer, len(doc.Keys))
	k.mu.RLock()
	for _, key := range doc.Keys {
		if s, ok := k.signers[key.KeyID]; ok {
			signers[key.KeyID] = s
		}
	}
	k.mu.RUnlock()
	for _, key := range doc.Keys {
		if _, ok := signers[key.KeyID]; ok {
			continue
		}
		priv, err := jwk.ParseKey(key.Private)
		if err != nil {
			return fmt.Errorf("keyring key %s: %w", key.KeyID, err)
		}
		s, err := NewSigner(priv, key.Alg)
		if err != nil {
			return fmt.Errorf("keyring key %s: %w", key.KeyID, err)
		}
		signers[key.KeyID] = s
	}
	k.mu.Lock()
	k.doc, k.signers = doc, signers
	k.mu.Unlock()
	return nil
}

// Signer returns the key that signs now.
func (k *Keyring) Signer() *Signer {
	k.mu.RLock()
	defer k.mu.RUnlock()
	i := signingIndex(k.doc, clock(k.cfg.Now))
	if i < 0 {
		// Only possible with a clock far behind the one that made the
		// first key; sign with it rather than not at all.
		i = 0
	}
	return k.signers[k.doc.Keys[i].KeyID]
}

// PublicKeys returns every key to publish: the next key, the signing key and
// the retired keys whose tokens may still be valid, oldest first.
func (k *Keyring) PublicKeys() []jwk.Key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]jwk.Key, 0, len(k.doc.Keys))
	for _, key := range k.doc.Keys {
		out = append(out, k.signers[key.KeyID].PublicKey())
	}
	return out
}

// States returns each key's state now, by kid, for logs and tests.
func (k *Keyring) States() map[string]KeyState {
	k.mu.RLock()
	defer k.mu.RUnlock()
	now := clock(k.cfg.Now)
	signing := signingIndex(k.doc, now)
	out := map[string]KeyState{}
	for i, key := range k.doc.Keys {
		switch {
		case i == signing:
			out[key.KeyID] = KeySigning
		case key.Activates.After(now):
			out[key.KeyID] = KeyPublished
		default:
			out[key.KeyID] = KeyRetired
		}
	}
	return out
}

// ObserveLifetime records the lifetime of a token just signed; a longer one
// than any seen before is written to storage on the next Refresh, so retired
// keys stay published long enough on every instance.
func (k *Keyring) ObserveLifetime(d time.Duration) {
	k.mu.Lock()
	if d > k.maxLifetime {
		k.maxLifetime = d
	}
	k.mu.Unlock()
}

func (k *Keyring) localMaxLifetime() time.Duration {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.maxLifetime
}

// keyIDs returns the kids in the keyring, in activation order.
func (k *Keyring) keyIDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, len(k.doc.Keys))
	for i, key := range k.doc.Keys {
		ids[i] = key.KeyID
	}
	return ids
}
