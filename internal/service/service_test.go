package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/service"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestOpsServer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "triggerflow_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	s, err := service.NewOpsServer("127.0.0.1:0", reg, service.NewLogger(config.Log{}.WithDefaults(), io.Discard))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	base := "http://" + s.Addr()

	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, body)

	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "triggerflow_test_total 1")

	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready before the service registers a check")
	require.Contains(t, body, "starting")

	var down atomic.Bool
	down.Store(true)
	s.AddCheck("nats", func(context.Context) error {
		if down.Load() {
			return errors.New("not connected")
		}
		return nil
	})
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	var r struct {
		Status string
		Failed map[string]string
	}
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.Equal(t, "not connected", r.Failed["nats"])

	down.Store(false)
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
}

func TestOpsServerPprofIsOptIn(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "triggerflow_test_total", Help: "x"})
	reg.MustRegister(c)
	s, err := service.NewOpsServer("127.0.0.1:0", reg, service.NewLogger(config.Log{}.WithDefaults(), io.Discard))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	base := "http://" + s.Addr()

	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		code, _ := get(t, base+path)
		require.Equal(t, http.StatusNotFound, code, "%s before EnablePprof", path)
	}

	s.EnablePprof()
	code, body := get(t, base+"/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, body = get(t, base+"/debug/pprof/goroutine?debug=1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine profile:")
	for _, path := range []string{"/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		code, body := get(t, base+path)
		require.Equal(t, http.StatusOK, code, path)
		require.NotEmpty(t, body, path)
	}

	// The ops endpoints are still there, and /metrics still serves the
	// registry, live.
	c.Add(3)
	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "triggerflow_test_total 3")
	code, body = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, body)
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "readiness is unchanged: no check registered")
}

func TestLoggerFormatsAndTemporalLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := service.NewLogger(config.Log{Format: config.LogJSON, Level: config.LevelDebug}, &buf)
	tl := service.TemporalLogger(l, config.LevelWarn)
	tl.Debug("poll")
	tl.Info("started worker")
	require.Empty(t, buf.String(), "the SDK's chatter below warn is dropped")
	tl.Warn("retrying", "attempt", 2)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "retrying", rec["msg"])
	require.Equal(t, "temporal-sdk", rec["component"])

	buf.Reset()
	service.NewLogger(config.Log{Format: config.LogText, Level: config.LevelInfo}, &buf).Info("hello", "k", "v")
	require.Contains(t, buf.String(), "msg=hello k=v")
}
