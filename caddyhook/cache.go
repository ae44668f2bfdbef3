package caddyhook

import (
	"math"
	"sync"
	"time"
)

// Auth0's documented limits on the Actions cache.
const (
	CacheMaxEntries = 20
	CacheMaxKey     = 64
	CacheMaxValue   = 4096
	CacheMaxTotal   = 8192
	CacheDefaultTTL = 15 * time.Minute
	CacheMaxTTL     = 24 * time.Hour
)

// The error codes api.cache.set returns in {type: 'error', code}: Auth0's
// own (its Actions typings' CacheError), so that scripts testing r.code
// work unchanged.
const (
	// CacheKeySizeExceeded: the key is not a string of 1 to CacheMaxKey
	// bytes.
	CacheKeySizeExceeded = "CacheKeySizeExceeded"
	// CacheValueSizeExceeded: the value is not a string of at most
	// CacheMaxValue bytes.
	CacheValueSizeExceeded = "CacheValueSizeExceeded"
	// CacheSizeExceeded: the cache is full of entries the same action set
	// in the same run, so the new one has no room.
	CacheSizeExceeded = "CacheSizeExceeded"
	// CacheInvalidExpiry: ttl or expires_at is not a number, or ttl is not
	// positive.
	CacheInvalidExpiry = "InvalidExpiry"
	// CacheItemAlreadyExpired: expires_at is not in the future.
	CacheItemAlreadyExpired = "ItemAlreadyExpired"
)

// ActionCache is api.cache: string values, per Caddy instance, shared by the
// actions of one handler, bounded as Auth0 bounds it. When full it evicts the
// entries closest to expiry, since a cache may forget (Auth0: "Items may not
// be available in later transactions even if they are within their
// specified lifetime"); it fails a set only when the action's own writes of
// this run fill it. It is safe for concurrent use.
type ActionCache struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[string]cacheEntry
}

type cacheEntry struct {
	value     string
	expiresAt time.Time
}

// NewActionCache returns an empty cache; hand it to engines through
// Config.Cache to keep its entries across engines (config reloads).
func NewActionCache() *ActionCache { return newActionCache(time.Now) }

func newActionCache(now func() time.Time) *ActionCache {
	return &ActionCache{now: now, entries: map[string]cacheEntry{}}
}

func (c *ActionCache) get(key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if ok && !c.now().Before(e.expiresAt) {
		delete(c.entries, key)
		return cacheEntry{}, false
	}
	return e, ok
}

// set stores value under key until the earlier of now+ttl and expiresAt
// (Auth0: "If both options are supplied, the earlier expiry of the two will
// be used"), or for the default 15 minutes when neither is given; lifetimes
// are capped at 24 hours. A zero ttl or expiresAt is not given. When the
// cache is full it makes room by evicting the entries closest to expiry,
// but never one that own reports as set by the same action in the same run:
// a script must not lose its own writes without being told.
func (c *ActionCache) set(key, value string, ttl time.Duration, expiresAt time.Time, own func(string) bool) (cacheEntry, string) {
	switch {
	case key == "" || len(key) > CacheMaxKey:
		return cacheEntry{}, CacheKeySizeExceeded
	case len(value) > CacheMaxValue:
		return cacheEntry{}, CacheValueSizeExceeded
	case len(key)+len(value) > CacheMaxTotal:
		return cacheEntry{}, CacheSizeExceeded
	}
	now := c.now()
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		return cacheEntry{}, CacheItemAlreadyExpired
	}
	if ttl > 0 {
		if byTTL := now.Add(ttl); expiresAt.IsZero() || byTTL.Before(expiresAt) {
			expiresAt = byTTL
		}
	}
	if expiresAt.IsZero() {
		expiresAt = now.Add(CacheDefaultTTL)
	}
	if max := now.Add(CacheMaxTTL); expiresAt.After(max) {
		expiresAt = max
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if !now.Before(e.expiresAt) {
			delete(c.entries, k)
		}
	}
	// Room is checked before anything is evicted, so that a set that fails
	// leaves the cache as it was.
	ownCount, ownSize := 0, len(key)+len(value)
	for k, e := range c.entries {
		if k != key && own != nil && own(k) {
			ownCount++
			ownSize += len(k) + len(e.value)
		}
	}
	if ownCount >= CacheMaxEntries || ownSize > CacheMaxTotal {
		return cacheEntry{}, CacheSizeExceeded
	}
	delete(c.entries, key)
	for len(c.entries) >= CacheMaxEntries || c.size()+len(key)+len(value) > CacheMaxTotal {
		c.evictSoonest(own)
	}
	e := cacheEntry{value: value, expiresAt: expiresAt}
	c.entries[key] = e
	return e, ""
}

// ttlFromMillis reads api.cache.set's ttl option, in milliseconds: NaN,
// zero and negative values are invalid, and the value is capped at
// CacheMaxTTL before it is converted, so that no number can overflow into
// a negative duration.
func ttlFromMillis(ms float64, ok bool) (time.Duration, bool) {
	if !ok || !(ms > 0) {
		return 0, false
	}
	if ms >= float64(CacheMaxTTL/time.Millisecond) {
		return CacheMaxTTL, true
	}
	return max(time.Duration(ms*float64(time.Millisecond)), time.Millisecond), true
}

// expiryFromMillis reads api.cache.set's expires_at option, milliseconds
// since the epoch: NaN is invalid; a time not after now comes back as now,
// for set to refuse as already expired; the value is capped at now plus
// CacheMaxTTL before it is converted, so no number can overflow.
func expiryFromMillis(ms float64, ok bool, now time.Time) (time.Time, bool) {
	if !ok || math.IsNaN(ms) {
		return time.Time{}, false
	}
	if ms <= float64(now.UnixMilli()) {
		return now, true
	}
	if limit := now.Add(CacheMaxTTL); ms >= float64(limit.UnixMilli()) {
		return limit, true
	}
	return time.UnixMilli(int64(ms)), true
}

func (c *ActionCache) delete(key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	delete(c.entries, key)
	return e, ok
}

func (c *ActionCache) size() int {
	n := 0
	for k, e := range c.entries {
		n += len(k) + len(e.value)
	}
	return n
}

// evictSoonest evicts the entry closest to expiry that own does not claim.
func (c *ActionCache) evictSoonest(own func(string) bool) {
	var victim string
	var soonest time.Time
	found := false
	for k, e := range c.entries {
		if own != nil && own(k) {
			continue
		}
		if !found || e.expiresAt.Before(soonest) {
			victim, soonest, found = k, e.expiresAt, true
		}
	}
	delete(c.entries, victim)
}
