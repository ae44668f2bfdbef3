package caddyhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	"github.com/dop251/goja_nodejs/require"
	_ "github.com/dop251/goja_nodejs/url" // registers the url core module
	nodeutil "github.com/dop251/goja_nodejs/util"
)

// builtinModules are the Node core modules a script may require. buffer, url
// and util come from goja_nodejs; querystring and crypto are ours, with only
// what is safe: no key generation, no ciphers that need entropy we do not
// audit, nothing that touches files.
var builtinModules = map[string]bool{
	"buffer": true, "url": true, "util": true, "querystring": true, "crypto": true,
}

// nodeCoreModules are refused by name, whatever else the process has
// registered with goja_nodejs: a script must never reach the file system,
// the network, child processes or the environment.
var nodeCoreModules = map[string]bool{
	"assert": true, "async_hooks": true, "child_process": true, "cluster": true, "console": true,
	"constants": true, "dgram": true, "diagnostics_channel": true, "dns": true, "domain": true,
	"events": true, "fs": true, "fs/promises": true, "http": true, "http2": true, "https": true,
	"inspector": true, "module": true, "net": true, "os": true, "path": true, "perf_hooks": true,
	"process": true, "punycode": true, "readline": true, "repl": true, "stream": true,
	"string_decoder": true, "sys": true, "timers": true, "tls": true, "trace_events": true,
	"tty": true, "v8": true, "vm": true, "wasi": true, "worker_threads": true, "zlib": true,
}

// maxModuleSize bounds one file loaded from modules_dir.
const maxModuleSize = 4 << 20

// modules resolves require() for one Engine: the allowed built-ins, and
// CommonJS packages under one folder with node_modules-style resolution that
// never leaves it. Compiled package sources are cached by the registry, so a
// package is compiled once per config load.
type modules struct {
	root     string // absolute, symlinks resolved; "" when no modules_dir
	registry *require.Registry
}

func newModules(dir string) (*modules, error) {
	m := &modules{}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("the modules folder: %w", err)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("the modules folder %s is not a directory", dir)
		}
		m.root = real
	}
	opts := []require.Option{require.WithLoader(m.load)}
	if m.root != "" {
		opts = append(opts, require.WithGlobalFolders(filepath.Join(m.root, "node_modules"), m.root))
	}
	m.registry = require.NewRegistry(opts...)
	// buffer with its allocations capped, as the global Buffer is
	// (memguard.go).
	m.registry.RegisterNativeModule("buffer", requireCappedBuffer)
	m.registry.RegisterNativeModule("util", requireUtil)
	m.registry.RegisterNativeModule("querystring", requireQuerystring)
	m.registry.RegisterNativeModule("crypto", requireCrypto)
	return m, nil
}

// load is the registry's only way to read a file: anything outside root
// (or any file at all, without a modules_dir) does not exist.
func (m *modules) load(path string) ([]byte, error) {
	if m.root == "" {
		return nil, require.ModuleFileDoesNotExistError
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, require.ModuleFileDoesNotExistError
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil || !within(m.root, real) {
		return nil, require.ModuleFileDoesNotExistError
	}
	fi, err := os.Stat(real)
	if err != nil || fi.IsDir() {
		return nil, require.ModuleFileDoesNotExistError
	}
	if fi.Size() > maxModuleSize {
		return nil, fmt.Errorf("module file %s is larger than %d bytes", path, maxModuleSize)
	}
	data, err := os.ReadFile(real)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, require.ModuleFileDoesNotExistError
	}
	return data, err
}

