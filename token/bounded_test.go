package token

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hugeStatusServer answers every request with a status line whose reason
// phrase is 1 MiB, which net/http's client accepts (its limit is 10 MiB)
// and puts in Response.Status.
func hugeStatusServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 500 "+strings.Repeat("x", 1<<20)+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestFetchErrorsBounded: the upstream chooses the text of a failed fetch's
// error (here a 1 MiB status line); what Discovery and RemoteJWKS keep, and
// the handler logs with every exchange that fails on it, stays bounded.
func TestFetchErrorsBounded(t *testing.T) {
	url := hugeStatusServer(t)
	const bound = 4 << 10

	d := &Discovery{Issuer: url, TTL: time.Minute, RetryAfter: time.Minute}
	_, err := d.Get(context.Background())
	if err == nil {
		t.Fatal("discovery succeeded against a 500")
	}
	if n := len(err.Error()); n > bound {
		t.Errorf("discovery error is %d bytes", n)
	}
	if !strings.Contains(err.Error(), "status 500") {
		t.Errorf("discovery error %.300q does not say the status", err)
	}

	r := &RemoteJWKS{URL: url, TTL: time.Minute, RetryAfter: time.Minute}
	_, err = r.LookupKeys(context.Background(), "k")
	if err == nil {
		t.Fatal("JWKS lookup succeeded against a 500")
	}
	if n := len(err.Error()); n > bound {
		t.Errorf("JWKS error is %d bytes", n)
	}
	if !strings.Contains(err.Error(), "status 500") {
		t.Errorf("JWKS error %.300q does not say the status", err)
	}
}
