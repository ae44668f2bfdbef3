//go:build race

package credentialsexchange

// Under -race (the CI test command) an exchange is four to ten times
// slower, so the soak runs a tenth of the counts, about a minute on
// two shared cores; the ratio of the two counts is the same, so a
// per-exchange leak shows alike. The race runtime keeps shadow memory and
// metadata for what the exchanges allocate and returns little of it to the
// OS, so RSS grows with it (measured: 14 MiB from 2,000 to 20,000
// exchanges, with the Go heap flat): the RSS bound is looser here, and the
// live-heap bound, which the race runtime does not inflate, is the same.
const (
	soakWarm         = 2_000
	soakTotal        = 20_000
	soakMaxRSSGrowth = 48 << 20
)
