package trigger_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
)

// FuzzLoadTriggers feeds arbitrary bytes to the loader as YAML and as JSON:
// it must return triggers or a *ValidationError, never panic or hang.
func FuzzLoadTriggers(f *testing.F) {
	for _, dir := range []string{"../examples/triggers", "testdata/invalid"} {
		entries, err := os.ReadDir(dir)
		require.NoError(f, err)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(f, err)
			f.Add(b, filepath.Ext(e.Name()) == ".json")
		}
	}
	v, err := trigger.NewValidator("", trigger.Limits{}, nil)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		name := "f.yaml"
		if asJSON {
			name = "f.json"
		}
		path := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		ts, err := trigger.LoadTriggersFromFile(path, v)
		if err != nil {
			var ve *trigger.ValidationError
			require.True(t, errors.As(err, &ve), "unexpected error type %T: %v", err, err)
			require.NotEmpty(t, ve.Problems)
			require.Nil(t, ts)
			return
		}
		for _, tr := range ts {
			require.NotEmpty(t, tr.ID)
			require.NotEmpty(t, tr.URL)
		}
	})
}
