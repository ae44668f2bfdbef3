//go:build !race

package credentialsexchange

// Without the race detector the soak runs the counts and bound: the
// RSS after soakTotal exchanges must be within 30 MB of the RSS after
// soakWarm. About 80 s of CPU (370 µs an exchange); 2-3 min on two
// shared cores. -short skips it.
const (
	soakWarm         = 20_000
	soakTotal        = 200_000
	soakMaxRSSGrowth = 30 << 20
)
