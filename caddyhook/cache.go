package caddyhook

import (
	"math"
	"sync"
	"time"

	"github.com/dop251/goja"
)

// Auth0's documented limits on the Actions cache.
const (
	cacheMaxEntries = 20
	cacheMaxKey     = 64
	cacheMaxValue   = 4096
	cacheMaxTotal   = 8192
	cacheDefaultTTL = 15 * time.Minute
	cacheMaxTTL     = 24 * time.Hour
)

// The error codes api.cache.set returns in {type: 'error', code}: Auth0's
// own (its Actions typings' CacheError), so that scripts testing r.code
// work unchanged.
const (
	// cacheKeySizeExceeded: the key is not a string of 1 to cacheMaxKey
	// bytes.
	cacheKeySizeExceeded = "CacheKeySizeExceeded"
	// cacheValueSizeExceeded: the value is not a string of at most
	// cacheMaxValue bytes.
	cacheValueSizeExceeded = "CacheValueSizeExceeded"
	// cacheSizeExceeded: the cache is full of entries the same action set
	// in the same run, so the new one has no room.
	cacheSizeExceeded = "CacheSizeExceeded"
	// cacheInvalidExpiry: ttl or expires_at is not a number, or ttl is not
	// positive.
	cacheInvalidExpiry = "InvalidExpiry"
	// cacheItemAlreadyExpired: expires_at is not in the future.
	cacheItemAlreadyExpired = "ItemAlreadyExpired"
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
	case key == "" || len(key) > cacheMaxKey:
		return cacheEntry{}, cacheKeySizeExceeded
	case len(value) > cacheMaxValue:
		return cacheEntry{}, cacheValueSizeExceeded
	case len(key)+len(value) > cacheMaxTotal:
		return cacheEntry{}, cacheSizeExceeded
	}
	now := c.now()
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		return cacheEntry{}, cacheItemAlreadyExpired
	}
	if ttl > 0 {
		if byTTL := now.Add(ttl); expiresAt.IsZero() || byTTL.Before(expiresAt) {
			expiresAt = byTTL
		}
	}
	if expiresAt.IsZero() {
		expiresAt = now.Add(cacheDefaultTTL)
	}
	if max := now.Add(cacheMaxTTL); expiresAt.After(max) {
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
	if ownCount >= cacheMaxEntries || ownSize > cacheMaxTotal {
		return cacheEntry{}, cacheSizeExceeded
	}
	delete(c.entries, key)
	for len(c.entries) >= cacheMaxEntries || c.size()+len(key)+len(value) > cacheMaxTotal {
		c.evictSoonest(own)
	}
	e := cacheEntry{value: value, expiresAt: expiresAt}
	c.entries[key] = e
	return e, ""
}

// ttlFromMillis reads api.cache.set's ttl option, in milliseconds: NaN,
// zero and negative values are invalid, and the value is capped at
// cacheMaxTTL before it is converted, so that no number can overflow into
// a negative duration.
func ttlFromMillis(ms float64, ok bool) (time.Duration, bool) {
	if !ok || !(ms > 0) {
		return 0, false
	}
	if ms >= float64(cacheMaxTTL/time.Millisecond) {
		return cacheMaxTTL, true
	}
	return max(time.Duration(ms*float64(time.Millisecond)), time.Millisecond), true
}

