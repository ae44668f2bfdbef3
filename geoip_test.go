package credentialsexchange

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

var zurich = map[string]any{
	"cityName": "Zurich", "continentCode": "EU", "countryCode": "CH", "countryCode3": "CHE", "countryName": "Switzerland",
	"latitude": 47.3682, "longitude": 8.5671, "subdivisionCode": "ZH", "subdivisionName": "Zurich", "timeZone": "Europe/Zurich",
}

func TestGeoIPLookup(t *testing.T) {
	g, err := openGeoIP(writeGeoDB(t, "GeoIP2-City"))
	if err != nil {
		t.Fatal(err)
	}
	log := zap.NewNop()
	for _, tc := range []struct {
		ip   string
		want map[string]any
	}{
		{"203.0.113.9", zurich},
		{"::ffff:203.0.113.9", zurich}, // an IPv4 client on a dual-stack listener
		{"2001:db8::1", map[string]any{"continentCode": "NA", "countryCode": "US", "countryCode3": "USA", "countryName": "United States"}},
		{"fe80::1%eth0", map[string]any{}},   // not in the database
		{"198.51.100.7", map[string]any{}},   // not in the database
		{"", map[string]any{}},               // no client address
		{"not an address", map[string]any{}}, // never fails the exchange
	} {
		if got := g.lookup(tc.ip, log); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("lookup(%q) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	if err := g.close(); err != nil {
		t.Fatal(err)
	}
	if got := g.lookup("203.0.113.9", log); len(got) != 0 {
		t.Errorf("a closed database answered %v", got)
	}
	var none *geoIPDB
	if got := none.lookup("203.0.113.9", log); got == nil || len(got) != 0 {
		t.Errorf("no database gave %v, want {}", got)
	}
}

func TestGeoIPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("not a maxmind database"), 0o644); err != nil {
		t.Fatal(err)
	}
	asn := writeGeoDB(t, "GeoLite2-ASN")
	for _, path := range []string{filepath.Join(dir, "missing.mmdb"), garbage, asn} {
		_, err := openGeoIP(path)
		if err == nil || !strings.Contains(err.Error(), "geoip_db "+path) {
			t.Errorf("%s: error %v does not name the file", path, err)
		}
		var h Handler
		err = h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("credentials_exchange {\n\thook testdata/hooks/starter.js\n\tgeoip_db " + path + "\n}"))
		if err == nil || !strings.Contains(err.Error(), path) || !strings.HasSuffix(err.Error(), "Testfile:3") {
			t.Errorf("Caddyfile with %s: error %v", path, err)
		}
	}
	var h Handler
	good := writeGeoDB(t, "GeoLite2-City")
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("credentials_exchange {\n\thook testdata/hooks/starter.js\n\tgeoip_db " + good + "\n}")); err != nil || h.GeoIPDB != good {
		t.Fatalf("geoip_db %s: %v, %q", good, err, h.GeoIPDB)
	}
}

// TestEventRequestGeoIP: actions see the geoip of the client address Caddy
// determined; {} without geoip_db.
func TestEventRequestGeoIP(t *testing.T) {
	up := newTestUpstream(t)
	action := writeScript(t, `exports.onExecuteCredentialsExchange = async (event, api) => {
		api.accessToken.setCustomClaim('https://t.example/geoip', event.request.geoip);
	};`)
	db := writeGeoDB(t, "GeoIP2-City")
	for _, tc := range []struct {
		name, db, ip string
		want         map[string]any
	}{
		{"with a database", db, "203.0.113.9", zurich},
		{"an address it does not hold", db, "198.51.100.7", map[string]any{}},
		{"without a database", "", "203.0.113.9", map[string]any{}},
	} {
		h := provision(t, &Handler{Actions: []string{action}, UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t), GeoIPDB: tc.db})
		req := formRequest(ccForm)
		req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: tc.ip}))
		rec := serve(t, h, &scriptedUpstream{status: 200, body: tokenResponse(up.token(t, nil))}, req)
		var got map[string]any
		if err := json.Unmarshal(issuedClaims(t, rec)["https://t.example/geoip"], &got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: geoip = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestGeoIPReload: each config has its own reader; cleaning up the old one
// leaves the new one working.
func TestGeoIPReload(t *testing.T) {
	up := newTestUpstream(t)
	db := writeGeoDB(t, "GeoIP2-City")
	config := func() *Handler {
		return &Handler{Hook: filepath.Join("testdata", "hooks", "starter.js"), UpstreamKey: up.keyFile, SigningKey: writeSigningKey(t), GeoIPDB: db}
	}
	old := provision(t, config())
	reloaded := provision(t, config())
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := reloaded.geoip.lookup("203.0.113.9", zap.NewNop()); got["countryCode"] != "CH" {
		t.Errorf("after the old config's cleanup the new one found %v", got)
	}
	if got := old.geoip.lookup("203.0.113.9", zap.NewNop()); len(got) != 0 {
		t.Errorf("the cleaned-up config still answers %v", got)
	}
}
