package testenv

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// tbWriter forwards writes to t.Log. Third-party libraries log from their
// own goroutines, and t.Log panics once the test has completed, so writes
// arriving after the test's cleanups have run are dropped instead.
type tbWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

// newTBWriter must be called before the resources that log through it are
// created: its cleanup is then registered first and so runs last.
func newTBWriter(t testing.TB) *tbWriter {
	w := &tbWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it: enough of a child
// process's output to explain a failure without holding an unbounded log.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logOnFailure dumps a process's output tail into the test log, but only if
// the test failed: passing tests stay quiet.
func logOnFailure(t testing.TB, what string, out *tailBuffer) {
	t.Cleanup(func() {
		if t.Failed() {
			if s := out.String(); s != "" {
				t.Logf("testenv: last output of %s:\n%s", what, s)
			}
		}
	})
}
