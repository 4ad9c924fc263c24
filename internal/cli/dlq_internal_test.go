package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSeqRanges(t *testing.T) {
	t.Parallel()
	require.Equal(t, "3-5, 9, 12-13", seqRanges([]uint64{3, 4, 5, 9, 12, 13}))
	require.Equal(t, "7", seqRanges([]uint64{7}))
	require.Empty(t, seqRanges(nil))

	// Scattered records: the list stops at maxRanges and counts the rest,
	// so that an audit record stays small.
	even := make([]uint64, 0, 200)
	for i := range uint64(200) {
		even = append(even, 2*i)
	}
	got := seqRanges(even)
	require.Equal(t, maxRanges+1, strings.Count(got, ",")+1)
	require.True(t, strings.HasSuffix(got, ", and 136 more"), got)
}
