package caddyhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyhook/caddyhook/internal/textcap"
	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	"go.uber.org/zap"
)

// Limits on the outbound calls of scripts (fetch, request, axios,
// node-fetch). Every rule below is enforced here, in Go: the JavaScript
// layers in fetchjs.go only shape the API.
const (
	// maxFetchResponseSize bounds the body of one response, after
	// decompression; a larger one fails the call. Auth0's own limits are
	// not documented; 4 MiB keeps a run's memory far below the heap limit
	// while fitting any JSON an API returns to a hook.
	maxFetchResponseSize = 4 << 20
	// maxFetchRequestSize bounds the body a script may send in one call.
	maxFetchRequestSize = 1 << 20
	// maxFetchHeaderBytes bounds the header names and values of a request,
	// and of a response (http.Transport.MaxResponseHeaderBytes).
	maxFetchHeaderBytes = 64 << 10
	// maxFetchInflight bounds the calls one exchange has in flight at
	// once; each one holds a goroutine and a connection. Counted per
	// exchange, so that calls one left behind do not refuse the next's.
	maxFetchInflight = 16
	// maxFetchRedirects is fetch's own limit (WHATWG fetch, step 4.2 of
	// "HTTP-redirect fetch"), and axios's and request's default.
	maxFetchRedirects = 20
	// maxFetchURLLength bounds the URL of a call, in UTF-16 units as a
	// script's string holds it. Browsers and servers cap URLs well below
	// this.
	maxFetchURLLength = 16 << 10
)

// fetcher makes the outbound calls of one Engine: the allow-list, one HTTP
// client for all calls, and the dial-time guard against link-local and
// cloud-metadata addresses.
type fetcher struct {
	allow []allowPrefix
	// special holds the hosts (names and canonical IPs) that an allowed
	// prefix names literally although the guard would refuse them: an
	// operator who writes http://169.254.169.254/ means it.
	special map[string]bool
	client  *http.Client
	log     *zap.Logger
	// lookup resolves a host name; tests replace it, as there is no DNS.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	dialer net.Dialer
	// onCall, when set, is told the outcome of every call
	// (Config.OnOutboundCall). Set only once warmUp is over, so that the
	// calls a top level makes at config load (which never go out) are not
	// counted; atomic, since such a call may still be ending then.
	onCall atomic.Pointer[func(outcome string)]
}

// allowPrefix is one fetch_allow entry, parsed and normalised.
type allowPrefix struct {
	scheme, host, port string
	// path is the cleaned, escaped path; dir is true when it ends in "/",
	// which makes it a plain prefix rather than one on a segment boundary.
	path string
	dir  bool
}

// newFetcher parses the fetch_allow prefixes once. rootCAs, for tests, is
// the pool TLS servers are verified against; nil means the system's.
func newFetcher(prefixes []string, rootCAs *x509.CertPool, log *zap.Logger) (*fetcher, error) {
	f := &fetcher{special: map[string]bool{}, log: log}
	for _, p := range prefixes {
		u, err := parseAllowPrefix(p)
		if err != nil {
			return nil, err
		}
		a := allowPrefix{scheme: u.Scheme, host: u.Hostname(), port: u.Port(), path: u.EscapedPath()}
		a.dir = strings.HasSuffix(a.path, "/")
		f.allow = append(f.allow, a)
		if ip, err := netip.ParseAddr(a.host); (err == nil && blockedAddr(ip)) || metadataName(a.host) {
			f.special[a.host] = true
		}
	}
	f.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	transport := &http.Transport{
		// Never a proxy from the environment: the guard must see the
		// address the call really goes to.
		Proxy:                  nil,
		DialContext:            f.dial,
		TLSClientConfig:        &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    maxFetchInflight,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxFetchHeaderBytes,
	}
	f.client = &http.Client{Transport: transport, CheckRedirect: f.checkRedirect}
	return f, nil
}

// CheckFetchAllow reports whether p can be a fetch_allow prefix: an
// absolute http or https URL with a host, and no userinfo, query or
// fragment.
func CheckFetchAllow(p string) error {
	_, err := parseAllowPrefix(p)
	return err
}

func parseAllowPrefix(p string) (*url.URL, error) {
	if strings.Contains(p, "#") {
		return nil, fmt.Errorf("fetch_allow %q: a prefix cannot have a fragment", p)
	}
	u, err := normalizeURL(p)
	if err != nil {
		return nil, fmt.Errorf("fetch_allow %q: %v", p, err)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("fetch_allow %q: a prefix cannot have a query", p)
	}
	return u, nil
}

// fetchRequestKey carries a call's redirect mode to checkRedirect.
type fetchRequestKey struct{}

// The redirects fetch refuses: with redirect: 'error', and past
// maxFetchRedirects (undici's words).
var (
	errRedirect         = errors.New("unexpected redirect")
	errTooManyRedirects = errors.New("redirect count exceeded")
)