func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// enable installs require and the lazily loaded Buffer, URL and
// URLSearchParams globals in vm, and
// returns require. Every require() in the runtime, in scripts and in
// packages alike, goes through the gate below. local are the modules built
// for this runtime alone (request, axios, node-fetch: installFetch); they
// win over a package of the same name under modules_dir. webcrypto returns
// the runtime's global crypto, which the crypto module exports too.
func (m *modules) enable(vm *goja.Runtime, local map[string]func() goja.Value, webcrypto func() goja.Value) goja.Value {
	rm := m.registry.Enable(vm)
	cryptoLoaded := false
	// The versioned requires of this runtime that loaded, and the path each
	// resolved to: a require in the handler does not read the package.json
	// again on every exchange. (Its module is cached by the path anyway.)
	versions := map[string]string{}
	gate := func(call goja.FunctionCall) goja.Value {
		name, ok := scriptString(call.Argument(0))
		if !ok {
			throwTypeError(vm, `The "id" argument must be of type string`)
		}
		if name == "" {
			throwTypeError(vm, `The argument 'id' must be a non-empty string`)
		}
		if build, ok := local[name]; ok {
			return build()
		}
		// Webtask scripts pin versions: require('request@2.88.0') gets the
		// built-in request as require('request') does, whatever version
		// it names (the built-in is what runs either way).
		if i := strings.IndexByte(name, '@'); i > 0 && !strings.ContainsRune(name[i:], '/') {
			if build, ok := local[name[:i]]; ok {
				return build()
			}
		}
		bare := strings.TrimPrefix(name, "node:")
		switch {
		case builtinModules[bare]:
			name = bare
		case nodeCoreModules[bare], strings.HasPrefix(name, "node:"), m.root == "":
			panic(vm.NewGoError(fmt.Errorf("module '%s' is not available", name)))
		}
		target, known := versions[name]
		if !known {
			var err error
			if target, err = m.versioned(name); err != nil {
				panic(vm.NewGoError(err))
			}
		}
		v, err := rm.Require(target)
		if err != nil {
			// Only goja's own errors are looked at as they are: unwrapping
			// a goja exception could run script code.
			switch e := gojaCause(err).(type) {
			case *goja.Exception, *goja.InterruptedError, *goja.StackOverflowError:
				panic(e)
			}
			if errors.Is(err, require.InvalidModuleError) || errors.Is(err, require.ModuleFileDoesNotExistError) ||
				errors.Is(err, require.NoSuchBuiltInModuleError) || errors.Is(err, require.IllegalModuleNameError) {
				panic(vm.NewGoError(fmt.Errorf("module '%s' is not available (only packages under modules_dir can be required)", name)))
			}
			panic(vm.NewGoError(fmt.Errorf("loading module '%s': %s", name, cleanDescription(err.Error()))))
		}
		if target != name {
			versions[name] = target
		}
		if name == "crypto" && !cryptoLoaded {
			// Node 22's require('crypto').webcrypto is the global crypto: a
			// getter, so that the module costs nothing more until it is read.
			cryptoLoaded = true
			if exports, ok := v.(*goja.Object); ok {
				_ = exports.DefineAccessorProperty("webcrypto",
					vm.ToValue(func(goja.FunctionCall) goja.Value { return webcrypto() }), nil, goja.FLAG_TRUE, goja.FLAG_TRUE)
			}
		}
		return v
	}
	req := vm.ToValue(gate)
	_ = vm.Set("require", req)

	// Node has these as globals; load their module only if a script uses
	// them. The globals are the classes require() gives.
	export := func(module, name string) func() goja.Value {
		return func() goja.Value {
			mod, err := rm.Require(module)
			if err != nil {
				rethrow(vm, err)
			}
			return mod.ToObject(vm).Get(name)
		}
	}
	lazyGlobal(vm, "Buffer", export("buffer", "Buffer"))
	lazyGlobal(vm, "URL", export("url", "URL"))
	lazyGlobal(vm, "URLSearchParams", export("url", "URLSearchParams"))
	return req
}

// exactVersion is a semantic version without range operators, tags or a
// leading v: what a versioned require must name.
var exactVersion = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// packageSegment is one part of a package name (the scope without its @,
// or the name) as npm allows it; a leading dot is refused, so '.' and '..'
// are.
var packageSegment = regexp.MustCompile(`^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$`)

// subpathSegment is one part of the path after a versioned package name.
var subpathSegment = regexp.MustCompile(`^[A-Za-z0-9_~@+-][A-Za-z0-9._~@+-]*$`)

