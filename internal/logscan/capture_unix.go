//go:build unix

package logscan

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// captureStderr points file descriptor 2 at a pipe whose reader copies
// everything into c and on to the original standard error, and returns
// the function that puts descriptor 2 back and waits for the copy to end.
// Capturing the descriptor, not os.Stderr, catches writers that took
// os.Stderr before the tests began (Caddy's default logger is made in an
// init function).
func captureStderr(c *Capture) func() {
	saved, err := unix.Dup(2)
	if err != nil {
		return nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		unix.Close(saved)
		return nil
	}
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		r.Close()
		w.Close()
		unix.Close(saved)
		return nil
	}
	orig := os.NewFile(uintptr(saved), "stderr")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.MultiWriter(c, orig), r)
	}()
	return func() {
		_ = unix.Dup2(saved, 2) // the pipe's last writer is now w alone
		w.Close()
		<-done
		r.Close()
		orig.Close()
	}
}
