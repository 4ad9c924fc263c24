package suggest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/suggest"
)

func TestDistance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"tenant", "tenant", 0},
		{"tennant", "tenant", 1},     // insertion
		{"tenat", "tenant", 1},       // deletion
		{"tenamt", "tenant", 1},      // substitution
		{"conditon", "condition", 1}, // the trigger loader's classic
		{"kitten", "sitting", 3},
		{"tenänt", "tenant", 1}, // runes, not bytes
	}
	for _, c := range cases {
		require.Equal(t, c.want, suggest.Distance(c.a, c.b), "%q -> %q", c.a, c.b)
		require.Equal(t, c.want, suggest.Distance(c.b, c.a), "%q -> %q", c.b, c.a)
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	known := []string{"tenantColumn", "tenant", "pollInterval", "slotName"}
	require.Equal(t, "tenant", suggest.Closest("tennant", known))
	require.Equal(t, "tenant", suggest.Closest("TENANT", known), "case is ignored")
	require.Equal(t, "tenantColumn", suggest.Closest("tenant_column", known))
	require.Equal(t, "", suggest.Closest("database", known), "nothing close enough")
	require.Equal(t, "", suggest.Closest("anything", nil))

	// Exactly MaxDistance edits away still suggests; one more does not.
	require.Equal(t, "slotName", suggest.Closest("slotNa", known))
	require.Equal(t, "", suggest.Closest("slotN", known))
}

func TestClosestTieIsOrderIndependent(t *testing.T) {
	t.Parallel()
	// "bat" is one edit from both; the one that sorts first wins whatever
	// order the candidates come in.
	require.Equal(t, "bad", suggest.Closest("bat", []string{"cat", "bad"}))
	require.Equal(t, "bad", suggest.Closest("bat", []string{"bad", "cat"}))
}
