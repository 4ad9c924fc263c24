package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	var xs []time.Duration
	for i := 100; i >= 1; i-- {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, Percentile(xs, 50))
	require.Equal(t, 95*time.Millisecond, Percentile(xs, 95))
	require.Equal(t, 99*time.Millisecond, Percentile(xs, 99))
	require.Equal(t, 100*time.Millisecond, Percentile(xs, 100))
	require.Equal(t, 1*time.Millisecond, Percentile(xs, 0))
	require.Equal(t, 100*time.Millisecond, xs[0], "the input is not sorted in place")
	require.Equal(t, 7*time.Millisecond, Percentile([]time.Duration{7 * time.Millisecond}, 99))
	require.Equal(t, -1.0, ms(Percentile(nil, 50)), "no samples is -1, which JSON can encode")
}

func TestReportTableAndJSON(t *testing.T) {
	t.Parallel()
	r := &Report{Time: time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC), Rows: []Row{
		{Name: "b) cold", DeliveriesPerSec: 20, HistoryPerDelivery: 12},
		{Name: "c) hot", DeliveriesPerSec: 40, HistoryPerDelivery: 3},
		{Name: "triggerflow cold (SQLite)", DeliveriesPerSec: 18, HistoryPerDelivery: 14, HistoryBytesPerDelivery: 3 << 10, RSSMB: map[string]float64{"worker": 40, "ingest": 30}},
		{Name: "triggerflow hot, 50 keys", DeliveriesPerSec: 30, HistoryPerDelivery: -1, P50ms: -1, Err: "boom"},
	}}
	r.ComputeRatios("b) cold", "c) hot")
	require.Equal(t, map[string]float64{
		"triggerflow cold (SQLite) / b) cold": 0.9,
		"triggerflow hot, 50 keys / c) hot":   0.75,
	}, r.Ratios)

	var buf bytes.Buffer
	require.NoError(t, r.WriteTable(&buf))
	require.Contains(t, buf.String(), "ingest 30, worker 40")
	require.Contains(t, buf.String(), "ratio triggerflow cold (SQLite) / b) cold = 0.90")
	require.Contains(t, buf.String(), "ERROR: boom")
	require.Contains(t, buf.String(), "hist KiB/deliv")
	require.Contains(t, buf.String(), "|             3.0|", "history bytes in KiB")

	path, err := r.WriteJSON(t.TempDir())
	require.NoError(t, err)
	require.Contains(t, path, "20261127T010203Z.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r.Rows, back.Rows)
}

func TestProcessCPU(t *testing.T) {
	t.Parallel()
	self := strconv.Itoa(os.Getpid())
	own := CPUSeconds(self)
	require.GreaterOrEqual(t, own, 0.0)
	require.GreaterOrEqual(t, TreeCPUSeconds(self), own, "the tree includes the process itself")
	require.Equal(t, -1.0, CPUSeconds("no-such-pid"))
	require.Equal(t, -1.0, TreeCPUSeconds("no-such-pid"))
}

func TestSanitizeMakesCollectionNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "triggerflowhot50keyspostgresql", sanitize("triggerflow hot, 50 keys (PostgreSQL)"))
}

func TestAddRatio(t *testing.T) {
	t.Parallel()
	r := &Report{Rows: []Row{{Name: "claim", DeliveriesPerSec: 30}, {Name: "inline", DeliveriesPerSec: 20}, {Name: "failed"}}}
	r.AddRatio("claim", "inline")
	r.AddRatio("claim", "missing")
	r.AddRatio("claim", "failed")
	require.Equal(t, map[string]float64{"claim / inline": 1.5}, r.Ratios)
}
