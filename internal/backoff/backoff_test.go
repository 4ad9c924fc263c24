package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/backoff"
)

func waits(e *backoff.Exponential, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = e.Next()
	}
	return out
}

func TestExponentialDoublesUpToMaxAndResets(t *testing.T) {
	t.Parallel()
	e := backoff.Exponential{Initial: 100 * time.Millisecond, Max: time.Second}
	ms := time.Millisecond
	require.Equal(t, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}, waits(&e, 6))
	e.Reset()
	require.Equal(t, []time.Duration{100 * ms, 200 * ms}, waits(&e, 2))
}

func TestExponentialWaitsAnInitialAboveMaxOnce(t *testing.T) {
	t.Parallel()
	e := backoff.Exponential{Initial: 3 * time.Second, Max: time.Second}
	require.Equal(t, []time.Duration{3 * time.Second, time.Second, time.Second}, waits(&e, 3))
}

func TestExponentialJitterStaysInTheUpperHalf(t *testing.T) {
	t.Parallel()
	e := backoff.Exponential{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: true}
	for i, want := range []time.Duration{100, 200, 400, 400, 400} {
		want *= time.Millisecond
		got := e.Next()
		require.GreaterOrEqual(t, got, want/2, "wait %d", i)
		require.LessOrEqual(t, got, want, "wait %d", i)
	}
	zero := backoff.Exponential{Jitter: true}
	require.Zero(t, zero.Next())
}

func TestSleepEndsWithTheContext(t *testing.T) {
	t.Parallel()
	require.True(t, backoff.Sleep(context.Background(), time.Nanosecond))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e := backoff.Exponential{Initial: time.Hour, Max: time.Hour}
	require.False(t, e.Sleep(ctx))
}
