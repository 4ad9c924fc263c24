package testenv

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
)

// natsReadyTimeout bounds how long an in-process server may take to accept
// connections; JetStream recovery of a small store is well under this.
const natsReadyTimeout = 10 * time.Second

// NATSServer is an in-process nats-server with JetStream backed by a file
// store, so that data survives Restart just as it would a process restart.
type NATSServer struct {
	url      string // fixed by the first start
	storeDir string

	mu   sync.Mutex
	opts server.Options // the port is pinned after the first start
	srv  *server.Server // nil while shut down
}

// NATS starts an embedded JetStream-enabled server on 127.0.0.1 at a free
// port, with its store in a per-test temp dir. It is shut down on cleanup.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	storeDir := t.TempDir()
	s := &NATSServer{storeDir: storeDir, opts: server.Options{
		// A fixed name keeps the server identity stable across restarts.
		ServerName: "testenv",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		// The test binary owns signal handling, not the embedded server.
		NoSigs: true,
	}}
	s.start(t)
	s.url = fmt.Sprintf("nats://%s:%d", s.opts.Host, s.opts.Port)
	t.Cleanup(s.Shutdown)
	return s
}

func (s *NATSServer) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	opts := s.opts // NewServer keeps the pointer; don't let it mutate ours
	srv, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("testenv: creating NATS server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(natsReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		t.Fatalf("testenv: NATS server not ready for connections within %s", natsReadyTimeout)
	}
	// Pin the port the OS picked so Restart comes back on the same URL and
	// clients can reconnect to it.
	s.opts.Port = srv.Addr().(*net.TCPAddr).Port
	s.srv = srv
}

// URL is the client URL, stable across Restart.
func (s *NATSServer) URL() string { return s.url }

// StoreDir is the JetStream store directory, stable across Restart.
func (s *NATSServer) StoreDir() string { return s.storeDir }

// Conn connects to the server and closes the connection on cleanup. The
// defaults reconnect forever at a short interval so a connection rides out
// Shutdown/Restart; opts are applied after them and may override.
func (s *NATSServer) Conn(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(s.URL(), all...)
	if err != nil {
		t.Fatalf("testenv: connecting to NATS at %s: %v", s.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream connects to the server (see Conn) and provisions the streams
// cfg names, the way a process does at start.
func (s *NATSServer) JetStream(t testing.TB, cfg streams.Config) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Conn(t))
	if err != nil {
		t.Fatalf("testenv: JetStream context: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsReadyTimeout)
	defer cancel()
	if err := streams.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("testenv: provisioning streams: %v", err)
	}
	return js
}

// Shutdown stops the server and waits until it has released its port and
// store. It is safe to call when already shut down.
func (s *NATSServer) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart shuts the server down (if running) and starts a new one on the
// same port and store dir, so JetStream streams and their messages persist.
func (s *NATSServer) Restart(t testing.TB) {
	t.Helper()
	s.Shutdown()
	s.start(t)
}
