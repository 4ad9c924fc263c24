package daemon

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// readyUntilDone is a service that is ready at once and runs until its
// context ends.
func readyUntilDone(ctx context.Context, o Options) error {
	o.OnReady("")
	<-ctx.Done()
	return nil
}

func TestServiceGroup(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)

	t.Run("one failing stops the others", func(t *testing.T) {
		t.Parallel()
		// The dev stack must return when a service fails, not wait for
		// Ctrl-C with the other two still running.
		boom := errors.New("boom")
		g := startServices(context.Background(), log, []Service{
			{"watcher", readyUntilDone},
			{"ingest", func(context.Context, Options) error { return boom }},
			{"worker", readyUntilDone},
		})
		err := g.ready(context.Background())
		require.ErrorIs(t, err, boom)
		require.EqualError(t, err, "ingest: boom")
		g.stop()
	})
	t.Run("ready, then stopped by ctx", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		g := startServices(ctx, log, []Service{{"watcher", readyUntilDone}, {"worker", readyUntilDone}})
		require.NoError(t, g.ready(ctx))
		cancel()
		require.NoError(t, g.wait(ctx))
		g.stop()
	})
	t.Run("a failure after start-up ends the wait", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		g := startServices(context.Background(), log, []Service{{"worker", func(ctx context.Context, o Options) error {
			o.OnReady("")
			return boom
		}}})
		require.NoError(t, g.ready(context.Background()))
		require.ErrorIs(t, g.wait(context.Background()), boom)
		g.stop()
	})
}
