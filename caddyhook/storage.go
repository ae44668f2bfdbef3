package caddyhook

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/dop251/goja"
)

// MaxStorageSize is Auth0's limit on one hook's storage document.
const MaxStorageSize = 500 * 1024

// Storage keeps context.webtask.storage documents. Caddy's storage modules
// (certmagic.Storage) satisfy it, so every instance sharing a storage shares
// the documents.
type Storage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

var unsafeKeyChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// StorageKey is where a hook's document is kept: one per namespace (tenant)
// and hook file name, so instances that mount the hook at different paths
// still share it.
func StorageKey(namespace, scriptName string) string {
	if namespace == "" {
		namespace = "default"
	}
	clean := func(s string) string { return strings.Trim(unsafeKeyChars.ReplaceAllString(s, "_"), "_.") }
	return path.Join("caddyhook", "webtask-storage", clean(namespace), clean(filepath.Base(scriptName))+".json")
}

func etagOf(data []byte) string {
	if data == nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%x", sum[:8])
}

// storage builds context.webtask.storage for one hook run: get(cb) and
// set(data, [{force}], cb). Like Auth0's, set without force fails with a
// 409 conflict when the document changed since this run's last get.
func (r *run) storage(s *Script) *goja.Object {
	vm := r.vm
	key := StorageKey(r.eng.cfg.StorageNamespace, s.Name)
	st := r.eng.cfg.Storage
	var lastSeen *string // etag of the last get, nil before any get

	callback := func(v goja.Value) goja.Callable {
		cb, ok := goja.AssertFunction(v)
		if !ok {
			panic(vm.NewTypeError("the callback argument must be a function"))
		}
		return cb
	}
	obj := vm.NewObject()
	_ = obj.Set("get", func(call goja.FunctionCall) goja.Value {
		cb := callback(call.Argument(0))
		r.loop.async(func() func() error {
			data, err := loadDoc(r.ctx, st, key)
			return func() error {
				if err != nil {
					_, cerr := cb(goja.Undefined(), r.newError(err.Error(), 500))
					return cerr
				}
				tag := etagOf(data)
				lastSeen = &tag
				value := goja.Undefined()
				if data != nil {
					value, _ = r.parse(goja.Undefined(), vm.ToValue(string(data)))
				}
				_, cerr := cb(goja.Undefined(), goja.Null(), value)
				return cerr
			}
		})
		return goja.Undefined()
	})
	_ = obj.Set("set", func(call goja.FunctionCall) goja.Value {
		force := false
		cbArg := call.Argument(1)
		if opts, ok := cbArg.(*goja.Object); ok {
			if _, isFn := goja.AssertFunction(cbArg); !isFn {
				force = opts.Get("force") != nil && opts.Get("force").ToBoolean()
				cbArg = call.Argument(2)
			}
		}
		cb := callback(cbArg)
		raw, ok, err := r.toJSON(call.Argument(0))
		if err != nil {
			panic(err)
		}
		var expect *string
		if !force && lastSeen != nil {
			e := *lastSeen
			expect = &e
		}
		r.loop.async(func() func() error {
			var status int
			var err error
			switch {
			case !ok:
				status, err = 400, errors.New("storage data must be a JSON value")
			case len(raw) > MaxStorageSize:
				status, err = 400, fmt.Errorf("storage data is %d bytes, more than the %d allowed", len(raw), MaxStorageSize)
			default:
				status, err = storeDoc(r.ctx, st, key, raw, expect)
			}
			return func() error {
				if err != nil {
					_, cerr := cb(goja.Undefined(), r.newError(err.Error(), status))
					return cerr
				}
				tag := etagOf(raw)
				lastSeen = &tag
				_, cerr := cb(goja.Undefined(), goja.Null())
				return cerr
			}
		})
		return goja.Undefined()
	})
	return obj
}

func loadDoc(ctx context.Context, st Storage, key string) ([]byte, error) {
	if st == nil {
		return nil, errors.New("storage is not configured")
	}
	data, err := st.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading storage: %w", err)
	}
	return data, nil
}

// storeDoc writes data under the storage lock; with expect set, only if the
// document still has that etag.
func storeDoc(ctx context.Context, st Storage, key string, data []byte, expect *string) (int, error) {
	if st == nil {
		return 500, errors.New("storage is not configured")
	}
	if err := st.Lock(ctx, key); err != nil {
		return 500, fmt.Errorf("locking storage: %w", err)
	}
	defer func() { _ = st.Unlock(context.Background(), key) }()
	if expect != nil {
		current, err := loadDoc(ctx, st, key)
		if err != nil {
			return 500, err
		}
		if etagOf(current) != *expect {
			return 409, errors.New("conflict: the storage document changed since it was read; get it again, or set with {force: 1}")
		}
	}
	if err := st.Store(ctx, key, data); err != nil {
		return 500, fmt.Errorf("writing storage: %w", err)
	}
	return 0, nil
}

// newError makes a JavaScript Error with a code, as webtask storage errors have.
func (r *run) newError(msg string, code int) goja.Value {
	e, err := r.vm.New(r.errorCtor, r.vm.ToValue(msg))
	if err != nil {
		return r.vm.ToValue(msg)
	}
	if code != 0 {
		_ = e.Set("code", code)
		_ = e.Set("statusCode", code)
	}
	return e
}
