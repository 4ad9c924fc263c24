package lograte_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/lograte"
)

func TestLimiterCountsSuppressedCalls(t *testing.T) {
	t.Parallel()
	l := &lograte.Limiter{Interval: time.Hour}
	n, ok := l.Allow()
	require.True(t, ok)
	require.Zero(t, n)
	for range 3 {
		_, ok = l.Allow()
		require.False(t, ok)
	}
	zero := &lograte.Limiter{}
	_, ok = zero.Allow()
	require.True(t, ok)
	_, ok = zero.Allow()
	require.True(t, ok, "a zero interval never suppresses")
}
