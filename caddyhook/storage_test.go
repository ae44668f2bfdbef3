package caddyhook

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func TestStorageKeyRule(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	x := storageKey("acme", "/srv/x/hook.js", "")
	y := storageKey("acme", "/srv/y/hook.js", "")
	if x == y {
		t.Fatalf("hooks with one base name in two folders share %s", x)
	}
	if !strings.HasPrefix(x, "caddyhook/webtask-storage/acme/hook.js~") || !strings.HasSuffix(x, ".json") {
		t.Errorf("derived key %s is not readable", x)
	}
	same := [][2]string{
		{"/srv/x/hook.js", "/srv/x/./hook.js"},
		{"/srv/x/hook.js", "/srv/x/sub/../hook.js"},
		{"hook.js", filepath.Join(cwd, "hook.js")},
		{"./dir/hook.js", filepath.Join(cwd, "dir", "hook.js")},
	}
	for _, p := range same {
		if a, b := storageKey("acme", p[0], ""), storageKey("acme", p[1], ""); a != b {
			t.Errorf("%s and %s are one file but have keys %s and %s", p[0], p[1], a, b)
		}
	}
	if storageKey("acme", "/srv/x/hook.js", "") == storageKey("other", "/srv/x/hook.js", "") {
		t.Error("two tenants share a document")
	}

	named := storageKey("acme", "/srv/x/hook.js", "shared")
	if named != "caddyhook/webtask-storage/acme/shared.json" {
		t.Errorf("named key = %s", named)
	}
	if named != storageKey("acme", "/other/place/else.js", "shared") {
		t.Error("a named document depends on the hook's path")
	}
	if named == storageKey("other", "/srv/x/hook.js", "shared") {
		t.Error("a named document is shared between tenants")
	}

	// Names that clean alike never share a key, and no key leaves the
	// folder or is a derived key.
	distinct := map[string]string{}
	for _, ns := range []string{"", "default", "_none", "a/b", "a_b", "a b", "../..", ".", "ACME", "acme"} {
		for _, doc := range []string{"", "shared", "a/b", "a_b", "../../etc/passwd", "..", "x~y", strings.Repeat("n", 300), strings.Repeat("n", 301),
			strings.TrimSuffix(path.Base(x), ".json")} {
			key := storageKey(ns, "/srv/x/hook.js", doc)
			if other, dup := distinct[key]; dup {
				t.Errorf("%q and %q/%q share %s", other, ns, doc, key)
			}
			distinct[key] = ns + "/" + doc
			if path.Clean(key) != key || strings.Contains(key, "..") || !strings.HasPrefix(key, "caddyhook/webtask-storage/") {
				t.Errorf("key %s for %q/%q is not a plain key under the storage folder", key, ns, doc)
			}
			if strings.Count(key, "/") != 3 {
				t.Errorf("key %s has a nested folder", key)
			}
		}
	}
}

