package bench

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOrderLinesHaveTheExactSize(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 3, 12, 13, 40, 150, 151, 4096, 102400} {
		b := orderLines(n)
		require.Len(t, b, n, "n=%d", n)
		var v []map[string]any
		require.NoError(t, json.Unmarshal(b, &v), "n=%d: %s", n, b)
	}
	require.Equal(t, orderLines(4096), orderLines(4096), "the same bytes every time")
}

func TestLargeDocCarriesTheMark(t *testing.T) {
	t.Parallel()
	for _, size := range []int{minLargeDocBytes, 100 << 10, maxLargeDocBytes} {
		doc := largeDoc(size)
		name := largeRowName(false, size)
		m := Mark{ID: name + "/c/299", T: 1796300000123456789}
		b, err := doc(m)
		require.NoError(t, err)
		require.InDelta(t, size, len(b), 64, "a typical closed-loop document is about size bytes")
		// The receiver reads the mark from the document's top level.
		var back Mark
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, m, back)
		var obj map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(b, &obj), "a JSON object, as the document store wants")
		require.Contains(t, obj, "items")

		seed, err := doc(Mark{ID: "seed"})
		require.NoError(t, err)
		require.NotEqual(t, seed, b, "an update changes the document")
	}
	b, err := largeDoc(minLargeDocBytes)(Mark{ID: `quote " and <tag>`})
	require.NoError(t, err)
	require.True(t, json.Valid(b))
}

func TestSeedCounts(t *testing.T) {
	t.Parallel()
	require.Equal(t, map[Phase]int{Closed: 300, Open: 200}, seedCounts(Sizes{Closed: 300, Open: 200}))
	require.Equal(t, map[Phase]int{Closed: 300, Open: 200, "s1": 200, "s2": 200},
		seedCounts(Sizes{Closed: 300, Open: 200, Sweep: []float64{0.25, 0.125}}))
	require.Equal(t, map[Phase]int{Closed: 60}, seedCounts(Sizes{Closed: 60, Sweep: []float64{0.25}}),
		"no open loop writes nothing to seed")
}

func TestLargeRowNames(t *testing.T) {
	t.Parallel()
	claim, inline := largeRowName(false, 100<<10), largeRowName(true, 100<<10)
	require.Equal(t, "triggerflow 100 KiB updates, cold keys, claim check (SQLite)", claim)
	require.Equal(t, "triggerflow 100 KiB updates, cold keys, inline (SQLite)", inline)
	for _, n := range []string{claim, inline} {
		require.False(t, strings.HasPrefix(n, "triggerflow cold") || strings.HasPrefix(n, "triggerflow hot"),
			"%s: no ratio to the raw ceilings, whose events are tiny", n)
	}
	require.NotEqual(t, sanitize(claim), sanitize(inline), "the rows write collections of their own")
	require.Equal(t, "1 MiB", formatSize(1<<20))
	require.Equal(t, "100000 B", formatSize(100000))
	require.Equal(t, "", largePublisher(false), "the claim check is the default")
	require.Contains(t, largePublisher(true), "imageThreshold: inline")
	require.Equal(t, largeInlineMaxPayload, 2*maxLargeDocBytes+largeTaskOverhead)
}
