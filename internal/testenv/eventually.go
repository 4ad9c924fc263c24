package testenv

import (
	"testing"
	"time"
)

// Polling starts fast, so a condition that holds almost at once is seen at
// once, and backs off to pollMax, so a costly one (listing and querying
// workflows) does not load the server it polls.
const (
	pollMin = 10 * time.Millisecond
	pollMax = 100 * time.Millisecond
)

// Eventually calls cond until it returns nil and fails the test if it still
// has not within timeout, naming what was awaited and cond's last error. It
// is for state held by another process or server that no event announces.
// cond runs on the calling goroutine, so it may fail the test itself (with
// require) on an error that waiting cannot cure. cond is called at least
// once, and once more at the deadline.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := pollMin; ; wait = min(2*wait, pollMax) {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(min(wait, left)) // polling: nothing announces the change
	}
}