// TestWebtaskStorageSeparatesHookFiles: two sites whose hooks have one base
// name no longer read each other's document, unless the operator names one
// document for both.
func TestWebtaskStorageSeparatesHookFiles(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	src := []byte(`module.exports = function (client, scope, audience, context, cb) {
		const storage = context.webtask.storage;
		storage.get(function (error, data) {
			if (error) return cb(error);
			data = data || { by: [] };
			data.by.push(context.body.site);
			storage.set(data, function (error) {
				if (error) return cb(error);
				cb(null, { 'https://t.example/by': data.by });
			});
		});
	};`)
	site := func(dir, documentName string) *Engine {
		s, err := Compile(filepath.Join(dir, "hook.js"), src, HookKind)
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(Config{Hook: s, Storage: st, StorageNamespace: "acme", StorageKey: documentName})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	run := func(e *Engine, name string) string {
		in := input()
		in.Request.Body = map[string]any{"site": name}
		res, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		return string(res.Claims["https://t.example/by"])
	}
	x, y := site("/sites/x", ""), site("/sites/y", "")
	run(x, "x")
	if got := run(y, "y"); got != `["y"]` {
		t.Errorf("site y read site x's document: %s", got)
	}
	if got := run(site("/sites/x", ""), "x2"); got != `["x","x2"]` {
		t.Errorf("a second instance of site x did not share its document: %s", got)
	}
	a, b := site("/mnt/a", "shared"), site("/srv/b", "shared")
	run(a, "a")
	if got := run(b, "b"); got != `["a","b"]` {
		t.Errorf("two sites naming one document do not share it: %s", got)
	}
}

// TestWebtaskStorageGetEmptyIsNull: a document never stored reads as null,
// as on Auth0, so that hooks testing data === null work unchanged.
func TestWebtaskStorageGetEmptyIsNull(t *testing.T) {
	src := []byte(`module.exports = function (client, scope, audience, context, cb) {
		context.webtask.storage.get(function (error, data) {
			if (error) return cb(error);
			cb(null, { 'https://t.example/data': data === null ? 'null' : typeof data, 'https://t.example/args': arguments.length });
		});
	};`)
	s, err := Compile("empty.js", src, HookKind)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{Hook: s, Storage: &certmagic.FileStorage{Path: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), input())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Claims["https://t.example/data"]); got != `"null"` {
		t.Errorf("get of an empty storage gave %s, want null", got)
	}
	if got := string(res.Claims["https://t.example/args"]); got != `2` {
		t.Errorf("get's callback had %s arguments, want 2", got)
	}
}

// blockingStorage holds every Load until its exchange ends, counting the
// Loads under way at once.
type blockingStorage struct {
	Storage
	now, most atomic.Int32
}

