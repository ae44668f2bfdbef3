package credentialsexchange

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// scriptsDigest returns "sha256:<hex>" over the contents of every file the
// handler reads at provisioning: the hook, the actions, each regular file
// under modules_dir (by its path relative to it, in lexical order), the
// clients file, the key files and the GeoIP database. Each entry is hashed
// with its role, name and length, so that moving bytes from one file to
// another, or renaming a module, changes the digest too.
func (h *Handler) scriptsDigest() (string, error) {
	d := sha256.New()
	add := func(role, path string) error {
		if path == "" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("scripts digest: %w", err)
		}
		defer f.Close()
		return hashEntry(d, role, path, f)
	}
	if err := add("hook", h.Hook); err != nil {
		return "", err
	}
	for _, a := range h.Actions {
		if err := add("action", a); err != nil {
			return "", err
		}
	}
	if h.ModulesDir != "" {
		// The directory itself may be a link (/etc/caddy/modules ->
		// /opt/…): WalkDir would not follow it, and the modules under it
		// would not count.
		root, err := filepath.EvalSymlinks(h.ModulesDir)
		if err != nil {
			return "", fmt.Errorf("scripts digest: %w", err)
		}
		err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("scripts digest: %w", err)
			}
			if e.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			if e.Type()&fs.ModeSymlink != 0 {
				// A link to a directory is not walked; a link's target
				// name is what changes when it is repointed (npm link).
				target, err := os.Readlink(path)
				if err != nil {
					return fmt.Errorf("scripts digest: %w", err)
				}
				// Only a link to a regular file is read: one to a FIFO or a
				// device (/dev/zero) would block or never end the walk.
				if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
					return hashString(d, "module link", rel, target)
				}
			} else if !e.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("scripts digest: %w", err)
			}
			defer f.Close()
			return hashEntry(d, "module", rel, f)
		})
		if err != nil {
			return "", err
		}
	}
	if err := add("clients", h.ClientsFile); err != nil {
		return "", err
	}
	if err := add("signing key", h.SigningKey); err != nil {
		return "", err
	}
	if err := add("upstream key", h.UpstreamKey); err != nil {
		return "", err
	}
	for _, p := range h.PublishKeys {
		if err := add("publish key", p); err != nil {
			return "", err
		}
	}
	if err := add("geoip", h.GeoIPDB); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(d.Sum(nil)), nil
}

// hashEntry writes role, name and the length-prefixed contents of r to d.
func hashEntry(d hash.Hash, role, name string, r io.Reader) error {
	writeField(d, role)
	writeField(d, name)
	// The contents are streamed (a GeoIP database is tens of MiB), so their
	// length goes after them.
	n, err := io.Copy(d, r)
	if err != nil {
		return fmt.Errorf("scripts digest: reading %s: %w", name, err)
	}
	_ = binary.Write(d, binary.BigEndian, n)
	return nil
}

func hashString(d hash.Hash, role, name, value string) error {
	writeField(d, role)
	writeField(d, name)
	writeField(d, value)
	return nil
}

func writeField(d hash.Hash, s string) {
	_ = binary.Write(d, binary.BigEndian, int64(len(s)))
	_, _ = io.WriteString(d, s)
}
