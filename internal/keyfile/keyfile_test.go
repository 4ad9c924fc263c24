package keyfile_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/keyfile"
)

func TestParse(t *testing.T) {
	t.Parallel()
	k := []byte("0123456789abcdef")
	list := "# ring\n" + keyfile.Format("a", k) + ", " + keyfile.Format("b", []byte("fedcba9876543210")) + "\n" + keyfile.Format("a", k)
	got, err := keyfile.Parse([]byte(list), 16, "want 16")
	require.NoError(t, err)
	require.Equal(t, []keyfile.Entry{{ID: "a", Key: k}, {ID: "b", Key: []byte("fedcba9876543210")}}, got, "order kept, the repeat dropped")

	_, err = keyfile.Parse([]byte(keyfile.Format("a", k[:8])), 16, "want 16")
	require.EqualError(t, err, `line 1, entry 1: key "a" is 8 bytes long; want 16`)
	_, err = keyfile.Parse([]byte(keyfile.Format("a", k)+"\n"+keyfile.Format("a", []byte("fedcba9876543210"))), 16, "want 16")
	require.ErrorContains(t, err, `line 2, entry 1: key "a" is given twice with different keys`)
}

func TestCheckID(t *testing.T) {
	t.Parallel()
	require.NoError(t, keyfile.CheckID("k20260102-3f9a.v_1"))
	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("x", keyfile.MaxIDLength+1)} {
		require.Error(t, keyfile.CheckID(bad), bad)
	}
}
