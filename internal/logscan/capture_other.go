//go:build !unix

package logscan

// captureStderr is not available here: only the loggers are captured.
func captureStderr(*Capture) func() { return nil }
