package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// maxMetadataSize bounds what is read from a discovery document. Real ones
// are a few KiB; the bound only stops a hostile or broken server.
const maxMetadataSize = 256 << 10

// Metadata is what the proxy takes from an authorization server's discovery
// document.
type Metadata struct {
	// Issuer is the document's issuer, equal to the configured one.
	Issuer string
	// JWKSURI is the document's jwks_uri, an absolute http(s) URL.
	JWKSURI string
	// JWKSPath is the path of JWKSURI, parsed once here rather than on
	// every request that asks whether it is the JWKS path.
	JWKSPath string
	// Source is the URL the document was read from.
	Source string
}

// Discovery reads an authorization server's metadata: OpenID Connect
// Discovery 1.0 (<issuer>/.well-known/openid-configuration) or, when that
// fails, RFC 8414 (/.well-known/oauth-authorization-server inserted before
// the issuer's path). Like RemoteJWKS it fetches lazily, caches for TTL,
// keeps the last good document while fetching fails, and tries at most once
// per RetryAfter while it fails, so clients cannot make it hammer the
// upstream.
//
// The document is refused unless its issuer is exactly Issuer (OIDC
// Discovery §4.3, RFC 8414 §3.3): otherwise a server reached at one URL could
// name keys and an issuer for another. Redirects are refused for the same
// reason, and a jwks_uri that is not http(s), or is http when the issuer is
// https, is refused.
type Discovery struct {
	// Issuer is the configured issuer URL, without query or fragment.
	Issuer string
	// Client makes the requests; its CheckRedirect is replaced by one that
	// refuses redirects. Nil means a client with a 10 s timeout.
	Client *http.Client
	// TTL is how long a document is used before it is fetched again.
	TTL time.Duration
	// RetryAfter is the shortest time between attempts while fetching fails.
	RetryAfter time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	cur        atomic.Pointer[Metadata] // last good document; read without the lock
	freshUntil atomic.Int64             // UnixNano: cur is used without the lock until then

	mu        sync.Mutex // held while fetching
	fetchedAt time.Time
	triedAt   time.Time
	lastErr   error
}

// Current returns the last document fetched, or nil before the first
// success. It never blocks and never fetches.
func (d *Discovery) Current() *Metadata { return d.cur.Load() }

// Get returns the document, fetching it first when there is none or it is
// older than TTL. While another caller fetches, a cached document is returned
// at once rather than waiting. With no document, the error says why the last
// attempt failed.
func (d *Discovery) Get(ctx context.Context) (*Metadata, error) {
	cur := d.cur.Load()
	// The common case, on every exchange: a fresh document, read without
	// taking the lock.
	if cur != nil && d.now().UnixNano() < d.freshUntil.Load() {
		return cur, nil
	}
	if cur != nil {
		if !d.mu.TryLock() {
			return cur, nil
		}
	} else {
		d.mu.Lock()
	}
	defer d.mu.Unlock()
	now := d.now()
	cur = d.cur.Load()
	stale := cur == nil || now.Sub(d.fetchedAt) >= d.TTL
	if stale && (d.lastErr == nil || now.Sub(d.triedAt) >= d.RetryAfter) {
		d.triedAt = now
		m, err := d.fetch(ctx)
		if err != nil {
			d.lastErr = err
		} else {
			d.cur.Store(m)
			d.freshUntil.Store(now.Add(d.TTL).UnixNano())
			cur, d.fetchedAt, d.lastErr = m, now, nil
		}
	}
	if cur == nil {
		return nil, fmt.Errorf("upstream discovery for issuer %s unavailable: %w", d.Issuer, d.lastErr)
	}
	return cur, nil
}

func (d *Discovery) now() time.Time { return clock(d.Now) }

