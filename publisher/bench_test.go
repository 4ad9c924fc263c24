package publisher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/trigger"
)

// BenchmarkPublish measures asynchronous throughput against an embedded
// server with a file-backed stream: b.N tasks through the default window of
// 1,024, then a Flush. keys is how many documents the tasks are spread over;
// tasks of one document are published one ack at a time, so a single hot
// key shows the per-subject round trip rather than the pipeline.
func BenchmarkPublish(b *testing.B) {
	for _, keys := range []int{10_000, 100, 1} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			h := newHarness(b, func(c *publisher.Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
			tasks := make([]*trigger.DeliveryTask, b.N)
			for i := range tasks {
				tasks[i] = task(fmt.Sprintf("doc-%d", i%keys), fmt.Sprintf("%010d", i))
			}
			ctx := context.Background()
			failed := make(chan error, 1)
			done := func(err error) {
				if err != nil {
					select {
					case failed <- err:
					default:
					}
				}
			}
			b.ResetTimer()
			for _, tk := range tasks {
				if err := h.pub.Publish(ctx, tk, done); err != nil {
					b.Fatal(err)
				}
			}
			if err := h.pub.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			select {
			case err := <-failed:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
