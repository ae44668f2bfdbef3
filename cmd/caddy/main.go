// Command caddy is Caddy with its standard modules and credentials_exchange,
// for local builds with plain `go build ./cmd/caddy`. Release builds use
// xcaddy (see xcaddy.md).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyhook/caddyhook"
)

func main() {
	caddycmd.Main()
}