// metadataURLs returns where the metadata of issuer is looked for, in order:
// OpenID Connect Discovery's (the well-known suffix appended to the issuer,
// OIDC Discovery §4.1) and RFC 8414's (the well-known prefix inserted between
// the host and the issuer's path, RFC 8414 §3.1). For an issuer without a
// path both are at the root.
func metadataURLs(issuer string) ([]string, error) {
	u, err := ParseIssuer(issuer)
	if err != nil {
		return nil, err
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	origin := u.Scheme + "://" + u.Host
	return []string{
		origin + path + "/.well-known/openid-configuration",
		origin + "/.well-known/oauth-authorization-server" + path,
	}, nil
}

// ParseIssuer checks that issuer is an issuer identifier as RFC 8414 §2 and
// OIDC Discovery §3 define it: an absolute http or https URL with a host and
// no query, fragment or user info. (Both require https; http is accepted so
// that a server on a private network can be reached without TLS.)
func ParseIssuer(issuer string) (*url.URL, error) {
	u, err := url.Parse(issuer)
	switch {
	case err != nil:
		return nil, fmt.Errorf("issuer %q is not a URL: %w", issuer, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("issuer %q must be an http:// or https:// URL", issuer)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#"):
		return nil, fmt.Errorf("issuer %q must not have a query or a fragment", issuer)
	case u.User != nil:
		return nil, fmt.Errorf("issuer %q must not have user info", issuer)
	}
	return u, nil
}

// fetch tries the metadata URLs in order and returns the first acceptable
// document; when none is, the error names what each answered.
func (d *Discovery) fetch(ctx context.Context) (*Metadata, error) {
	urls, err := metadataURLs(d.Issuer)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, u := range urls {
		m, err := d.fetchOne(ctx, u)
		if err == nil {
			return m, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, bounded(err)))
		if errors.Is(err, errWrongIssuer) {
			// The server answered with a document for another issuer: the
			// other URL would not make it right, and its error would hide
			// this one.
			break
		}
	}
	return nil, errors.Join(errs...)
}

var errWrongIssuer = errors.New("wrong issuer")

func (d *Discovery) fetchOne(ctx context.Context, docURL string) (*Metadata, error) {
	client := http.Client{Timeout: 10 * time.Second}
	if d.Client != nil {
		client = *d.Client
	}
	// A redirect would let another URL speak for the issuer.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	body, err := getBounded(ctx, &client, docURL, maxMetadataSize, "metadata document", func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
			return fmt.Errorf("status %s, redirecting to %.200q: redirects are not followed; configure the issuer exactly as the server names itself", resp.Status, loc)
		}
		return fmt.Errorf("status %s", resp.Status)
	})
	if err != nil {
		return nil, err
	}
	return parseMetadata(body, d.Issuer, docURL)
}

// parseMetadata reads a discovery document and checks it against the
// configured issuer.
func parseMetadata(body []byte, issuer, source string) (*Metadata, error) {
	var doc struct {
		Issuer  *string `json:"issuer"`
		JWKSURI *string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("metadata document is not a JSON object with string issuer and jwks_uri members")
	}
	switch {
	case doc.Issuer == nil:
		return nil, errors.New("metadata document has no issuer")
	case *doc.Issuer != issuer:
		return nil, fmt.Errorf("%w: the document's issuer is %.200q, the configured one %q; they must be identical (OpenID Connect Discovery §4.3, RFC 8414 §3.3)",
			errWrongIssuer, *doc.Issuer, issuer)
	case doc.JWKSURI == nil || *doc.JWKSURI == "":
		return nil, errors.New("metadata document has no jwks_uri")
	}
	iu, _ := url.Parse(issuer)
	ju, err := url.Parse(*doc.JWKSURI)
	switch {
	case err != nil || ju.Host == "" || ju.Opaque != "" || ju.User != nil || ju.Fragment != "":
		return nil, fmt.Errorf("metadata jwks_uri %.200q is not an absolute URL without user info or fragment", *doc.JWKSURI)
	case ju.Scheme != "https" && ju.Scheme != "http":
		return nil, fmt.Errorf("metadata jwks_uri %.200q must be an http:// or https:// URL", *doc.JWKSURI)
	case ju.Scheme == "http" && iu != nil && iu.Scheme == "https":
		// The keys that verify every token must come at least as securely
		// as the document that named them.
		return nil, fmt.Errorf("metadata jwks_uri %.200q is http while the issuer is https", *doc.JWKSURI)
	}
	return &Metadata{Issuer: *doc.Issuer, JWKSURI: ju.String(), JWKSPath: ju.Path, Source: source}, nil
}

