package testenv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTailBufferKeepsTheTail(t *testing.T) {
	t.Parallel()
	b := newTailBuffer(8)
	for _, s := range []string{"first ", "second ", "third"} {
		n, err := b.Write([]byte(s))
		require.NoError(t, err)
		require.Equal(t, len(s), n)
	}
	require.Equal(t, "nd third", b.String())
}
