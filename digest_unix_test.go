//go:build unix

package credentialsexchange

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestScriptsDigestLinkToSpecialFile: a module link to a FIFO or a device
// is hashed by its target's name, not read, which would block the adapter
// (a FIFO with no writer) or never end (/dev/zero).
func TestScriptsDigestLinkToSpecialFile(t *testing.T) {
	dir := t.TempDir()
	mods := filepath.Join(dir, "modules")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	if err := os.Symlink(fifo, filepath.Join(mods, "fifo.js")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(mods, "zero.js")); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "hook.js")
	if err := os.WriteFile(hook, []byte("module.exports = function (c, s, a, ctx, cb) { cb(null, {}); };"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Hook: hook, ModulesDir: mods}
	done := make(chan error, 1)
	go func() { _, err := h.scriptsDigest(); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		// Unblock the reader so the goroutine ends with the test.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("scriptsDigest read a link to a special file")
	}
}

// TestScriptsDigestModulesDirLink: a modules_dir that is itself a link to
// the directory (/etc/caddy/modules -> /opt/hooks/modules) is walked, so
// that editing a module there changes the digest and caddy reload loads it.
func TestScriptsDigestModulesDirLink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "node_modules", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(real, "node_modules", "a", "index.js")
	if err := os.WriteFile(module, []byte("module.exports = 1;"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "modules")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "hook.js")
	if err := os.WriteFile(hook, []byte("module.exports = function (c, s, a, ctx, cb) { cb(null, {}); };"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Hook: hook, ModulesDir: link}
	before, err := h.scriptsDigest()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(module, []byte("module.exports = 2;"), 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := h.scriptsDigest()
	if err != nil {
		t.Fatal(err)
	}
	if before == after {
		t.Fatal("a module edited under a linked modules_dir left the digest unchanged")
	}
}