func (s *blockingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	n := s.now.Add(1)
	defer s.now.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStorageInFlightBounded: a hook cannot start storage operations
// without limit (each holds a goroutine, and a set the storage lock, until
// it is done): past maxStorageInflight under way, a call throws.
//
// The bound is the exchange's: calling the storage accessor's getter again
// for a new storage object each time (found by review) does not reset it.
func TestStorageInFlightBounded(t *testing.T) {
	for name, storage := range map[string]string{
		"one object":         `context.webtask.storage`,
		"an object per call": `getter.call(context.webtask)`,
	} {
		t.Run(name, func(t *testing.T) {
			st := &blockingStorage{}
			e := engine(t, compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
				const getter = Object.getOwnPropertyDescriptor(context.webtask, 'storage').get;
				let started = 0, threw = null, fresh = 0, last = null;
				for (; started < 1000; started++) {
					try {
						const s = `+storage+`;
						if (s !== last) fresh++;
						last = s;
						s.get(() => {});
					} catch (e) { threw = e.message; break; }
				}
				cb(null, { scope, started, threw, fresh });
			};`), func(c *Config) { c.Storage = st })
			res, err := e.Run(context.Background(), input())
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(res.Claims["started"]), strconv.Itoa(maxStorageInflight); got != want {
				t.Fatalf("storage operations started = %s, want %s (threw %s; %s storage objects)", got, want, res.Claims["threw"], res.Claims["fresh"])
			}
			if got := st.most.Load(); got > maxStorageInflight {
				t.Fatalf("%d Loads under way at once", got)
			}
			t.Logf("%s storage objects", res.Claims["fresh"])
		})
	}
}

// slowLockStorage takes 50 ms to lock, giving up when its context ends,
// and hands on what is stored.
type slowLockStorage struct {
	Storage
	stored chan []byte
}

func (s *slowLockStorage) Lock(ctx context.Context, _ string) error {
	select {
	case <-time.After(50 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowLockStorage) Unlock(context.Context, string) error { return nil }

func (s *slowLockStorage) Store(_ context.Context, _ string, v []byte) error {
	s.stored <- v
	return nil
}

// TestStorageSetNotAwaitedFinishes: a set the hook does not wait for is
// still written after the exchange ends (within its deadline), as an
// outbound call is; only its callback never runs.
func TestStorageSetNotAwaitedFinishes(t *testing.T) {
	st := &slowLockStorage{stored: make(chan []byte, 1)}
	e := engine(t, compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		context.webtask.storage.set({ audit: 1 }, { force: 1 }, () => {});
		cb(null, { scope });
	};`), func(c *Config) { c.Storage = st })
	if _, err := e.Run(context.Background(), input()); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-st.stored:
		if string(v) != `{"audit":1}` {
			t.Fatalf("stored %s", v)
		}
	case <-time.After(time.Second):
		t.Fatal("a set the hook did not await was dropped when the exchange ended")
	}
}

// TestStorageAccessor: context.webtask.storage is an enumerable accessor
// until first read or written, then a data member; the worker's accessor
// serves receivers that lead to this exchange's webtask (a prototype chain,
// a proxy) as its own, and a webtask kept from an ended exchange gets a
// storage that refuses, settled on it; the accessor carries nothing from one
// exchange to the next.
func TestStorageAccessor(t *testing.T) {
	e := engine(t, compileHook(t, `
	let kept;
	module.exports = function (client, scope, audience, context, cb) {
		const out = {};
		const w = context.webtask;
		const d = Object.getOwnPropertyDescriptor(w, 'storage');
		out.before = [typeof d.get, typeof d.set, d.enumerable, d.configurable, 'value' in d, Object.keys(w).join()];
		out.frozen = [Object.isFrozen(d.get), Object.isFrozen(d.set)];
		try { d.get.carried = context.hostname; } catch (e) {}
		out.carried = d.get.carried === undefined;
		const derived = Object.create(w);
		const s = derived.storage;
		const after = Object.getOwnPropertyDescriptor(w, 'storage');
		out.derived = [typeof s.get, typeof s.set, after.value === s, after.enumerable, after.writable, after.configurable, !Object.prototype.hasOwnProperty.call(derived, 'storage')];
		out.stable = w.storage === s;
		out.json = JSON.stringify(context.webtask);
		if (kept) {
			let threw = null;
			const ks = kept.storage;
			try { ks.get(() => {}); threw = false; } catch (e) { threw = e.message; }
			out.kept = [threw, kept.storage === ks, Object.getOwnPropertyDescriptor(kept, 'storage').value === ks];
			const plain = d.get.call({});
			try { plain.get(() => {}); threw = false; } catch (e) { threw = e.message; }
			out.detached = threw;
		}
		kept = context.webtask;
		// A fresh context: written before read, and read through a proxy.
		cb(null, { scope, 'https://t.example/out': out });
	};`), func(c *Config) { c.Storage = &certmagic.FileStorage{Path: t.TempDir()} })
	for i := 0; i < 2; i++ {
		res, err := e.Run(context.Background(), input())
		if err != nil {
			t.Fatal(err)
		}
		got := string(res.Claims["https://t.example/out"])
		want := `{"before":["function","function",true,true,false,"secrets,storage"],"frozen":[true,true],"carried":true,` +
			`"derived":["function","function",true,true,true,true,true],"stable":true,"json":"{\"secrets\":{},\"storage\":{}}"`
		if i == 1 {
			want += `,"kept":["` + string(errExchangeEnded) + `",true,true],"detached":"` + string(errExchangeEnded) + `"`
		}
		if want += "}"; got != want {
			t.Errorf("exchange %d:\n got %s\nwant %s", i, got, want)
		}
	}

	e = engine(t, compileHook(t, `module.exports = function (client, scope, audience, context, cb) {
		const w = context.webtask, out = {};
		if (context.body.write) {
			w.storage = 42;
			const d = Object.getOwnPropertyDescriptor(w, 'storage');
			out.written = [d.value, d.enumerable, d.writable, d.configurable];
		} else {
			const s = new Proxy(w, {}).storage;
			out.proxied = [typeof s.get, Object.getOwnPropertyDescriptor(w, 'storage').value === s];
		}
		cb(null, { 'https://t.example/out': out });
	};`), nil)
	for body, want := range map[string]string{"write": `{"written":[42,true,true,true]}`, "read": `{"proxied":["function",true]}`} {
		in := input()
		in.Request.Body = map[string]any{body: true}
		res, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res.Claims["https://t.example/out"]); got != want {
			t.Errorf("%s: got %s, want %s", body, got, want)
		}
	}
}
