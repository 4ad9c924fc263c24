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
	return Run(t, logger, wf, inf, wkf, configure).Addrs
}

// Stack is the services Run started.
type Stack struct {
	// Addrs are the ops addresses by service name.
	Addrs map[string]string

	t      testing.TB
	cancel map[string]context.CancelFunc
	done   map[string]chan struct{}
}

// Stop stops one service, as SIGTERM would, and returns once it has
// returned.
func (s *Stack) Stop(name string) {
	s.t.Helper()
	s.cancel[name]()
	select {
	case <-s.done[name]:
	case <-time.After(readyTimeout):
		s.t.Fatalf("daemontest: %s did not stop", name)
	}
}

// Run is Start, returning the Stack so a test can stop one service.
func Run(t testing.TB, logger *slog.Logger, wf *config.WatcherFile, inf *config.IngestFile, wkf *config.WorkerFile,
	configure func(name string, o *daemon.Options)) *Stack {
	t.Helper()
	services, err := daemon.Services(wf, inf, wkf)
	if err != nil {
		t.Fatalf("daemontest: invalid configuration: %v", err)
	}

	s := &Stack{Addrs: map[string]string{}, t: t, cancel: map[string]context.CancelFunc{}, done: map[string]chan struct{}{}}
	var mu sync.Mutex
	ready := make(chan string, len(services))
	errs := make(chan error, len(services))
	for _, svc := range services {
		o := daemon.Options{Logger: logger.With("svc", svc.Name), OnReady: func(addr string) {
			mu.Lock()
			s.Addrs[svc.Name] = addr
			mu.Unlock()
			ready <- svc.Name
		}}
		if configure != nil {
			configure(svc.Name, &o)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		s.cancel[svc.Name], s.done[svc.Name] = cancel, done
		go func() {
			defer close(done)
			if err := svc.Run(ctx, o); err != nil {
				errs <- fmt.Errorf("%s: %w", svc.Name, err)
			}
		}()
	}
	t.Cleanup(func() {
		for _, cancel := range s.cancel {
			cancel()
		}
		for _, done := range s.done {
			<-done
		}
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
	return s
}