// versioned resolves a webtask-style versioned require, 'name@1.2.3',
// '@scope/name@1.2.3' or 'name@1.2.3/sub/path', to the absolute path of that
// package in modules_dir (node_modules/<name>, else <name>, the registry's
// global folders), after checking that its package.json has exactly that
// version; any other id is returned as it is. Webtask fetched the version
// from npm; here it must be the one the operator installed. Only exact
// versions are accepted: a range ('^1', '1.x', '>=1') or a tag ('latest')
// would make which code runs depend on what happens to be installed, so it
// is refused with an error that says so. Every part of the id is checked
// before it touches a path, and the files are read through load, which
// refuses anything outside root.
func (m *modules) versioned(id string) (string, error) {
	if m.root == "" || strings.HasPrefix(id, ".") || strings.HasPrefix(id, "/") {
		return id, nil
	}
	scope, rest := "", id
	if strings.HasPrefix(id, "@") {
		i := strings.IndexByte(id, '/')
		if i < 0 {
			return id, nil
		}
		scope, rest = id[:i], id[i+1:]
	}
	pkg, sub, hasSub := strings.Cut(rest, "/")
	name, version, ok := strings.Cut(pkg, "@")
	if !ok {
		return id, nil
	}
	unavailable := func(format string, args ...any) error {
		return fmt.Errorf("module '%s' is not available: %s", textcap.Cap(id, 256), fmt.Sprintf(format, args...))
	}
	if (scope != "" && !packageSegment.MatchString(scope[1:])) || !packageSegment.MatchString(name) {
		return "", unavailable("not a package name")
	}
	if scope != "" {
		name = scope + "/" + name
	}
	if !exactVersion.MatchString(version) {
		return "", unavailable("only an exact version, such as %s@1.2.3, can be required (not a range or a tag)", name)
	}
	if hasSub {
		for _, seg := range strings.Split(sub, "/") {
			if !subpathSegment.MatchString(seg) {
				return "", unavailable("not a path inside the package")
			}
		}
	}
	var dir string
	for _, d := range []string{filepath.Join(m.root, "node_modules", name), filepath.Join(m.root, name)} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dir = d
			break
		}
	}
	if dir == "" {
		return "", unavailable("modules_dir has no package %s", name)
	}
	data, err := m.load(filepath.Join(dir, "package.json"))
	if err != nil {
		return "", unavailable("modules_dir has %s without a package.json", name)
	}
	var manifest struct {
		Version json.RawMessage `json:"version"`
	}
	var installed string
	if json.Unmarshal(data, &manifest) != nil || json.Unmarshal(manifest.Version, &installed) != nil || installed == "" {
		return "", unavailable("modules_dir has %s without a version in its package.json", name)
	}
	if installed != version {
		return "", unavailable("modules_dir has %s %s", name, cleanDescription(textcap.Cap(installed, 64)))
	}
	path := filepath.ToSlash(dir)
	if hasSub {
		path += "/" + sub
	} else {
		// require tries the path as a file before the folder: a name.js or
		// name.json beside the package would load instead of the version
		// just checked.
		for _, ext := range []string{".js", ".json"} {
			if _, err := os.Stat(dir + ext); err == nil {
				return "", unavailable("modules_dir has %s%s beside the package %s, which require would load instead", name, ext, name)
			}
		}
	}
	return path, nil
}

// utilExtras adds what hooks use most from Node's util beyond format:
// promisify (storage.get and set are callback APIs), inherits and inspect.
var utilExtras = goja.MustCompile("caddyhook:util", `(function (util) {
	util.promisify = function promisify(fn) {
		if (typeof fn !== 'function') throw new TypeError('The "original" argument must be of type function');
		return function () {
			var self = this, args = Array.prototype.slice.call(arguments);
			return new Promise(function (resolve, reject) {
				args.push(function (err, value) { if (err) reject(err); else resolve(value); });
				fn.apply(self, args);
			});
		};
	};
	util.inherits = function inherits(ctor, superCtor) {
		Object.setPrototypeOf(ctor.prototype, superCtor.prototype);
		Object.setPrototypeOf(ctor, superCtor);
		ctor.super_ = superCtor;
	};
	util.inspect = function inspect(v) {
		if (typeof v === 'string') return "'" + v + "'";
		try { var s = JSON.stringify(v); return s === undefined ? String(v) : s; } catch (e) { return String(v); }
	};
})`, true)

func requireUtil(vm *goja.Runtime, module *goja.Object) {
	nodeutil.Require(vm, module)
	fn, err := vm.RunProgram(utilExtras)
	if err != nil {
		rethrow(vm, err)
	}
	extend, ok := goja.AssertFunction(fn)
	if !ok {
		throwTypeError(vm, "util could not be loaded")
	}
	if _, err := extend(goja.Undefined(), module.Get("exports")); err != nil {
		rethrow(vm, err)
	}
}

// bytesArg reads a string (in an encoding) or a Buffer/TypedArray argument.
func bytesArg(vm *goja.Runtime, v, enc goja.Value) []byte {
	return buffer.DecodeBytes(vm, v, enc)
}
