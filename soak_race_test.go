//go:build race

package credentialsexchange

// Under -race (the CI test command) an exchange is about ten times slower,
// so the soak runs a tenth of the counts to stay within a minute or
// so on two cores; the ratio of the two counts, and so what a per-exchange
// leak adds between the samples relative to the warm-up, is the same.
const (
	soakWarm  = 2_000
	soakTotal = 20_000
)
