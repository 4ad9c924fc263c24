package watcher

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// prefixEnd is the checkpoint rule written out independently of the
// tracker: the position of the last change of the longest finished prefix,
// or start when the first change is unfinished.
func prefixEnd(start string, positions []string, finished []bool) string {
	last := start
	for i, p := range positions {
		if !finished[i] {
			break
		}
		last = p
	}
	return last
}

// finishInOrder emits positions, finishes them in the given order and
// checks the rule after every step.
func finishInOrder(t *testing.T, positions []string, order []int) {
	t.Helper()
	const start = "p00"
	tr := newTracker(start, len(positions))
	seqs := make([]uint64, len(positions))
	for i, p := range positions {
		require.NoError(t, tr.acquire(context.Background()))
		seqs[i] = tr.add(p)
	}
	finished := make([]bool, len(positions))
	for step, i := range order {
		tr.done(seqs[i])
		finished[i] = true
		want := prefixEnd(start, positions, finished)
		require.Equal(t, want, tr.finished(), "finish order %v, after step %d (finished %v)", order, step, finished)
		// Every change behind the prefix's end still holds its slot.
		tr.mu.Lock()
		require.Len(t, tr.slots, len(tr.window), "slots held after step %d of %v", step, order)
		tr.mu.Unlock()
	}
	select {
	case <-tr.idle():
	default:
		t.Fatalf("finish order %v: not idle after every change finished", order)
	}
}

// The head of the window finishing last is what the checkpoint rule is
// about: the prefix must end at the last change of the contiguous finished
// run, not at the newest change finished or emitted.
func TestTrackerHeadFinishesLast(t *testing.T) {
	t.Parallel()
	positions := []string{"p01", "p02", "p03", "p04"}
	finishInOrder(t, positions, []int{1, 2, 0, 3}) // prefix p03 while p04 is unfinished
	finishInOrder(t, positions, []int{3, 1, 2, 0}) // prefix jumps from p00 to p04
	finishInOrder(t, positions, []int{2, 0, 3, 1})
}

// Every finish order of five changes.
func TestTrackerEveryFinishOrder(t *testing.T) {
	t.Parallel()
	positions := []string{"p01", "p02", "p03", "p04", "p05"}
	n := 0
	var permute func(order, rest []int)
	permute = func(order, rest []int) {
		if len(rest) == 0 {
			n++
			finishInOrder(t, positions, order)
			return
		}
		for i := range rest {
			permute(append(slices.Clone(order), rest[i]), slices.Concat(rest[:i], rest[i+1:]))
		}
	}
	permute(nil, []int{0, 1, 2, 3, 4})
	require.Equal(t, 120, n)
}

// Changes emitted while earlier ones are unfinished join the window behind
// them, and a later finish of the head carries the prefix over every
// finished one, never to an unfinished one.
func TestTrackerEmitWhileHeadUnfinished(t *testing.T) {
	t.Parallel()
	tr := newTracker("p00", 10)
	add := func(p string) uint64 {
		require.NoError(t, tr.acquire(context.Background()))
		return tr.add(p)
	}
	a := add("p01")
	b := add("p02")
	tr.done(b)
	require.Equal(t, "p00", tr.finished())
	c := add("p03")
	d := add("p04")
	tr.done(d)
	tr.done(a)
	require.Equal(t, "p02", tr.finished(), "c is unfinished: the prefix ends at b")
	e := add("p05")
	tr.done(c)
	require.Equal(t, "p04", tr.finished(), "e is unfinished: the prefix ends at d")
	tr.done(e)
	require.Equal(t, "p05", tr.finished())
}
