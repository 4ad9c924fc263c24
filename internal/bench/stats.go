// Package bench measures Triggerflow end to end against its raw ceilings
// (a plain JetStream consumer, raw Temporal with cold and hot keys) on the
// same servers, and renders one table. It is used by cmd/bench (`make
// bench`) only; no production package may import it.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one measured scenario.
type Row struct {
	Name string `json:"name"`
	// Events is the closed-loop batch size; DeliveriesPerSec is Events over
	// the time from the first write to the last delivery.
	Events           int     `json:"events"`
	DeliveriesPerSec float64 `json:"deliveriesPerSec"`
	// OpenLoopRate is the fixed rate (events/s) of the latency run, half
	// the measured capacity; the percentiles are commit → receiver, in ms.
	OpenLoopRate   float64 `json:"openLoopRate"`
	OpenLoopEvents int     `json:"openLoopEvents"`
	P50ms          float64 `json:"p50ms"`
	P95ms          float64 `json:"p95ms"`
	P99ms          float64 `json:"p99ms"`
	// Sweep are the open loops at the lower rates of Sizes.Sweep.
	Sweep []OpenLoop `json:"sweep,omitempty"`
	// HistoryPerDelivery is the sum of the history lengths of the
	// workflows the closed-loop run created, over its deliveries; -1 when
	// the row involves no Temporal.
	HistoryPerDelivery float64 `json:"historyPerDelivery"`
	// ActionsPerDelivery is the same for Temporal Cloud's billable
	// actions (see cloudActions); -1 without Temporal.
	ActionsPerDelivery float64 `json:"actionsPerDelivery"`
	// HistoryBytesPerDelivery is the same for the events' serialized size
	// in bytes (see historyBytes); -1 without Temporal. Absent from
	// results written before it was measured.
	HistoryBytesPerDelivery float64 `json:"historyBytesPerDelivery"`
	// RSSMB is the peak resident set (VmHWM) per process, in MiB.
	RSSMB map[string]float64 `json:"rssMB"`
	// CPUPerDeliveryMs is each process's CPU time over the closed loop
	// divided by its deliveries, in ms: where the time goes.
	CPUPerDeliveryMs map[string]float64 `json:"cpuPerDeliveryMs,omitempty"`
	// Load is /proc/loadavg's 1-minute value at the row's end.
	Load  float64 `json:"load"`
	Notes string  `json:"notes,omitempty"`
	Err   string  `json:"error,omitempty"`
}

// Report is one `make bench` run.
type Report struct {
	Time    time.Time          `json:"time"`
	Machine string             `json:"machine"`
	Rows    []Row              `json:"rows"`
	Ratios  map[string]float64 `json:"ratios"`
	// Tenants are the tenants row's results, one per source.
	Tenants []TenantsResult `json:"tenants,omitempty"`
	// Soak is set by a -soak run, which measures no rows.
	Soak  *SoakResult       `json:"soak,omitempty"`
	Flags map[string]string `json:"flags"`
}

// Percentile returns the p-th percentile (0..100) of xs by the
// nearest-rank method; math.MinInt64 for no samples.
func Percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return time.Duration(math.MinInt64)
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func ms(d time.Duration) float64 {
	if d == time.Duration(math.MinInt64) {
		return -1
	}
	return math.Round(float64(d)/float64(time.Millisecond)*10) / 10
}

// ComputeRatios fills the Triggerflow / ceiling throughput ratios by row
// name: every "triggerflow cold*" row over the cold ceiling and every
// "triggerflow hot*" row over the hot ceiling.
func (r *Report) ComputeRatios(coldCeiling, hotCeiling string) {
	byName := map[string]Row{}
	for _, row := range r.Rows {
		byName[row.Name] = row
	}
	r.Ratios = map[string]float64{}
	for _, row := range r.Rows {
		var ceil string
		switch {
		case strings.HasPrefix(row.Name, "triggerflow cold"):
			ceil = coldCeiling
		case strings.HasPrefix(row.Name, "triggerflow hot"):
			ceil = hotCeiling
		default:
			continue
		}
		if c, ok := byName[ceil]; ok && c.DeliveriesPerSec > 0 {
			r.Ratios[row.Name+" / "+ceil] = math.Round(row.DeliveriesPerSec/c.DeliveriesPerSec*100) / 100
		}
	}
}

