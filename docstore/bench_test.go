package docstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/watcher"
)

// BenchmarkWatch reads a backlog of changes into a no-op emit and reports
// events/s, the rate at which a watcher can catch up.
func BenchmarkWatch(b *testing.B) {
	const backlog = 20_000
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("doc=%dB", size), func(b *testing.B) {
			st := openStore(b, docstore.Config{})
			fill(b, rawDB(b, st.Path()), "acme", backlog, size)
			benchWatch(b, source(b, st, "acme"), backlog)
		})
	}
}

// benchWatch reads backlog changes from src b.N times and reports
// events/s.
func benchWatch(b *testing.B, src *docstore.Source, backlog int) {
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		n := 0
		ctx, cancel := context.WithCancel(context.Background())
		err := src.Watch(ctx, "", func(watcher.Change) error {
			if n++; n == backlog {
				cancel()
			}
			return nil
		})
		cancel()
		require.ErrorIs(b, err, context.Canceled)
	}
	b.ReportMetric(float64(b.N*backlog)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkPut measures single-document writes through the Go API, each
// its own transaction with its change-log trigger.
func BenchmarkPut(b *testing.B) {
	st := openStore(b, docstore.Config{})
	ctx := context.Background()
	doc := json.RawMessage(`{"status":"paid","total":12.5,"items":[1,2,3]}`)
	b.ResetTimer()
	for i := range b.N {
		if err := st.Put(ctx, "acme", "orders", fmt.Sprint(i%1000), doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// BenchmarkWatchLatency measures the time from a write returning to its
// change being emitted by a caught-up Watch: through the same Store (which
// wakes the watch) and through another connection (which it polls for).
func BenchmarkWatchLatency(b *testing.B) {
	for _, external := range []bool{false, true} {
		name := "put"
		if external {
			name = "other-writer"
		}
		b.Run(name, func(b *testing.B) {
			st := openStore(b, docstore.Config{})
			db := rawDB(b, st.Path())
			src := source(b, st, "acme")
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan time.Time, 1)
			done := make(chan error, 1)
			go func() {
				done <- src.Watch(ctx, "", func(watcher.Change) error { got <- time.Now(); return nil })
			}()
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				var err error
				if external {
					_, err = db.Exec(`INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', ?, '{}')`, fmt.Sprint(i))
				} else {
					err = st.Put(ctx, "acme", "orders", fmt.Sprint(i), json.RawMessage(`{}`))
				}
				if err != nil {
					b.Fatal(err)
				}
				written := time.Now()
				total += (<-got).Sub(written)
			}
			b.StopTimer()
			cancel()
			require.ErrorIs(b, <-done, context.Canceled)
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/event")
		})
	}
}
