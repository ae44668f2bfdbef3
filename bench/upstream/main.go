// Command upstream is the OAuth server stand-in of the load comparison
// (bench/run): it answers every POST /oauth/token with one fixed client
// credentials token response, an RS256 JWT signed once at start with a key
// generated at start, and GET /.well-known/jwks.json with that key. It does no
// per-request work beyond draining the body, so it is never the bottleneck.
//
//	upstream -addr 127.0.0.1:0 -addr-file F   serve; F gets the bound address
//	upstream -free-port                        print a free loopback port and exit
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/caddyhook/caddyhook/token"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	addrFile := flag.String("addr-file", "", "write the bound address to this file once listening")
	freePort := flag.Bool("free-port", false, "print a free port on 127.0.0.1 and exit")
	flag.Parse()
	log.SetFlags(0)

	if *freePort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	bound := ln.Addr().String()
	tokenResp, jwks, err := fixtures("http://" + bound)
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{"no-store"}
		h["Content-Length"] = []string{strconv.Itoa(len(tokenResp))}
		w.Write(tokenResp)
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(jwks))}
		w.Write(jwks)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}

	if *addrFile != "" {
		// Written whole and renamed, so a reader never sees half an address.
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(bound+"\n"), 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(srv.Serve(ln))
}

// fixtures generates an RSA key, and returns a token response carrying one
// client credentials JWT signed with it (exp ten years ahead) and the key's
// JWKS. The signing and the JWKS are the module's own (token.Signer).
func fixtures(issuer string) (tokenResp, jwks []byte, err error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, nil, err
	}
	_ = key.Set(jwk.KeyIDKey, "bench-upstream")
	signer, err := token.NewSigner(key, "RS256")
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss":       issuer,
		"sub":       "bench-client",
		"aud":       "https://api.example.com",
		"client_id": "bench-client",
		"scope":     "read:data write:data",
		"iat":       now.Unix(),
		"exp":       now.AddDate(10, 0, 0).Unix(),
		"jti":       "bench-fixed-token",
	})
	accessToken, err := signer.Sign("JWT", claims)
	if err != nil {
		return nil, nil, err
	}
	tokenResp, _ = json.Marshal(map[string]any{
		"access_token": accessToken,
		"token_type":   "Bearer",
		"expires_in":   3600,
		"scope":        "read:data write:data",
	})
	jwks, err = json.Marshal(map[string]any{"keys": []jwk.Key{signer.PublicKey()}})
	return tokenResp, jwks, err
}