// AddRatio adds the throughput ratio of row num to row den when both ran
// and den delivered (ComputeRatios first: it resets the ratios).
func (r *Report) AddRatio(num, den string) {
	var n, d *Row
	for i := range r.Rows {
		switch r.Rows[i].Name {
		case num:
			n = &r.Rows[i]
		case den:
			d = &r.Rows[i]
		}
	}
	if n == nil || d == nil || d.DeliveriesPerSec <= 0 {
		return
	}
	if r.Ratios == nil {
		r.Ratios = map[string]float64{}
	}
	r.Ratios[num+" / "+den] = math.Round(n.DeliveriesPerSec/d.DeliveriesPerSec*100) / 100
}

// WriteTable prints the report as one aligned table plus the ratios, then
// the tenants rows.
func (r *Report) WriteTable(w io.Writer) error {
	if err := r.writeRows(w); err != nil {
		return err
	}
	return writeTenantsTable(w, r.Tenants)
}

func (r *Report) writeRows(w io.Writer) error {
	if len(r.Rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "row\tevents\tdeliv/s\topen-loop rate\tp50 ms\tp95 ms\tp99 ms\thist ev/deliv\thist KiB/deliv\tactions/deliv\tpeak RSS MiB\tload\t")
	for _, row := range r.Rows {
		hist, histKiB, actions := "-", "-", "-"
		if row.HistoryPerDelivery >= 0 {
			hist = fmt.Sprintf("%.2f", row.HistoryPerDelivery)
		}
		// 0 is a result written before history bytes were measured.
		if row.HistoryBytesPerDelivery > 0 {
			histKiB = fmt.Sprintf("%.1f", row.HistoryBytesPerDelivery/1024)
		}
		if row.ActionsPerDelivery >= 0 {
			actions = fmt.Sprintf("%.2f", row.ActionsPerDelivery)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f/s ×%d\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%.2f\t\n",
			row.Name, row.Events, row.DeliveriesPerSec, row.OpenLoopRate, row.OpenLoopEvents,
			row.P50ms, row.P95ms, row.P99ms, hist, histKiB, actions, formatRSS(row.RSSMB), row.Load)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	keys := make([]string, 0, len(r.Ratios))
	for k := range r.Ratios {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "ratio %s = %.2f\n", k, r.Ratios[k])
	}
	for _, row := range r.Rows {
		for _, pt := range row.Sweep {
			fmt.Fprintf(w, "latency %s at %.3g of capacity (%.1f/s ×%d): p50 %.1f, p95 %.1f, p99 %.1f ms%s\n",
				row.Name, pt.Fraction, pt.Rate, pt.Events, pt.P50ms, pt.P95ms, pt.P99ms, errSuffix(pt.Err))
		}
	}
	for _, row := range r.Rows {
		if len(row.CPUPerDeliveryMs) > 0 {
			fmt.Fprintf(w, "cpu ms/delivery %s: %s\n", row.Name, formatRSS(row.CPUPerDeliveryMs))
		}
	}
	for _, row := range r.Rows {
		if row.Notes != "" || row.Err != "" {
			fmt.Fprintf(w, "note %s: %s%s\n", row.Name, row.Notes, errSuffix(row.Err))
		}
	}
	return nil
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " ERROR: " + e
}

func formatRSS(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the report to dir/<timestamp>.json and returns the path.
func (r *Report) WriteJSON(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := fmt.Sprintf("%s/%s.json", strings.TrimSuffix(dir, "/"), r.Time.UTC().Format("20060102T150405Z"))
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}
