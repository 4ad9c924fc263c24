// Package daemontest runs the watcher, ingest and worker services in
// process, for tests that exercise the whole stack.
package daemontest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/daemon"
)

// readyTimeout bounds how long the three services may take to report ready.
const readyTimeout = 60 * time.Second

// Start validates the three files, runs the watcher, ingest and worker from
// them until the test ends, and returns once all three are ready, with each
// one's ops address by service name ("watcher", "ingest", "worker").
// Every service logs to logger with an svc attribute; configure, when not
// nil, adjusts a service's options before it starts. A service that fails
// fails the test.
func Start(t testing.TB, logger *slog.Logger, wf *config.WatcherFile, inf *config.IngestFile, wkf *config.WorkerFile,
	configure func(name string, o *daemon.Options)) map[string]string {
	t.Helper()
	services, err := daemon.Services(wf, inf, wkf)
	if err != nil {
		t.Fatalf("daemontest: invalid configuration: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	addrs := map[string]string{}
	ready := make(chan string, len(services))
	errs := make(chan error, len(services))
	var wg sync.WaitGroup
	for _, svc := range services {
		o := daemon.Options{Logger: logger.With("svc", svc.Name), OnReady: func(addr string) {
			mu.Lock()
			addrs[svc.Name] = addr
			mu.Unlock()
			ready <- svc.Name
		}}
		if configure != nil {
			configure(svc.Name, &o)
		}
		wg.Go(func() {
			if err := svc.Run(ctx, o); err != nil {
				errs <- fmt.Errorf("%s: %w", svc.Name, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("service failed: %v", err)
		}
	})
	for range services {
		select {
		case <-ready:
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(readyTimeout):
			t.Fatal("services not ready")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return addrs
}
