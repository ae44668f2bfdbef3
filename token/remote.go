package token

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// maxJWKSSize bounds what is read from an upstream JWKS endpoint.
const maxJWKSSize = 1 << 20

// RemoteJWKS fetches an upstream's JWKS over HTTP, caches it, and refetches
// it when a token names a kid it does not hold (the upstream rotated its key).
// Fetching is lazy, so an upstream that is down when Caddy starts does not
// stop Caddy from starting; exchanges fail until it answers.
type RemoteJWKS struct {
	URL    string
	Client *http.Client
	// TTL is how long a fetched set is used before it is fetched again.
	TTL time.Duration
	// MinRefresh is the shortest time between two fetches caused by unknown
	// kids: the first one after a rotation is immediate, but tokens with
	// made-up kids cannot make the proxy hammer the upstream.
	MinRefresh time.Duration
	// RetryAfter is the shortest time between attempts while fetching fails.
	RetryAfter time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// OnFetch, when set, is called after every fetch of the set with its
	// error (nil on success) and how long it took; for metrics.
	OnFetch func(err error, d time.Duration)

	mu        sync.Mutex
	keys      []jwk.Key
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt, successful or not
	unknownAt time.Time // last fetch caused by an unknown kid
	lastErr   error
}

// LookupKeys returns the cached keys for kid, fetching the set first when it
// is missing or stale, or when it lacks kid.
func (r *RemoteJWKS) LookupKeys(ctx context.Context, kid string) ([]jwk.Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	fetched := false
	stale := r.keys == nil || now.Sub(r.fetchedAt) >= r.TTL
	if stale && (r.lastErr == nil || now.Sub(r.triedAt) >= r.RetryAfter) {
		r.fetch(ctx, now)
		fetched = true
	}
	if r.keys == nil {
		return nil, fmt.Errorf("upstream JWKS %s unavailable: %w", r.URL, r.lastErr)
	}
	found := matchKID(r.keys, kid)
	if kid != "" && !hasKID(found, kid) && !fetched &&
		(r.unknownAt.IsZero() || now.Sub(r.unknownAt) >= r.MinRefresh) {
		r.unknownAt = now
		r.fetch(ctx, now)
		found = matchKID(r.keys, kid)
	}
	return found, nil
}

func (r *RemoteJWKS) now() time.Time { return clock(r.Now) }

// clock reads a configurable clock: the Now fields of this package's types
// are optional, and nil means time.Now.
func clock(now func() time.Time) time.Time {
	if now != nil {
		return now()
	}
	return time.Now()
}

// fetch replaces the cached keys on success and keeps them on failure, so a
// passing upstream outage does not stop tokens signed with known keys.
func (r *RemoteJWKS) fetch(ctx context.Context, now time.Time) {
	r.triedAt = now
	start := time.Now()
	keys, err := r.get(ctx)
	if r.OnFetch != nil {
		r.OnFetch(err, time.Since(start))
	}
	if err != nil {
		r.lastErr = bounded(err)
		return
	}
	r.keys, r.fetchedAt, r.lastErr = keys, now, nil
}

// maxErrorText bounds the text of an error kept from a fetch: a status
// line, a Location or a malformed answer quoted by net/http is the
// server's to choose (up to the transport's 10 MiB header limit), and the
// error is logged with every exchange that fails on it.
const maxErrorText = 1024

// boundedError is an error whose text is cut at maxErrorText bytes; the
// error it wraps is still there for errors.Is and errors.As.
type boundedError struct{ err error }

func (e boundedError) Error() string { return textcap.Cap(e.err.Error(), maxErrorText) }

func (e boundedError) Unwrap() error { return e.err }

func bounded(err error) error {
	if err == nil {
		return nil
	}
	return boundedError{err}
}

func (r *RemoteJWKS) get(ctx context.Context) ([]jwk.Key, error) {
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	body, err := getBounded(ctx, client, r.URL, maxJWKSSize, "JWKS", nil)
	if err != nil {
		return nil, err
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("parsing JWKS: %w", err)
	}
	all := make([]jwk.Key, 0, set.Len())
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		all = append(all, k)
	}
	// Keys this proxy cannot verify with are not its concern: skip them.
	keys, _ := verificationKeys(all)
	return prepareKeys(keys), nil
}

func hasKID(keys []jwk.Key, kid string) bool {
	for _, k := range keys {
		if k.KeyID() == kid {
			return true
		}
	}
	return false
}

// getBounded GETs url as JSON with client, giving up after 10 seconds, and
// returns the body of a 200 answer of at most limit bytes; what names the
// document in the error for a larger one. Any other status is an error,
// from notOK when it is set (it may say more about the answer), else the
// status line.
func getBounded(ctx context.Context, client *http.Client, url string, limit int, what string, notOK func(*http.Response) error) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if notOK != nil {
			return nil, notOK(resp)
		}
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(body) > limit {
		return nil, fmt.Errorf("%s larger than %d bytes", what, limit)
	}
	return body, nil
}
