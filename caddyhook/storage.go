package caddyhook

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/dop251/goja"
)

// maxStorageSize is Auth0's limit on one hook's storage document.
const maxStorageSize = 500 * 1024

// maxStorageInflight bounds the storage operations one exchange has under
// way at once: each holds a goroutine, and a set the storage lock, until it
// is done.
const maxStorageInflight = 16

const errTooManyStorageCalls = textError("too many storage operations under way at once")

// Storage keeps context.webtask.storage documents. Caddy's storage modules
// (certmagic.Storage) satisfy it, so every instance sharing a storage shares
// the documents.
type Storage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// storageKey is where a hook's context.webtask.storage document is kept:
//
//	caddyhook/webtask-storage/<namespace>/<document>.json
//
// namespace separates tenants ("" is a namespace of its own). The document
// is named by the operator when documentName is not empty, so that hooks
// at different paths (or machines that mount one hook at different paths)
// share it. Otherwise it is derived from the hook file's full path, made
// absolute (against the working directory) and cleaned: the file's base
// name, for people, and a hash of the whole path, so that two hooks with the
// same base name in different folders never share a document. Instances of
// one hook file at one path and tenant share their document, which is the
// point: several Caddy instances on one storage see the same data.
//
// Names are used as they are when they are safe in any storage (letters,
// digits, '.', '_' and '-', starting with a letter or digit, at most 100
// bytes); any other name is cleaned and given a hash of itself, so that no
// two names ever share a key.
func storageKey(namespace, scriptPath, documentName string) string {
	ns := "_none"
	if namespace != "" {
		ns = keyComponent("namespace", namespace)
	}
	var doc string
	if documentName != "" {
		doc = keyComponent("document", documentName)
	} else {
		abs, err := filepath.Abs(scriptPath)
		if err != nil {
			abs = scriptPath
		}
		abs = filepath.Clean(abs)
		base := cleanKeyChars(filepath.Base(abs))
		if base == "" {
			base = "hook"
		}
		// '~' never appears in a name used as it is, so a derived name
		// cannot be one an operator chose.
		doc = base + "~" + keyHash("script", filepath.ToSlash(abs))
	}
	return path.Join("caddyhook", "webtask-storage", ns, doc+".json")
}

var (
	safeKeyName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	unsafeKeyChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
)

// keyComponent returns name when it is safe as it is, and otherwise a
// cleaned, shortened form with a hash of the name.
func keyComponent(kind, name string) string {
	if safeKeyName.MatchString(name) {
		return name
	}
	clean := cleanKeyChars(name)
	if len(clean) > 64 {
		clean = clean[:64]
	}
	return clean + "~" + keyHash(kind, name)
}

func cleanKeyChars(s string) string {
	return strings.Trim(unsafeKeyChars.ReplaceAllString(s, "_"), "_.")
}

// keyHash is a short hash of what, separated by kind so that a namespace,
// a document name and a path never hash alike.
func keyHash(kind, what string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + what))
	return fmt.Sprintf("%x", sum[:8])
}

func etagOf(data []byte) string {
	if data == nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%x", sum[:8])
}

// context.webtask.storage is built when a hook first reads it: most never
// do, and building it costs two native functions and their closures. It is
// an enumerable, configurable accessor that builds the storage on first
// read and then becomes a plain data member, as if it had always been one;
// a script may also overwrite it before reading it.
//
// The getter and setter are made once per worker, not once per run as
// closures over the run would be (two more native functions on every
// exchange). They find the run from their receiver: the webtask object of
// the exchange under way, or an object whose prototype chain (or proxy
// target) leads to it, gets that exchange's storage and has it settled on
// it, as before. Any other webtask object (one a script kept from an
// exchange that has ended) gets a storage that refuses to work, settled on
// it, which is what its own accessor gave it before. The two functions are
// frozen, so that nothing a script hangs on them outlives its exchange.
// What differs from accessors made per run is only that a script can see
// they are the same functions in every exchange, and frozen, and that
// calling one detached, on a receiver that is no webtask, gives a refusing
// storage and settles nothing.

// storageAccessors returns the getter and setter of webtask.storage.
func (w *worker) storageAccessors() (get, set goja.Value) {
	if w.storageGet == nil {
		w.storageGet = w.frozen(w.storageGetter)
		w.storageSet = w.frozen(w.storageSetter)
	}
	return w.storageGet, w.storageSet
}

