package testenv

import (
	"bytes"
	"io"
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

// LogWriter returns a writer that logs each write through t.Log until the
// test has completed, for the loggers of the code under test. Call it
// before creating what logs through it: its cleanup is then registered
// first and so runs last.
func LogWriter(t testing.TB) io.Writer { return newTBWriter(t) }

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

// LogBuffer is a log sink a test reads while the code under test may still
// be writing to it from its own goroutines. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	max int // when positive, only the last max bytes are kept
	buf bytes.Buffer
}

// newTailBuffer keeps the last max bytes written to it: enough of a child
// process's output to explain a failure without holding an unbounded log.
func newTailBuffer(max int) *LogBuffer { return &LogBuffer{max: max} }

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; b.max > 0 && over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

// String is everything written so far (its tail, for a tail buffer).
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logOnFailure dumps a process's output tail into the test log, but only if
// the test failed: passing tests stay quiet.
func logOnFailure(t testing.TB, what string, out *LogBuffer) {
	t.Cleanup(func() {
		if t.Failed() {
			if s := out.String(); s != "" {
				t.Logf("testenv: last output of %s:\n%s", what, s)
			}
		}
	})
}
