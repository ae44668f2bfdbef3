//go:build !race

package credentialsexchange

// Without the race detector the soak runs the counts and bound: the
// RSS after soakTotal exchanges must be within 30 MB of the RSS after
// soakWarm. About 40 s on two idle cores (190 µs an exchange, 4 at once),
// 2-3 min when other work shares them. -short skips it.
const (
	soakWarm         = 20_000
	soakTotal        = 200_000
	soakMaxRSSGrowth = 30 << 20
)
