package ingest_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/streams"
)

// Example wires an Ingester the way the ingest binary does: streams first,
// then the Ingester, run until SIGINT, with /readyz answered by Ready.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	file := config.IngestFile{}.WithDefaults()

	nc, err := nats.Connect(file.NATS.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if err := streams.Ensure(ctx, js, file.NATS.Streams()); err != nil {
		log.Fatal(err)
	}
	tc, err := client.Dial(client.Options{HostPort: file.Temporal.HostPort, Namespace: file.Temporal.Namespace})
	if err != nil {
		log.Fatal(err)
	}
	defer tc.Close()

	cfg := file.Ingester()
	cfg.DeadLetters = deadletter.NewPublisher(js, file.NATS.DeadLetterSubject)
	cfg.Logger, cfg.Registerer = slog.Default(), prometheus.DefaultRegisterer
	in, err := ingest.New(cfg, js, tc)
	if err != nil {
		log.Fatal(err)
	}
	// The readiness handler calls in.Ready(r.Context()).
	if err := in.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