// checkRedirect follows a redirect only to an allowed URL, and sends the
// cleaned form of it.
func (f *fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	switch mode, _ := req.Context().Value(fetchRequestKey{}).(string); mode {
	case "manual":
		return http.ErrUseLastResponse
	case "error":
		return errRedirect
	}
	if len(via) > maxFetchRedirects {
		return errTooManyRedirects
	}
	u, err := f.check(req.URL.String())
	if err != nil {
		return err
	}
	req.URL = u
	req.Host = ""
	// Go sets Referer to the previous URL, query included, which would
	// hand a key in it to the next host; Node's fetch sends none. A
	// Referer the script set on its request was copied over by Go and is
	// kept.
	req.Header.Del("Referer")
	if ref := via[0].Header.Values("Referer"); len(ref) > 0 {
		req.Header["Referer"] = ref
	}
	// Go keeps credentials on a redirect to the same host name on another
	// port or scheme (https to http included), and puts them back when
	// the chain returns to the first host. Node's fetch drops them at the
	// first change of origin, for the rest of the chain.
	first := via[0].URL
	left := u.Scheme != first.Scheme || u.Host != first.Host
	for _, r := range via[1:] {
		left = left || r.URL.Scheme != first.Scheme || r.URL.Host != first.Host
	}
	if left {
		for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Cookie2", "Www-Authenticate"} {
			req.Header.Del(h)
		}
	}
	return nil
}

// fetchError is a call refused by a rule, as opposed to one that failed on
// the network: scripts see its message as it is.
type fetchError struct {
	code, msg string
}

func (e *fetchError) Error() string { return e.msg }

func notAllowed(u string) *fetchError {
	return &fetchError{"ERR_FETCH_NOT_ALLOWED", fmt.Sprintf("fetch to %s is not allowed: add its URL prefix to fetch_allow", u)}
}

// check parses raw, cleans it and returns it when an allowed prefix covers
// it; the error says why not.
func (f *fetcher) check(raw string) (*url.URL, error) {
	u, err := normalizeURL(raw)
	if err != nil {
		return nil, &fetchError{"ERR_INVALID_URL", fmt.Sprintf("invalid URL %s: %v", shownURL(raw), err)}
	}
	for _, a := range f.allow {
		if a.covers(u) {
			return u, nil
		}
	}
	return nil, notAllowed(loggable(u))
}

func (a allowPrefix) covers(u *url.URL) bool {
	if u.Scheme != a.scheme || u.Hostname() != a.host || u.Port() != a.port {
		return false
	}
	p := u.EscapedPath()
	if a.dir || p == a.path {
		return strings.HasPrefix(p, a.path)
	}
	return strings.HasPrefix(p, a.path+"/")
}

// loggable is a URL without its query, for errors and logs: a query often
// carries keys.
func loggable(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// shownURL is a URL a script gave, for an error message: without its
// query and fragment, nor anything that may be credentials, and capped.
// A URL that normalizes is shown as it would be sent. One that does not
// is shown only as far as it can be read without guessing where a
// password ends: "https://user:hun/ter2@host" or "https://user:hun?ter2@host"
// would otherwise show part of one.
func shownURL(s string) string {
	s = strings.TrimSpace(s)
	if u, err := normalizeURL(s); err == nil {
		return textcap.Cap(loggable(u), 256)
	}
	if u, err := url.Parse(slashesBeforeQuery(s)); err == nil && u.Scheme != "" && u.Host != "" && u.Opaque == "" {
		out := strings.ToLower(u.Scheme) + "://"
		if u.User != nil {
			out += "…@"
		}
		return textcap.Cap(out+u.Host+u.EscapedPath(), 256)
	}
	if !strings.Contains(s, "@") {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i]
		}
		return textcap.Cap(s, 256)
	}
	// An "@" where no parser finds userinfo: anything after the scheme
	// may be a password.
	if m := schemeRE.FindString(s); m != "" && len(m) <= 32 {
		return strings.ToLower(m) + "…"
	}
	return "…"
}

var schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.\-]*:`)

// normalizeURL parses an absolute http or https URL as WHATWG URL parsing
// (Node's new URL) would read it, and returns the form that is matched and
// sent: lower-case host without a trailing dot, IPv4 in dotted-quad form
// whatever way it was written, default port dropped, backslashes read as
// slashes, dot segments (also percent-encoded) resolved. What the two
// parsers could read differently is refused: userinfo, zone ids,
// percent-encoded slashes and backslashes in the path, and a fragment is
// dropped as fetch does.
func normalizeURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	u, err := url.Parse(slashesBeforeQuery(raw))
	if err != nil {
		return nil, errors.New("it cannot be parsed")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("only http and https URLs can be fetched")
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("it has no host")
	}
	if u.User != nil {
		return nil, errors.New("it must not carry credentials (use an Authorization header)")
	}
	host, err := canonicalHost(u.Hostname())
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, errors.New("its port is not a number from 0 to 65535")
		}
		port = strconv.FormatUint(n, 10)
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	hostport := host
	if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	if port != "" {
		hostport += ":" + port
	}
	path, err := cleanPath(u.EscapedPath())
	if err != nil {
		return nil, err
	}
	out, err := url.Parse(u.Scheme + "://" + hostport + path)
	if err != nil {
		return nil, errors.New("it cannot be parsed")
	}
	out.RawQuery = escapeQuery(u.RawQuery)
	out.ForceQuery = u.ForceQuery && u.RawQuery == ""
	return out, nil
}

// escapeQuery percent-encodes the bytes of a query that WHATWG encodes in
// special schemes (Node sends "?q=a b" as "?q=a%20b"), and Go would write
// into the request line as they are: a raw space there makes the request
// malformed (Go's server answers 400). Control bytes never get here:
// url.Parse refuses them.
func escapeQuery(q string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c != ' ' && c != '"' && c != '\'' && c != '<' && c != '>' && c < 0x7f {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(q)+16), q[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return q
	}
	return string(b)
}

// slashesBeforeQuery reads "\" as "/" before the query or fragment, as
// WHATWG does in special schemes; Go does not, and would take
// "https://a.com\@b.com/" to be host b.com.
func slashesBeforeQuery(s string) string {
	end := len(s)
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		end = i
	}
	return strings.ReplaceAll(s[:end], `\`, "/") + s[end:]
}

// canonicalHost lower-cases a host, drops a trailing dot, and writes an IP
// address in one canonical form, reading IPv4 as WHATWG does (and as
// inet_aton, which a resolver may use): "2130706433", "0x7f.1" and
// "0177.0.0.1" are all 127.0.0.1.
func canonicalHost(h string) (string, error) {
	if strings.Contains(h, "%") {
		return "", errors.New("its host must not hold a zone id or percent-encoding")
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Is6() {
		return ip.Unmap().String(), nil
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", errors.New("it has no host")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("#/:<>?@[\\]^|", c) >= 0 {
			return "", errors.New("its host has a character a host name cannot have")
		}
	}
	if ip, ok, err := parseIPv4(h); err != nil {
		return "", err
	} else if ok {
		return ip.String(), nil
	}
	return h, nil
}

// parseIPv4 is the WHATWG "IPv4 parser": a host whose last label is a
// number is an IPv4 address, in up to four parts of decimal, octal (0…) or
// hex (0x…), the last part filling the remaining bytes.
func parseIPv4(h string) (netip.Addr, bool, error) {
	labels := strings.Split(h, ".")
	if !numericLabel(labels[len(labels)-1]) {
		return netip.Addr{}, false, nil
	}
	if len(labels) > 4 {
		return netip.Addr{}, false, errors.New("its host is not a valid IPv4 address")
	}
	var nums []uint64
	for _, l := range labels {
		n, ok := ipv4Number(l)
		if !ok {
			return netip.Addr{}, false, errors.New("its host is not a valid IPv4 address")
		}
		nums = append(nums, n)
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false, errors.New("its host is not a valid IPv4 address")
	}
	v := last
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false, errors.New("its host is not a valid IPv4 address")
		}
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, nil
}

func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	_, ok := ipv4Number(l)
	return ok || strings.Trim(l, "0123456789") == ""
}

func ipv4Number(l string) (uint64, bool) {
	base := 10
	switch {
	case l == "":
		return 0, false
	case len(l) >= 2 && (l[:2] == "0x"):
		base, l = 16, l[2:]
		if l == "" {
			return 0, true
		}
	case len(l) >= 2 && l[0] == '0':
		base, l = 8, l[1:]
	}
	n, err := strconv.ParseUint(l, base, 64)
	if err != nil || n > 1<<32-1 {
		return 0, false
	}
	return n, true
}

// cleanPath resolves the dot segments of an escaped path, "%2e" included,
// as WHATWG URL parsing does, so that what is matched is what the server
// sees. What servers disagree on is refused rather than guessed at: an
// encoded slash or backslash (a separator or not), an encoded NUL (which
// ends the path for some), overlong UTF-8 (which some decode to "." or
// "/"), and any other segment some server reads as "..": one of dots
// padded with spaces or NULs (Windows and IIS trim them), three dots or
// more, or one that is a dot segment once decoded a second time (servers
// and proxies that decode twice).
func cleanPath(p string) (string, error) {
	once := looseUnescape(p)
	twice := looseUnescape(once)
	for _, form := range []string{strings.ToLower(p), strings.ToLower(once)} {
		if strings.Contains(form, "%2f") || strings.Contains(form, "%5c") {
			return "", errors.New("its path must not hold an encoded slash or backslash")
		}
		if strings.Contains(form, "%00") {
			return "", errors.New("its path must not hold an encoded NUL")
		}
	}
	if overlongUTF8(once) || overlongUTF8(twice) {
		return "", errors.New("its path must not hold overlong UTF-8")
	}
	if p == "" {
		return "/", nil
	}
	segs := strings.Split(p, "/")[1:] // p starts with "/"
	var out []string
	for i, s := range segs {
		last := i == len(segs)-1
		// Some servers (Tomcat, Jetty) read "..;x" as "..": a dot
		// segment with parameters is refused rather than guessed at.
		if name, _, params := strings.Cut(s, ";"); params && dotLike(name) {
			return "", errors.New("its path has a dot segment with parameters")
		}
		switch strings.ToLower(s) {
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			if dotLike(s) {
				return "", errors.New("its path has a segment servers may read as a dot segment")
			}
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/"), nil
}

// dotLike reports whether an escaped segment, decoded once or twice and
// cut at a ";" (parameters, to Tomcat and Jetty), is only dots, spaces,
// tabs and NULs, with a dot: what a server trimming those reads as "." or
// "..".
func dotLike(seg string) bool {
	once := looseUnescape(seg)
	for _, f := range []string{once, looseUnescape(once)} {
		f, _, _ = strings.Cut(f, ";")
		if strings.Contains(f, ".") && strings.Trim(f, ". \t\x00") == "" {
			return true
		}
	}
	return false
}

// looseUnescape decodes each valid %XX in s and keeps anything else as it
// is, as lenient servers do.
func looseUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// overlongUTF8 reports bytes that only an overlong encoding starts with:
// C0 and C1, E0 before A0, F0 before 90, and the five- and six-byte
// forms (F8 and above). Lenient decoders read C0 AE as ".".
func overlongUTF8(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		next := byte(0xff)
		if i+1 < len(s) {
			next = s[i+1]
		}
		switch {
		case c == 0xc0, c == 0xc1, c >= 0xf8:
			return true
		case c == 0xe0 && next >= 0x80 && next < 0xa0, c == 0xf0 && next >= 0x80 && next < 0x90:
			return true
		}
	}
	return false
}

// Cloud metadata services, refused like link-local addresses unless an
// allowed prefix names them.
var (
	metadataAddrs = map[netip.Addr]bool{
		netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OCI, DigitalOcean…
		netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task metadata
		netip.MustParseAddr("fd00:ec2::254"):   true, // AWS IMDS over IPv6
		netip.MustParseAddr("fd00:ec2::23"):    true, // AWS EKS Pod Identity over IPv6
		netip.MustParseAddr("fd20:ce::254"):    true, // GCP over IPv6
		netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
		netip.MustParseAddr("192.0.0.192"):     true, // Oracle Cloud (classic)
		netip.MustParseAddr("168.63.129.16"):   true, // Azure WireServer
	}
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// RFC 8215's local-use NAT64 prefix: a network may use the /48 itself,
	// or a /56, /64 or /96 inside it (RFC 6052, section 2.2).
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	// IPv4-translated (SIIT, RFC 2765) and the deprecated IPv4-compatible
	// forms: a stack that still routes them reaches the IPv4 address.
	v4Translated = netip.MustParsePrefix("::ffff:0:0:0/96")
	v4Compatible = netip.MustParsePrefix("::/96")
	// Deprecated site-local (RFC 3879): no public service lives there,
	// and some stacks still treat it as on-link.
	siteLocal     = netip.MustParsePrefix("fec0::/10")
	metadataNames = map[string]bool{
		"metadata": true, "metadata.google.internal": true, "metadata.goog": true,
		"instance-data": true, "instance-data.ec2.internal": true, "metadata.azure.internal": true,
	}
)

func metadataName(h string) bool { return metadataNames[h] }

// blockedAddr reports whether ip is link-local, unspecified or a metadata
// service: addresses that reach the host's own cloud credentials.
func blockedAddr(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if siteLocal.Contains(ip) {
		return true
	}
	// An IPv6 address that carries an IPv4 one (NAT64, RFC 6052; SIIT;
	// IPv4-compatible) may reach that IPv4 address: judge the one it
	// carries. Where the local-use NAT64 prefix puts it depends on the
	// prefix length the network uses (RFC 6052, section 2.2: /48, /56, /64
	// or /96, the last judged below), so every place is judged.
	b := ip.As16()
	if nat64Local.Contains(ip) {
		for _, at := range [][4]int{{6, 7, 9, 10}, {7, 9, 10, 11}, {9, 10, 11, 12}} {
			if blockedAddr(netip.AddrFrom4([4]byte{b[at[0]], b[at[1]], b[at[2]], b[at[3]]})) {
				return true
			}
		}
	}
	if nat64.Contains(ip) || nat64Local.Contains(ip) || v4Translated.Contains(ip) || v4Compatible.Contains(ip) {
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || metadataAddrs[ip]
}

// refusedAddress is the guard refusing a dial.
func refusedAddress(host string) *fetchError {
	return &fetchError{"ERR_FETCH_ADDRESS_REFUSED", fmt.Sprintf(
		"fetch to %s refused: it is a link-local or cloud metadata address (name it in fetch_allow to allow it)", host)}
}

// dial resolves the host once and connects only to addresses the guard
// accepts, checking the address actually dialled, so that DNS answering
// differently the second time (rebinding) cannot reach what the first
// answer hid.
func (f *fetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	named := f.special[host]
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
		named = f.special[ip.Unmap().String()]
	} else {
		if metadataName(host) && !named {
			return nil, refusedAddress(host)
		}
		if ips, err = f.lookup(ctx, host); err != nil {
			return nil, err
		}
	}
	var firstErr error
	for _, ip := range ips {
		if blockedAddr(ip) && !named {
			if firstErr == nil {
				firstErr = refusedAddress(ip.Unmap().WithZone("").String())
			}
			continue
		}
		d := f.dialer
		// The last check, on the socket's own address, in case a
		// resolver or the dialer hands over something else.
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || (blockedAddr(ap.Addr()) && !named) {
				return refusedAddress(address)
			}
			return nil
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = &net.DNSError{Err: "no address found", Name: host, IsNotFound: true}
	}
	return nil, firstErr
}

// fetchSpec is one call as the JavaScript layer hands it over.
type fetchSpec struct {
	method   string
	url      string
	headers  [][2]string
	body     []byte
	hasBody  bool
	redirect string
	timeout  time.Duration
	// headersTooLarge says the script's headers passed the cap before
	// they were all read: do fails the call as it would on the bytes.
	headersTooLarge bool
}

// fetchResult is a response read in full.
type fetchResult struct {
	status     int
	statusText string
	url        string
	redirected bool
	headers    [][2]string
	body       []byte
}

// do makes one call, checking every rule. ctx bounds it: installFetch
// gives it the exchange's deadline but not its cancellation, so that a
// call a script does not await still completes, and cancels it when the
// script aborts.
func (f *fetcher) do(ctx context.Context, spec *fetchSpec) (*fetchResult, error) {
	res, err := f.call(ctx, spec)
	if report := f.onCall.Load(); report != nil {
		(*report)(callOutcome(res, err))
	}
	return res, err
}

// The outcomes of an outbound call, as Config.OnOutboundCall gets them: a
// fixed set, so that a metric labelled with them stays bounded.
const (
	outboundOK        = "ok"         // an answer with a status below 400
	outboundHTTPError = "http_error" // an answer with a status of 400 or more
	outboundRefused   = "refused"    // not in fetch_allow, or a guarded address
	outboundTimeout   = "timeout"    // the call's or the exchange's time ran out
	outboundFailed    = "failed"     // anything else: the network, TLS, a bad request or answer, an abort
)

func callOutcome(res *fetchResult, err error) string {
	switch {
	case err == nil && res.status >= 400:
		return outboundHTTPError
	case err == nil:
		return outboundOK
	}
	switch errorCode(err) {
	case "ERR_FETCH_NOT_ALLOWED", "ERR_FETCH_ADDRESS_REFUSED":
		return outboundRefused
	case "ETIMEDOUT":
		return outboundTimeout
	}
	return outboundFailed
}

// call is do without the report.
func (f *fetcher) call(ctx context.Context, spec *fetchSpec) (*fetchResult, error) {
	u, err := f.check(spec.url)
	if err != nil {
		return nil, err
	}
	// Forbidden by fetch too: CONNECT would open a tunnel through an
	// allowed host to anywhere. Compared upper-cased here, whatever the
	// caller did, as servers and proxies read methods without regard to
	// case.
	switch strings.ToUpper(spec.method) {
	case http.MethodConnect, http.MethodTrace, "TRACK":
		return nil, &fetchError{"ERR_INVALID_ARG_VALUE", fmt.Sprintf("fetch to %s: the method %s is not allowed", loggable(u), spec.method)}
	}
	if len(spec.body) > maxFetchRequestSize {
		return nil, &fetchError{"ERR_FETCH_TOO_LARGE", fmt.Sprintf("fetch to %s: the request body is more than the %d bytes allowed", loggable(u), maxFetchRequestSize)}
	}
	if spec.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.timeout)
		defer cancel()
	}
	ctx = context.WithValue(ctx, fetchRequestKey{}, spec.redirect)
	var body io.Reader
	if spec.hasBody {
		body = bytes.NewReader(spec.body)
	}
	req, err := http.NewRequestWithContext(ctx, spec.method, u.String(), body)
	if err != nil {
		return nil, &fetchError{"ERR_INVALID_ARG_VALUE", fmt.Sprintf("fetch to %s: %v", loggable(u), err)}
	}
	size := 0
	for _, h := range spec.headers {
		size += len(h[0]) + len(h[1])
		switch http.CanonicalHeaderKey(h[0]) {
		// Set by the transport from the URL and the body; a script
		// setting them could smuggle a second request or another host.
		// Accept-Encoding is left to the transport too, so that bodies
		// are always decompressed, as Node's clients do, and the size
		// cap counts what the script gets.
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "Te", "Trailer",
			"Accept-Encoding":
			continue
		}
		req.Header.Add(h[0], h[1])
	}
	if spec.headersTooLarge || size > maxFetchHeaderBytes {
		return nil, &fetchError{"ERR_FETCH_TOO_LARGE", fmt.Sprintf("fetch to %s: the request headers are more than the %d bytes allowed", loggable(u), maxFetchHeaderBytes)}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "caddyhook")
	}
	start := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		err = unwrapFetchError(err)
		f.log.Debug("fetch failed", zap.String("method", spec.method), zap.String("url", loggable(u)),
			zap.String("error", errorCode(err)), zap.Duration("duration", time.Since(start)))
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchResponseSize+1))
	f.log.Debug("fetch", zap.String("method", spec.method), zap.String("url", loggable(resp.Request.URL)),
		zap.Int("status", resp.StatusCode), zap.Duration("duration", time.Since(start)))
	if err != nil {
		return nil, unwrapFetchError(err)
	}
	if len(data) > maxFetchResponseSize {
		return nil, &fetchError{"ERR_FETCH_TOO_LARGE", fmt.Sprintf("fetch to %s: the response body is more than the %d bytes allowed", loggable(resp.Request.URL), maxFetchResponseSize)}
	}
	res := &fetchResult{
		status:     resp.StatusCode,
		statusText: strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode))),
		url:        resp.Request.URL.String(),
		redirected: resp.Request.URL.String() != u.String(),
		body:       data,
	}
	names := make([]string, 0, len(resp.Header))
	for name := range resp.Header {
		names = append(names, name)
	}
	sort.Strings(names) // what scripts see does not change from call to call
	for _, name := range names {
		for _, v := range resp.Header[name] {
			res.headers = append(res.headers, [2]string{strings.ToLower(name), v})
		}
	}
	return res, nil
}

// unwrapFetchError finds the rule that refused a call in a url.Error, or
// names the network failure by its class.
func unwrapFetchError(err error) error {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe
	}
	code, msg := classifyNetError(err)
	return &netError{code: code, msg: msg}
}

// classifyNetError names a failure by its class, in fixed words, with the
// code Node (or undici) gives it. Go's own text is never used: it quotes
// what the server sent (a malformed header or status line, a Location,
// GOAWAY debug data), which would reach the script's error, and from there
// error_description and the logs. Matching on Go's text below only picks
// a class.
func classifyNetError(err error) (code, msg string) {
	var (
		nerr      net.Error
		dns       *net.DNSError
		hostname  x509.HostnameError
		authority x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		alert     tls.AlertError
		protocol  textproto.ProtocolError
	)
	text := err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		return "ABORT_ERR", "the request was aborted"
	case errors.Is(err, errRedirect):
		return "ERR_FETCH_REDIRECT", errRedirect.Error()
	case errors.Is(err, errTooManyRedirects):
		return "ERR_FETCH_REDIRECT", errTooManyRedirects.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "ETIMEDOUT", "the request timed out"
	case errors.As(err, &dns):
		return "ENOTFOUND", "the host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED", "the connection was refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "ECONNRESET", "the connection was reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "EHOSTUNREACH", "the host is unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "ENETUNREACH", "the network is unreachable"
	case errors.As(err, &hostname):
		return "ERR_TLS_CERT_ALTNAME_INVALID", "the server's TLS certificate does not name this host"
	case errors.As(err, &authority):
		return "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "the server's TLS certificate is not signed by a trusted authority"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "CERT_HAS_EXPIRED", "the server's TLS certificate has expired"
	case errors.As(err, &invalid), errors.As(err, &verify):
		return "CERT_UNTRUSTED", "the server's TLS certificate is not valid"
	case errors.As(err, &record), errors.As(err, &alert):
		return "EPROTO", "the TLS handshake failed"
	case strings.Contains(text, "server response headers exceeded"):
		return "UND_ERR_HEADERS_OVERFLOW", "the response headers are larger than allowed"
	case strings.Contains(text, "failed to parse Location header"):
		return "ERR_FETCH_REDIRECT", "a redirect's Location is not a valid URL"
	case errors.As(err, &protocol):
		return "EPROTO", "the server's response is not valid HTTP"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "UND_ERR_SOCKET", "the server closed the connection"
	}
	// A malformed status line, an HTTP/2 GOAWAY or stream reset, and what
	// else Go reports without a type: all the server's doing.
	return "EPROTO", "the server's response is not valid HTTP"
}

// netError is a call that failed on the network: scripts see fetch's
// TypeError('fetch failed') with this as its cause.
type netError struct{ code, msg string }

func (e *netError) Error() string { return e.msg }

// errorCode is the code of what unwrapFetchError returns, for the log.
func errorCode(err error) string {
	var fe *fetchError
	var ne *netError
	switch {
	case errors.As(err, &fe):
		return fe.code
	case errors.As(err, &ne):
		return ne.code
	}
	return ""
}

// fetchHost is what the outbound-call API needs from the runtime it is
// installed in: the context of the exchange being run (its deadline
// bounds each call), the count of that exchange's calls in flight, and a
// way to run work off the loop and its result on it.
type fetchHost interface {
	callContext() context.Context
	inflight() *atomic.Int32
	async(work func() func() error)
}

// The worker hosts the calls of the exchange it serves. At config load
// (warmUp) a call gets a context whose deadline has passed, so it never
// goes out and its callback never runs; the worker then has work pending
// and is not kept.
func (w *worker) callContext() context.Context {
	if r := w.run; r != nil && !r.loading {
		return r.ctx
	}
	return expiredContext
}

func (w *worker) inflight() *atomic.Int32 { return w.fetchCalls }

func (w *worker) async(work func() func() error) { w.loop.async(work) }

// expiredContext is past its deadline from the start.
var expiredContext, _ = context.WithDeadline(context.Background(), time.Unix(0, 0))

// installFetch defines fetch and its classes as globals of vm, and returns
// the request, axios and node-fetch modules, built on first require. It
// must run before any script, so the JavaScript layers capture the
// intrinsics. Without fetch_allow prefixes every call fails naming the
// directive.
func installFetch(vm *goja.Runtime, f *fetcher, host fetchHost) map[string]func() goja.Value {
	call := func(c goja.FunctionCall) goja.Value {
		// The exchange's own counter, kept by the call: it is the one its
		// end decrements, whichever exchange is served by then.
		inflight := host.inflight()
		spec := fetchSpecOf(vm, c.Argument(0))
		cb, ok := goja.AssertFunction(c.Argument(1))
		if !ok {
			throwTypeError(vm, "fetch: the callback must be a function")
		}
		// Every exchange's context has a deadline (Run, warmUp); one
		// without would give the zero time, and the call would fail.
		ctx := host.callContext()
		deadline, _ := ctx.Deadline()
		callCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		var refused error
		switch {
		case len(f.allow) == 0:
			if u, err := normalizeURL(spec.url); err == nil {
				refused = notAllowed(loggable(u))
			} else {
				refused = notAllowed(shownURL(spec.url))
			}
		case inflight.Load() >= maxFetchInflight:
			refused = &fetchError{"ERR_FETCH_TOO_MANY", fmt.Sprintf("more than %d outbound calls in flight at once", maxFetchInflight)}
		}
		if refused == nil {
			inflight.Add(1)
		}
		host.async(func() func() error {
			var out *fetchResult
			err := refused
			if err == nil {
				out, err = f.do(callCtx, spec)
				inflight.Add(-1)
			}
			cancel()
			return func() error {
				// Once the exchange's time is up its scripts get no more
				// results, though the timer that ends the run may not have
				// fired yet: the run ends with "hook timed out" whichever
				// notices first.
				if ctx.Err() != nil || !time.Now().Before(deadline) {
					return timeoutCause(ctx)
				}
				if err != nil {
					_, cerr := cb(goja.Undefined(), fetchErrorValue(vm, err))
					return cerr
				}
				_, cerr := cb(goja.Undefined(), goja.Null(), fetchResultValue(vm, out))
				return cerr
			}
		})
		return vm.ToValue(func(goja.FunctionCall) goja.Value { cancel(); return goja.Undefined() })
	}
	// Built when the layers load: most runtimes never call out.
	return installFetchJS(vm, func() *goja.Object { return fetchNative(vm, call) })
}

// fetchNative is the object the layers are written on: call, and the
// conversions they cannot do in JavaScript without trusting what a script
// may have changed.
func fetchNative(vm *goja.Runtime, call func(goja.FunctionCall) goja.Value) *goja.Object {
	native := vm.NewObject()
	define(vm, native, "call", call)
	define(vm, native, "base64", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(base64.StdEncoding.EncodeToString([]byte(c.Argument(0).String())))
	})
	// The layer hands these its own ArrayBuffers; anything else means a
	// script got something past it, which is a TypeError, not a panic.
	arrayBuffer := func(v goja.Value, name string) []byte {
		ab, ok := v.Export().(goja.ArrayBuffer)
		if !ok {
			throwTypeError(vm, "fetch: "+name+" needs an ArrayBuffer")
		}
		return ab.Bytes()
	}
	define(vm, native, "toBuffer", func(c goja.FunctionCall) goja.Value {
		return buffer.WrapBytes(vm, arrayBuffer(c.Argument(0), "toBuffer"))
	})
	define(vm, native, "utf8", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(validUTF8(string(arrayBuffer(c.Argument(0), "utf8"))))
	})
	define(vm, native, "bytes", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(vm.NewArrayBuffer([]byte(c.Argument(0).String())))
	})
	// shown is what an error message may show of a URL (shownURL). The
	// string is cut before it is copied to Go, as in fetchSpecOf: it may
	// be 32 Mi units.
	define(vm, native, "shown", func(c goja.FunctionCall) goja.Value {
		s, ok := c.Argument(0).(goja.String)
		if !ok {
			return vm.ToValue(shownURL(""))
		}
		if s.Length() > maxFetchURLLength {
			s = s.Substring(0, maxFetchURLLength)
		}
		return vm.ToValue(shownURL(s.String()))
	})
	define(vm, native, "isSearchParams", func(c goja.FunctionCall) goja.Value {
		o, ok := c.Argument(0).(*goja.Object)
		return vm.ToValue(ok && o.ExportType() != nil && o.ExportType().String() == "*url.urlSearchParams")
	})
	return native
}

// fetchSpecOf reads the plain object the JavaScript layer builds: {method,
// url, headers: [[name, value]…], body: string|ArrayBuffer|null, redirect,
// timeout}. The layer is ours, but a script may have changed the
// prototypes it relies on, so anything unexpected is a TypeError.
func fetchSpecOf(vm *goja.Runtime, v goja.Value) *fetchSpec {
	o, ok := v.(*goja.Object)
	if !ok {
		throwTypeError(vm, "fetch: bad request")
	}
	// Every string is measured before it is copied to Go: a script's
	// string may be 32 Mi units. A UTF-16 unit is at least one UTF-8 byte,
	// so a length past a byte cap is past it in bytes too.
	str := func(name string, max int) string {
		v, ok := o.Get(name).(goja.String)
		if !ok {
			return ""
		}
		if v.Length() > max {
			throwTypeError(vm, fmt.Sprintf("fetch: the %s is longer than the %d characters allowed", strings.Replace(name, "url", "URL", 1), max))
		}
		return v.String()
	}
	spec := &fetchSpec{method: strings.ToUpper(str("method", 256)), url: str("url", maxFetchURLLength), redirect: str("redirect", 16)}
	if spec.method == "" {
		spec.method = http.MethodGet
	}
	if t := o.Get("timeout"); t != nil && goja.IsNumber(t) {
		if ms := t.ToFloat(); ms > 0 && ms < 1<<31 {
			spec.timeout = time.Duration(ms * float64(time.Millisecond))
		}
	}
	if hs, ok := o.Get("headers").(*goja.Object); ok {
		n := toLength(hs.Get("length"))
		if n > 10000 {
			throwTypeError(vm, "fetch: too many headers")
		}
		units := 0
		for i := int64(0); i < n; i++ {
			pair, ok := hs.Get(strconv.FormatInt(i, 10)).(*goja.Object)
			if !ok {
				continue
			}
			name, _ := pair.Get("0").(goja.String)
			value, _ := pair.Get("1").(goja.String)
			if name == nil || value == nil {
				continue
			}
			if units += name.Length() + value.Length(); units > maxFetchHeaderBytes {
				spec.headersTooLarge = true
				spec.headers = nil
				break
			}
			spec.headers = append(spec.headers, [2]string{name.String(), value.String()})
		}
	}
	switch b := o.Get("body").(type) {
	case nil:
	case goja.String:
		if b.Length() > maxFetchRequestSize {
			spec.body = make([]byte, maxFetchRequestSize+1) // fails in do, with the URL
		} else {
			spec.body = []byte(b.String())
		}
		spec.hasBody = true
	case *goja.Object:
		if ab, ok := b.Export().(goja.ArrayBuffer); ok {
			// A copy: the call reads it on another goroutine while the
			// script may write to the buffer.
			if data := ab.Bytes(); len(data) > maxFetchRequestSize {
				spec.body = make([]byte, maxFetchRequestSize+1) // fails in do, with the URL
			} else {
				spec.body = append([]byte(nil), data...)
			}
			spec.hasBody = true
		}
	}
	return spec
}

// fetchErrorValue hands a failure to the JavaScript layer as {message,
// code, refused}; the layer makes the error each API throws.
func fetchErrorValue(vm *goja.Runtime, err error) goja.Value {
	o := vm.NewObject()
	var fe *fetchError
	var ne *netError
	switch {
	case errors.As(err, &fe):
		define(vm, o, "message", fe.msg)
		define(vm, o, "code", fe.code)
		define(vm, o, "refused", true)
	case errors.As(err, &ne):
		define(vm, o, "message", ne.msg)
		define(vm, o, "code", ne.code)
		define(vm, o, "refused", false)
	default:
		// Not reached: do returns only the two above. Its text is not
		// shown all the same, as it may quote the server.
		define(vm, o, "message", "fetch failed")
		define(vm, o, "code", "")
		define(vm, o, "refused", false)
	}
	return o
}

// fetchResultValue hands a response over; its body goes over as an
// ArrayBuffer, decoded in Go when the script wants text.
func fetchResultValue(vm *goja.Runtime, res *fetchResult) goja.Value {
	o := vm.NewObject()
	define(vm, o, "status", res.status)
	define(vm, o, "statusText", res.statusText)
	define(vm, o, "url", res.url)
	define(vm, o, "redirected", res.redirected)
	hs := make([]any, len(res.headers))
	for i, h := range res.headers {
		hs[i] = vm.NewArray(h[0], validUTF8(h[1]))
	}
	define(vm, o, "headers", vm.NewArray(hs...))
	define(vm, o, "body", vm.NewArrayBuffer(res.body))
	return o
}
