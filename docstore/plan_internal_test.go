package docstore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestQueryPlans keeps the hot queries on their indexes: the watcher of a
// thousand tenants reads every change through selectAllChanges and
// confirms every tenant each second, so a full scan of the change log in
// either would grow with the log, not with the work.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	st, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "documents.db")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	for _, q := range []struct {
		name, query, want string
		args              []any
	}{
		{"all tenants", selectAllChanges, "SEARCH changes USING INTEGER PRIMARY KEY (rowid>?)", []any{1, 2}},
		{"one tenant", selectTenantChanges, "SEARCH changes USING INDEX changes_tenant_seq (tenant=? AND seq>?)", []any{"a", 1, 2}},
		{"due", dueRows, "SEARCH changes USING INDEX changes_tenant_seq (tenant=? AND seq<?)", []any{"a", 1, 2, 3}},
		{"due without retention", dueRowsNoRetention, "SEARCH changes USING COVERING INDEX changes_tenant_seq (tenant=? AND seq<?)", []any{"a", 1, 2}},
		{"delete", deleteRows, "SEARCH changes USING INDEX changes_tenant_seq (tenant=? AND seq<?)", []any{"a", 1}},
	} {
		rows, err := st.db.Query("EXPLAIN QUERY PLAN "+q.query, q.args...)
		require.NoError(t, err, q.name)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		require.Contains(t, plan, q.want, "%s: plan %s", q.name, strings.Join(plan, "; "))
		for _, step := range plan {
			require.NotEqual(t, "SCAN changes", step, "%s scans the whole change log", q.name)
		}
	}
}
