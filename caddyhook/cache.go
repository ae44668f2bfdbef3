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

// The error codes api.cache.set returns in {type: 'error', code}.
const (
	CacheInvalidKey     = "INVALID_KEY"
	CacheInvalidValue   = "INVALID_VALUE"
	CacheInvalidOptions = "INVALID_OPTIONS"
)

// ActionCache is api.cache: string values, per Caddy instance, shared by the
// actions of one handler, bounded as Auth0 bounds it. When full it evicts the
// entries closest to expiry, since a cache may forget but must not fail. It
// is safe for concurrent use.
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

// set stores value under key until expiresAt, or for ttl, or for the
// default 15 minutes; lifetimes are capped at 24 hours.
func (c *ActionCache) set(key, value string, ttl time.Duration, expiresAt time.Time) (cacheEntry, string) {
	switch {
	case key == "" || len(key) > CacheMaxKey:
		return cacheEntry{}, CacheInvalidKey
	case len(value) > CacheMaxValue || len(key)+len(value) > CacheMaxTotal:
		return cacheEntry{}, CacheInvalidValue
	}
	now := c.now()
	switch {
	case !expiresAt.IsZero():
		if !expiresAt.After(now) {
			return cacheEntry{}, CacheInvalidOptions
		}
	case ttl > 0:
		expiresAt = now.Add(ttl)
	default:
		expiresAt = now.Add(CacheDefaultTTL)
	}
	if max := now.Add(CacheMaxTTL); expiresAt.After(max) {
		expiresAt = max
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
	for k, e := range c.entries {
		if !now.Before(e.expiresAt) {
			delete(c.entries, k)
		}
	}
	for len(c.entries) >= CacheMaxEntries || c.size()+len(key)+len(value) > CacheMaxTotal {
		c.evictSoonest()
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
// since the epoch: NaN and times not after now are invalid, and the value
// is capped at now plus CacheMaxTTL before it is converted.
func expiryFromMillis(ms float64, ok bool, now time.Time) (time.Time, bool) {
	if !ok || math.IsNaN(ms) || ms <= float64(now.UnixMilli()) {
		return time.Time{}, false
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

func (c *ActionCache) evictSoonest() {
	var victim string
	var soonest time.Time
	for k, e := range c.entries {
		if victim == "" || e.expiresAt.Before(soonest) {
			victim, soonest = k, e.expiresAt
		}
	}
	delete(c.entries, victim)
}
