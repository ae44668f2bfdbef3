//go:build !race

package credentialsexchange

// Without the race detector the soak runs the counts: the RSS after
// soakTotal exchanges must be within 30 MB of the RSS after soakWarm.
const (
	soakWarm  = 20_000
	soakTotal = 200_000
)