func (w *worker) storageGetter(call goja.FunctionCall) goja.Value {
	r, holder := w.storageHolder(call.This)
	v := r.storage()
	if holder != nil {
		_ = holder.DefineDataProperty("storage", v, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
	}
	return v
}

func (w *worker) storageSetter(call goja.FunctionCall) goja.Value {
	if _, holder := w.storageHolder(call.This); holder != nil {
		_ = holder.DefineDataProperty("storage", call.Argument(0), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
	}
	return goja.Undefined()
}

// maxHolderSearch bounds the prototype chain storageHolder follows.
const maxHolderSearch = 64

var proxyType = reflect.TypeOf(goja.Proxy{})

// storageHolder finds the webtask object an access to storage with
// receiver this is for, following the prototype chain (and proxy targets:
// no trap runs) from this: the run under way for its own webtask, and an
// ended run for another one whose storage member is still the accessor.
// holder is nil when this leads to no webtask.
func (w *worker) storageHolder(this goja.Value) (r *run, holder *goja.Object) {
	cur := w.run
	obj, _ := this.(*goja.Object)
	if cur != nil && cur.webtask != nil {
		for o, i := obj, 0; o != nil && i < maxHolderSearch; i++ {
			if o == cur.webtask {
				return cur, o
			}
			o = w.nextHolder(o)
		}
	}
	// Its storage throws (ensureLive) before it reads anything else of the
	// run: it carries nothing of the exchange under way.
	ended := &run{eng: w.eng, w: w, vm: w.vm, loop: w.loop, ctx: context.Background(), in: &Input{}, ended: true}
	for o, i := obj, 0; o != nil && i < maxHolderSearch; i++ {
		if o.ExportType() != proxyType && w.ownGetter(o, "storage") == w.storageGet {
			return ended, o
		}
		o = w.nextHolder(o)
	}
	return ended, nil
}

// nextHolder is o's prototype, or its target when o is a proxy; it runs no
// script code.
func (w *worker) nextHolder(o *goja.Object) *goja.Object {
	if o.ExportType() == proxyType {
		p, _ := o.Export().(goja.Proxy)
		return p.Target()
	}
	return o.Prototype()
}

// ownGetter returns the getter of o's own accessor member name, or nil. o
// must not be a proxy: for an ordinary object the intrinsic
// Object.getOwnPropertyDescriptor runs no script code, and neither does
// reading an own member of the descriptor it returns.
func (w *worker) ownGetter(o *goja.Object, name string) goja.Value {
	d, err := w.getOwnPropertyDescriptor(goja.Undefined(), o, w.vm.ToValue(name))
	desc, _ := d.(*goja.Object)
	if err != nil || desc == nil || !slices.Contains(desc.GetOwnPropertyNames(), "get") {
		return nil
	}
	return desc.Get("get")
}

// storage builds context.webtask.storage for one hook run: get(cb) and
// set(data, [{force}], cb). Like Auth0's, set without force fails with a
// 409 conflict when the document changed since this run's last get.
func (r *run) storage() *goja.Object {
	vm := r.vm
	key := r.eng.storageKey
	st := r.eng.cfg.Storage
	var lastSeen *string // etag of the last get, nil before any get
	// The operations under way are counted on the run, not on this object:
	// a script can build as many storage objects as it likes by calling
	// the accessor's getter again.
	inflight := &r.storageInflight

	callback := func(v goja.Value) goja.Callable {
		r.ensureLive() // a module may keep the storage of an exchange that ended
		cb, ok := goja.AssertFunction(v)
		if !ok {
			throwTypeError(vm, "the callback argument must be a function")
		}
		if *inflight >= maxStorageInflight {
			panic(vm.NewGoError(errTooManyStorageCalls))
		}
		return cb
	}
	// async runs work off the loop, counted in inflight until its callback.
	// work gets the exchange's deadline but not its cancellation: like an
	// outbound call, an operation the hook did not wait for (a set before
	// cb) still finishes after the exchange ends; only its callback never
	// runs.
	async := func(work func(ctx context.Context) func() error) {
		*inflight++
		ctx, cancel := context.WithoutCancel(r.ctx), context.CancelFunc(func() {})
		if deadline, ok := r.ctx.Deadline(); ok { // Run's always has one
			ctx, cancel = context.WithDeadline(ctx, deadline)
		}
		r.loop.async(func() func() error {
			defer cancel()
			done := work(ctx)
			return func() error {
				*inflight--
				return done()
			}
		})
	}
	obj := vm.NewObject()
	define(vm, obj, "get", func(call goja.FunctionCall) goja.Value {
		cb := callback(call.Argument(0))
		async(func(ctx context.Context) func() error {
			data, err := loadDoc(ctx, st, key)
			return func() error {
				if err != nil {
					_, cerr := cb(goja.Undefined(), r.newError(err.Error(), 500))
					return cerr
				}
				// Auth0's webtask storage gives null, not undefined, when
				// nothing was ever stored; hooks test for it with === null.
				value := goja.Null()
				if data != nil {
					v, perr := r.w.parse(goja.Undefined(), vm.ToValue(string(data)))
					if perr != nil {
						_, cerr := cb(goja.Undefined(), r.newError("the storage document is not valid JSON", 500))
						return cerr
					}
					value = v
				}
				tag := etagOf(data)
				lastSeen = &tag
				_, cerr := cb(goja.Undefined(), goja.Null(), value)
				return cerr
			}
		})
		return goja.Undefined()
	})
	define(vm, obj, "set", func(call goja.FunctionCall) goja.Value {
		force := false
		cbArg := call.Argument(1)
		if opts, ok := cbArg.(*goja.Object); ok {
			if _, isFn := goja.AssertFunction(cbArg); !isFn {
				if f := opts.Get("force"); f != nil {
					force = f.ToBoolean()
				}
				cbArg = call.Argument(2)
			}
		}
		cb := callback(cbArg)
		raw, ok, err := r.toJSON(call.Argument(0), maxStorageSize+1)
		var tooLarge bool
		if _, tooLarge = err.(errJSONTooLarge); err != nil && !tooLarge {
			rethrow(vm, err)
		}
		var expect *string
		if !force && lastSeen != nil {
			e := *lastSeen
			expect = &e
		}
		async(func(ctx context.Context) func() error {
			var status int
			var err error
			switch {
			case tooLarge || len(raw) > maxStorageSize:
				status, err = 400, fmt.Errorf("storage data is more than the %d bytes allowed", maxStorageSize)
			case !ok:
				status, err = 400, errors.New("storage data must be a JSON value")
			default:
				status, err = storeDoc(ctx, st, key, raw, expect)
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
	e, err := r.vm.New(r.w.errorCtor, r.vm.ToValue(msg))
	if err != nil {
		return r.vm.ToValue(msg)
	}
	if code != 0 {
		define(r.vm, e, "code", code)
		define(r.vm, e, "statusCode", code)
	}
	return e
}
