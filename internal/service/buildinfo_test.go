package service_test

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/service"
)

// TestOpsServerServesBuildInfo scrapes two ops servers that share one
// registry, as services in one process may: each serves exactly one
// triggerflow_build_info series, 1, labelled with the running build.
func TestOpsServerServesBuildInfo(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	log := service.NewLogger(config.Log{}.WithDefaults(), io.Discard)
	want := service.Build()
	for range 2 {
		s, err := service.NewOpsServer("127.0.0.1:0", reg, log)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })

		code, body := get(t, "http://"+s.Addr()+"/metrics")
		require.Equal(t, http.StatusOK, code, body)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(bytes.NewReader([]byte(body)))
		require.NoError(t, err)
		mf, ok := mfs["triggerflow_build_info"]
		require.True(t, ok, "no triggerflow_build_info in:\n%s", body)
		require.Len(t, mf.GetMetric(), 1)
		m := mf.GetMetric()[0]
		require.InDelta(t, 1, m.GetGauge().GetValue(), 0)
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		require.Equal(t, map[string]string{"version": want.Version, "revision": want.Revision, "goversion": runtime.Version()}, labels)
	}
}

func TestBuildString(t *testing.T) {
	t.Parallel()
	b := service.BuildInfo{Version: "v1.2.0", Revision: "abc123", GoVersion: "go1.26.0"}
	require.Equal(t, "watcher v1.2.0 (revision abc123, go1.26.0)", b.String("watcher"))
	got := service.Build()
	require.NotEmpty(t, got.Version)
	require.NotEmpty(t, got.Revision)
	require.Equal(t, runtime.Version(), got.GoVersion)
}
