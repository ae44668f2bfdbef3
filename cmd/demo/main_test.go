package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The demo must start beside a Caddy that holds the default admin address,
// whatever the Caddyfile it runs says about admin.
func TestWithoutAdminTurnsTheAdminAPIOff(t *testing.T) {
	t.Chdir(filepath.Join("..", "..")) // as the README runs the demo: from the repository root
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, caddyfile := range []string{string(src), "{\n\tadmin localhost:2019\n}\n\n:8080 {\n\trespond ok\n}\n"} {
		cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := withoutAdmin(cfgJSON)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Admin struct {
				Disabled bool   `json:"disabled"`
				Listen   string `json:"listen"`
			} `json:"admin"`
			Apps map[string]any `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		if !cfg.Admin.Disabled || cfg.Admin.Listen != "" || cfg.Apps["http"] == nil {
			t.Errorf("withoutAdmin gave admin %+v, apps %v; want the admin API off and the rest kept", cfg.Admin, cfg.Apps)
		}
	}
}

// -upstream-only -upstream-port N starts the OAuth server on exactly that
// port, for a Caddy run by hand in front of it.
func TestUpstreamOnlyListensOnTheGivenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := run("Caddyfile.example", "0", port, true, true); err != nil {
		t.Fatalf("run -upstream-only -upstream-port %d: %v", port, err)
	}
	// The port is taken: the demo says so instead of picking another.
	ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("port %d was taken by someone else meanwhile", port)
	}
	defer ln.Close()
	if err := run("Caddyfile.example", "0", port, true, true); err == nil {
		t.Errorf("run on a taken -upstream-port %d succeeded", port)
	}
}
