package credentialsexchange

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/oschwald/maxminddb-golang/v2"
	"go.uber.org/zap"
	"golang.org/x/text/language"
)

// geoIPDB answers event.request.geoip from a MaxMind database (GeoIP2 or
// GeoLite2 City or Country, or any database with their record layout).
// Each provisioned handler opens its own, and Cleanup closes it, so a
// reload with a new file takes effect and nothing outlives its config.
type geoIPDB struct {
	path string
	// mu keeps Close from unmapping the file under a lookup still running
	// in a request the old config serves after a reload.
	mu sync.RWMutex
	db *maxminddb.Reader
}

// openGeoIP opens the database at path; every error names the file.
func openGeoIP(path string) (*geoIPDB, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip_db %s: %w", path, err)
	}
	if !hasLocation(db.Metadata.DatabaseType) {
		_ = db.Close()
		return nil, fmt.Errorf("geoip_db %s: a %q database has no location data; use a GeoIP2/GeoLite2 City or Country database", path, db.Metadata.DatabaseType)
	}
	return &geoIPDB{path: path, db: db}, nil
}

// close releases the database; lookups after it find nothing.
func (g *geoIPDB) close() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.db == nil {
		return nil
	}
	err := g.db.Close()
	g.db = nil
	return err
}

// geoRecord is the part of a GeoIP2 City/Country record that Auth0's
// event.request.geoip holds; names are taken in English, as Auth0 gives
// them.
type geoRecord struct {
	City struct {
		Names struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
		Names   struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"country"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
		TimeZone  string   `maxminddb:"time_zone"`
	} `maxminddb:"location"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
		Names   struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"subdivisions"`
}

// hasLocation reports false for the database types known to hold no
// location (ASN, connection type, ISP, domain, anonymous IP): they open
// without error but would give every client {}, a mistake worth naming.
func hasLocation(databaseType string) bool {
	for _, t := range []string{"ASN", "Connection-Type", "ISP", "Domain", "Anonymous-IP"} {
		if databaseType == "GeoLite2-"+t || databaseType == "GeoIP2-"+t {
			return false
		}
	}
	return true
}

// lookup gives Auth0's geoip object for ip, with only the fields the
// database knows: {cityName, continentCode, countryCode, countryCode3,
// countryName, latitude, longitude, subdivisionCode, subdivisionName,
// timeZone}. Without a database, for an address it does not hold, or when
// the lookup fails, it is empty: geoip is a hint and never fails an
// exchange. A failure is logged at debug.
func (g *geoIPDB) lookup(ip string, log *zap.Logger) map[string]any {
	out := map[string]any{}
	if g == nil {
		return out
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		log.Debug("geoip: no client address to look up", zap.Error(err))
		return out
	}
	var rec geoRecord
	g.mu.RLock()
	if g.db == nil {
		err = errors.New("the database is closed")
	} else {
		err = g.db.Lookup(addr.WithZone("").Unmap()).Decode(&rec)
	}
	g.mu.RUnlock()
	if err != nil {
		log.Debug("geoip lookup failed", zap.String("geoip_db", g.path), zap.Error(err))
		return out
	}
	set := func(name, v string) {
		if v != "" {
			out[name] = v
		}
	}
	set("cityName", rec.City.Names.En)
	set("continentCode", rec.Continent.Code)
	set("countryCode", rec.Country.ISOCode)
	set("countryName", rec.Country.Names.En)
	if rec.Country.ISOCode != "" {
		// MaxMind has no alpha-3 code; Auth0's countryCode3 is ISO 3166-1
		// alpha-3, which CLDR's region data maps from alpha-2.
		if region, err := language.ParseRegion(rec.Country.ISOCode); err == nil && region.IsCountry() {
			set("countryCode3", region.ISO3())
		}
	}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		out["latitude"], out["longitude"] = *rec.Location.Latitude, *rec.Location.Longitude
	}
	set("timeZone", rec.Location.TimeZone)
	if len(rec.Subdivisions) > 0 { // the largest first, as Auth0 reports it
		set("subdivisionCode", rec.Subdivisions[0].ISOCode)
		set("subdivisionName", rec.Subdivisions[0].Names.En)
	}
	return out
}
