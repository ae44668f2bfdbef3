package token

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// fakeClock is shared by the instances of a test, as a real clock would be.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func jwksOf(t testing.TB, keys []jwk.Key) jwk.Set {
	t.Helper()
	doc, err := MergeJWKS(nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestKeyringFirstStartIsShared(t *testing.T) {
	dir := t.TempDir()
	cfg := func() KeyringConfig {
		return KeyringConfig{Storage: &certmagic.FileStorage{Path: dir}, StorageKey: "caddyhook/keys/default/keyring.json", Alg: "ES256"}
	}
	// Instances starting at the same moment must still end with one key.
	const n = 4
	rings := make([]*Keyring, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			r, err := OpenKeyring(context.Background(), cfg())
			if err != nil {
				t.Error(err)
				return
			}
			rings[i] = r
		}(i)
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	want := rings[0].keyIDs()
	if len(want) != 1 {
		t.Fatalf("keyring holds %d keys, want 1", len(want))
	}
	for i, r := range rings {
		if got := r.keyIDs(); len(got) != 1 || got[0] != want[0] {
			t.Fatalf("instance %d has keys %v, instance 0 has %v", i, got, want)
		}
	}
	// A token signed by one instance verifies with another's JWKS.
	signed, err := rings[1].Signer().Sign("at+jwt", []byte(`{"exp":4102444800}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify([]byte(signed), jws.WithKeySet(jwksOf(t, rings[3].PublicKeys()))); err != nil {
		t.Fatalf("instance 3 cannot verify instance 1's token: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "caddyhook", "keys", "default", "keyring.json"))
	if !strings.Contains(string(raw), `"d":`) {
		t.Fatal("expected the private key in storage")
	}
	for _, k := range rings[0].PublicKeys() {
		if b, _ := json.Marshal(k); strings.Contains(string(b), `"d":`) {
			t.Fatal("PublicKeys leaks a private member")
		}
	}
}

type issued struct {
	token string
	kid   string
	exp   time.Time
}

// TestKeyringRotationOrder walks two instances through several rotations
// minute by minute and checks, at every moment, that each key goes
// published → signing → retired → removed, that a key is published at least
// PublishAhead before it signs, and that every unexpired token verifies
// against both instances' JWKS.
func TestKeyringRotationOrder(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	const (
		rotation     = time.Hour
		publishAhead = 10 * time.Minute
		lifetime     = 30 * time.Minute
		retainMax    = 2 * time.Hour
	)
	open := func() *Keyring {
		r, err := OpenKeyring(context.Background(), KeyringConfig{
			Storage: &certmagic.FileStorage{Path: dir}, StorageKey: "keyring.json", Alg: "ES256",
			Rotation: rotation, PublishAhead: publishAhead, RetainMax: retainMax, Now: clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := open(), open()
	instances := []*Keyring{a, b}

	order := map[KeyState]int{KeyPublished: 0, KeySigning: 1, KeyRetired: 2}
	lastState := map[string]KeyState{}
	firstPublished := map[string]time.Time{}
	removed := map[string]bool{}
	seen := map[string][]KeyState{}
	var tokens []issued
	// snapshots[i] is the JWKS as served at minute i, as resource servers
	// cache it.
	var snapshots []jwk.Set
	lag := int(publishAhead / time.Minute)

	for step := 0; step < 6*60; step++ {
		now := clock.Now()
		for _, r := range instances {
			if err := r.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		states := a.States()
		if fmt.Sprint(states) != fmt.Sprint(b.States()) {
			t.Fatalf("%v: instances disagree: %v vs %v", now, states, b.States())
		}
		for kid := range lastState {
			if _, ok := states[kid]; !ok && !removed[kid] {
				if lastState[kid] != KeyRetired {
					t.Fatalf("%v: key %s removed while %s", now, kid, lastState[kid])
				}
				removed[kid] = true
				seen[kid] = append(seen[kid], "removed")
			}
		}
		for kid, st := range states {
			if removed[kid] {
				t.Fatalf("%v: key %s came back", now, kid)
			}
			prev, known := lastState[kid]
			if !known {
				firstPublished[kid] = now
			}
			if known && order[st] < order[prev] {
				t.Fatalf("%v: key %s went from %s back to %s", now, kid, prev, st)
			}
			if st != prev {
				seen[kid] = append(seen[kid], st)
			}
			if st == KeySigning && prev != KeySigning && step > 0 && now.Sub(firstPublished[kid]) < publishAhead {
				t.Fatalf("%v: key %s signs %v after it was published", now, kid, now.Sub(firstPublished[kid]))
			}
			lastState[kid] = st
		}

		snapshots = append(snapshots, jwksOf(t, a.PublicKeys()))
		// Each instance issues a token, which a resource server holding a
		// JWKS cached publishAhead ago must already accept.
		for _, r := range instances {
			s := r.Signer()
			exp := now.Add(lifetime)
			signed, err := s.Sign("at+jwt", []byte(fmt.Sprintf(`{"exp":%d}`, exp.Unix())))
			if err != nil {
				t.Fatal(err)
			}
			r.ObserveLifetime(lifetime)
			tokens = append(tokens, issued{signed, s.KeyID(), exp})
			if step >= lag {
				if _, err := jws.Verify([]byte(signed), jws.WithKeySet(snapshots[step-lag])); err != nil {
					t.Fatalf("%v: a new token signed by %s fails against the JWKS cached %v ago: %v", now, s.KeyID(), publishAhead, err)
				}
			}
		}
		// Every unexpired token verifies against both instances' JWKS.
		for _, r := range instances {
			set := jwksOf(t, r.PublicKeys())
			for _, tok := range tokens {
				if !now.Before(tok.exp) {
					continue
				}
				if _, err := jwt.Parse([]byte(tok.token), jwt.WithKeySet(set), jwt.WithClock(jwt.ClockFunc(clock.Now))); err != nil {
					t.Fatalf("%v: a token signed by %s (exp %v) does not verify: %v", now, tok.kid, tok.exp, err)
				}
			}
		}
		clock.Advance(time.Minute)
	}

	// Every key's life is a prefix of published → signing → retired →
	// removed; only the very first key starts out signing.
	life := []KeyState{KeyPublished, KeySigning, KeyRetired, "removed"}
	complete := 0
	for kid, states := range seen {
		want := life
		if states[0] == KeySigning {
			want = life[1:]
		}
		if len(states) > len(want) || fmt.Sprint(states) != fmt.Sprint(want[:len(states)]) {
			t.Errorf("key %s went through %v", kid, states)
		}
		if len(states) == len(life) {
			complete++
		}
	}
	if complete < 3 {
		t.Fatalf("only %d keys went through the whole life in 6 hours of hourly rotation: %v", complete, seen)
	}
	if n := len(a.keyIDs()); n > 3 {
		t.Fatalf("%d keys still published: retired keys are not removed", n)
	}
}

func TestKeyringAlgorithmChangeRotates(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	open := func(alg string) *Keyring {
		r, err := OpenKeyring(context.Background(), KeyringConfig{
			Storage: &certmagic.FileStorage{Path: dir}, StorageKey: "keyring.json", Alg: alg,
			PublishAhead: 10 * time.Minute, Now: clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rs := open("RS256")
	es := open("ES256")
	if es.Signer().Algorithm() != "RS256" || len(es.keyIDs()) != 2 {
		t.Fatalf("the new key must be published before it signs: alg %s, keys %v", es.Signer().Algorithm(), es.keyIDs())
	}
	clock.Advance(11 * time.Minute)
	if err := rs.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if es.Signer().Algorithm() != "ES256" {
		t.Fatalf("after publish-ahead the ES256 key should sign, got %s", es.Signer().Algorithm())
	}
	for _, alg := range []string{"HS256", "none", "ES512"} {
		if _, err := OpenKeyring(context.Background(), KeyringConfig{Storage: &certmagic.FileStorage{Path: t.TempDir()}, StorageKey: "k", Alg: alg}); err == nil {
			t.Errorf("%s accepted for generated keys", alg)
		}
	}
}

func TestKeyringCorruptDocument(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	_ = st.Store(context.Background(), "keyring.json", []byte("{not json"))
	if _, err := OpenKeyring(context.Background(), KeyringConfig{Storage: st, StorageKey: "keyring.json", Alg: "ES256"}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("err = %v", err)
	}
}

func TestGenerateKeyEveryAlgorithm(t *testing.T) {
	for _, alg := range generableAlgorithms {
		k, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSigner(k, alg)
		if err != nil || s.Algorithm() != alg {
			t.Fatalf("%s: %v %v", alg, s, err)
		}
	}
}

// TestKeyringEmergencyReset is the runbook's "delete the keyring": every
// instance moves to one new key on its next refresh.
func TestKeyringEmergencyReset(t *testing.T) {
	dir := t.TempDir()
	st := &certmagic.FileStorage{Path: dir}
	open := func() *Keyring {
		r, err := OpenKeyring(context.Background(), KeyringConfig{Storage: st, StorageKey: "caddyhook/keys/acme/keyring.json", Alg: "ES256"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := open(), open()
	old := a.Signer().KeyID()
	if err := st.Delete(context.Background(), "caddyhook/keys/acme/keyring.json"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Keyring{a, b} {
		if err := r.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if a.Signer().KeyID() == old || a.Signer().KeyID() != b.Signer().KeyID() || len(b.keyIDs()) != 1 {
		t.Fatalf("after the reset: a signs with %s, b with %s (old %s, b has %v)", a.Signer().KeyID(), b.Signer().KeyID(), old, b.keyIDs())
	}
}