// DiscoveredJWKS is the KeyProvider of a discovered jwks_uri: it looks the
// document up on every lookup (cached by Discovery) and asks a RemoteJWKS for
// its jwks_uri, made with New, for the keys; a new jwks_uri gets a new one.
// Until the document is fetched, every lookup fails, so exchanges fail
// closed.
type DiscoveredJWKS struct {
	Discovery *Discovery
	// New makes the RemoteJWKS for a jwks_uri.
	New func(jwksURI string) *RemoteJWKS

	mu  sync.Mutex
	url string
	jwk *RemoteJWKS
}

// LookupKeys implements KeyProvider.
func (d *DiscoveredJWKS) LookupKeys(ctx context.Context, kid string) ([]jwk.Key, error) {
	m, err := d.Discovery.Get(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.jwk == nil || d.url != m.JWKSURI {
		d.url, d.jwk = m.JWKSURI, d.New(m.JWKSURI)
	}
	remote := d.jwk
	d.mu.Unlock()
	return remote.LookupKeys(ctx, kid)
}

// ExcludeKeys hides from Keys every key whose RFC 7638 thumbprint is one of
// Own's: an upstream JWKS fetched through the proxy (a jwks_uri on the
// proxy's own host) holds the proxy's public keys, and the proxy must never
// take a token it signed itself for one the upstream issued.
type ExcludeKeys struct {
	Keys KeyProvider
	// Own returns the proxy's public keys; it is called on every lookup, so
	// rotated keys are excluded as soon as they are published.
	Own func() []jwk.Key

	// thumbprints are those of the key objects seen, by object: the own
	// keys (the signers') and a fetched upstream set are the same objects
	// for many exchanges, and a thumbprint is the key's public material
	// hashed, which costs more than the rest of the lookup.
	mu          sync.Mutex
	thumbprints map[jwk.Key]string
}

// maxThumbprints bounds ExcludeKeys' memory: each upstream refetch brings
// new key objects, and the map starts over when it is full.
const maxThumbprints = 256

// LookupKeys implements KeyProvider.
func (e *ExcludeKeys) LookupKeys(ctx context.Context, kid string) ([]jwk.Key, error) {
	keys, err := e.Keys.LookupKeys(ctx, kid)
	if err != nil || e.Own == nil {
		return keys, err
	}
	own := e.Own()
	if len(own) == 0 {
		return keys, nil
	}
	mine := make(map[string]bool, len(own))
	for _, k := range own {
		if tp := e.thumbprint(k); tp != "" {
			mine[tp] = true
		}
	}
	out := keys[:0:0]
	for _, k := range keys {
		// A key whose thumbprint cannot be had cannot be shown not to be
		// the proxy's: it is left out.
		if tp := e.thumbprint(k); tp != "" && !mine[tp] {
			out = append(out, k)
		}
	}
	return out, nil
}

// thumbprint is k's RFC 7638 thumbprint, "" when it has none, remembered
// by key object. The map holds the object, so its identity cannot be
// reused by another key while it is remembered.
func (e *ExcludeKeys) thumbprint(k jwk.Key) string {
	if k == nil || !reflect.TypeOf(k).Comparable() {
		tp, _ := thumbprint(k)
		return tp
	}
	e.mu.Lock()
	tp, ok := e.thumbprints[k]
	e.mu.Unlock()
	if ok {
		return tp
	}
	tp, _ = thumbprint(k)
	e.mu.Lock()
	if e.thumbprints == nil || len(e.thumbprints) >= maxThumbprints {
		e.thumbprints = make(map[jwk.Key]string)
	}
	e.thumbprints[k] = tp
	e.mu.Unlock()
	return tp
}

// Interface guards
var (
	_ KeyProvider = (*DiscoveredJWKS)(nil)
	_ KeyProvider = (*ExcludeKeys)(nil)
)