// expiryFromMillis reads api.cache.set's expires_at option, milliseconds
// since the epoch: NaN is invalid; a time not after now comes back as now,
// for set to refuse as already expired; the value is capped at now plus
// cacheMaxTTL before it is converted, so no number can overflow.
func expiryFromMillis(ms float64, ok bool, now time.Time) (time.Time, bool) {
	if !ok || math.IsNaN(ms) {
		return time.Time{}, false
	}
	if ms <= float64(now.UnixMilli()) {
		return now, true
	}
	if limit := now.Add(cacheMaxTTL); ms >= float64(limit.UnixMilli()) {
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

// cacheObject binds api.cache to the engine's cache for one action's run.
func (r *run) cacheObject() *goja.Object {
	a := &apiCache{r: r, c: r.eng.cache}
	w, vm := r.w, r.vm
	obj := w.newPlain()
	_ = obj.Set("get", vm.ToValue(a.get))
	_ = obj.Set("set", vm.ToValue(a.set))
	_ = obj.Set("delete", vm.ToValue(a.delete))
	return w.donePlain(obj)
}

// apiCache is api.cache of one action's run.
type apiCache struct {
	r *run
	c *ActionCache
	// mine holds the keys this action set in this run: eviction spares
	// them, so that a full cache fails the set (cacheSizeExceeded) rather
	// than silently dropping what the script itself just wrote. Once the
	// run has ended (a warm runtime's script kept this api) nothing is
	// recorded or spared, so the set cannot grow. Made on the first set.
	mine map[string]bool
}

func (a *apiCache) own(k string) bool { return !a.r.ended && a.mine[k] }

func (a *apiCache) record(e cacheEntry) *goja.Object {
	vm := a.r.vm
	o := vm.NewObject()
	define(vm, o, "value", e.value)
	define(vm, o, "expires_at", e.expiresAt.UnixMilli())
	return o
}

func (a *apiCache) result(e *cacheEntry, code string) *goja.Object {
	vm := a.r.vm
	o := vm.NewObject()
	if code != "" {
		define(vm, o, "type", "error")
		define(vm, o, "code", code)
		return o
	}
	define(vm, o, "type", "success")
	if e != nil {
		define(vm, o, "record", a.record(*e))
	}
	return o
}

func (a *apiCache) get(call goja.FunctionCall) goja.Value {
	k, ok := scriptString(call.Argument(0))
	if !ok {
		return goja.Undefined()
	}
	if e, found := a.c.get(k); found {
		return a.record(e)
	}
	return goja.Undefined()
}

func (a *apiCache) set(call goja.FunctionCall) goja.Value {
	c := a.c
	// A key or value that is not a string has no size the cache accepts;
	// it is not converted, which could run script code.
	k, ok := scriptString(call.Argument(0))
	if !ok {
		return a.result(nil, cacheKeySizeExceeded)
	}
	v, ok := scriptString(call.Argument(1))
	if !ok {
		return a.result(nil, cacheValueSizeExceeded)
	}
	var ttl time.Duration
	var expiresAt time.Time
	if opts, isObj := call.Argument(2).(*goja.Object); isObj {
		now := c.now()
		if t := opts.Get("ttl"); t != nil && !goja.IsUndefined(t) {
			ms, ok := cacheNumber(t)
			if ttl, ok = ttlFromMillis(ms, ok); !ok {
				return a.result(nil, cacheInvalidExpiry)
			}
		}
		if t := opts.Get("expires_at"); t != nil && !goja.IsUndefined(t) {
			ms, ok := cacheNumber(t)
			if expiresAt, ok = expiryFromMillis(ms, ok, now); !ok {
				return a.result(nil, cacheInvalidExpiry)
			}
		}
	}
	e, code := c.set(k, v, ttl, expiresAt, a.own)
	if code == "" && !a.r.ended {
		if a.mine == nil {
			a.mine = map[string]bool{}
		}
		a.mine[k] = true
	}
	return a.result(&e, code)
}

func (a *apiCache) delete(call goja.FunctionCall) goja.Value {
	k, ok := scriptString(call.Argument(0))
	if !ok {
		return a.result(nil, "")
	}
	delete(a.mine, k)
	if e, found := a.c.delete(k); found {
		return a.result(&e, "")
	}
	return a.result(nil, "")
}

// cacheNumber reads a cache option: a number, or a string holding one (as
// Number() would read it); anything else is not a valid option. It runs no
// script code.
func cacheNumber(v goja.Value) (float64, bool) {
	switch v.(type) {
	case *goja.Object, *goja.Symbol:
		return 0, false
	}
	if goja.IsNull(v) || goja.IsBigInt(v) {
		return 0, false
	}
	if goja.IsNumber(v) || goja.IsString(v) {
		return v.ToFloat(), true
	}
	return 0, false
}
