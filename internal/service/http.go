package service

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// OpsServer serves /metrics, /healthz and /readyz, and /debug/pprof/ once
// EnablePprof is called.
//
// /healthz answers 200 while the process runs: a failing liveness probe
// restarts the process, which never helps a dependency outage. /readyz runs
// every registered check (each bounded by a timeout) and answers 503 with
// the failing ones, so a load balancer or operator sees why.
type OpsServer struct {
	log      *slog.Logger
	srv      *http.Server
	ln       net.Listener
	mu       sync.Mutex
	checks   map[string]Check
	timeout  time.Duration
	serveErr chan error
	mux      *http.ServeMux
}

// Handle serves h at pattern beside the ops endpoints (the worker's JWKS).
func (s *OpsServer) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// EnablePprof serves Go's profiler under /debug/pprof/ (config http.pprof):
// the index, cmdline, profile (CPU, ?seconds=N), symbol, trace and every
// runtime profile by name (heap, allocs, goroutine, block, mutex,
// threadcreate). The handlers are mounted on this server's mux only;
// net/http/pprof's side effect of registering on http.DefaultServeMux is
// harmless because no Triggerflow server serves that mux. Call it once.
func (s *OpsServer) EnablePprof() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.log.Warn("pprof enabled on the ops endpoint; it is unauthenticated and heap profiles hold secrets", "addr", s.Addr())
}

// NewOpsServer listens on addr (":0" picks a free port) and serves reg,
// with triggerflow_build_info beside it. The gauge lives in a registry of
// the server's own, so that several servers can share reg (the dev stack's
// services could) without registering it twice; reg must not hold it.
func NewOpsServer(addr string, reg *prometheus.Registry, log *slog.Logger) (*OpsServer, error) {
	own := prometheus.NewRegistry()
	if _, err := promreg.Register(own, BuildInfoCollector()); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &OpsServer{log: log, ln: ln, checks: map[string]Check{}, timeout: 2 * time.Second, serveErr: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, own}, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.mux = mux
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { s.serveErr <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *OpsServer) Addr() string { return s.ln.Addr().String() }

// AddCheck registers a readiness check under name.
func (s *OpsServer) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// ErrStarting is the readiness failure of a service that has registered
// no check yet: the ops server listens from the first moment, so that
// /healthz and /metrics answer during start-up, but nothing is ready
// before the service says what ready means.
var ErrStarting = errors.New("starting: no readiness check registered yet")

// Ready runs every check and returns the failures by name.
func (s *OpsServer) Ready(ctx context.Context) map[string]error {
	s.mu.Lock()
	checks := make(map[string]Check, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()
	if len(checks) == 0 {
		return map[string]error{"startup": ErrStarting}
	}
	failed := map[string]error{}
	for name, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		if err := c(cctx); err != nil {
			failed[name] = err
		}
		cancel()
	}
	return failed
}

func (s *OpsServer) readyz(w http.ResponseWriter, r *http.Request) {
	failed := s.Ready(r.Context())
	body := struct {
		Status string            `json:"status"`
		Failed map[string]string `json:"failed,omitempty"`
	}{Status: "ready"}
	if len(failed) > 0 {
		body.Status = "not ready"
		body.Failed = map[string]string{}
		names := make([]string, 0, len(failed))
		for n := range failed {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			body.Failed[n] = failed[n].Error()
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// Close stops the server, waiting briefly for open requests.
func (s *OpsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
