package schema_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/schema"
)

// firstColumn is the code span opening a table row.
var firstColumn = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")

// tableUnder returns the first-column names of the first table after a
// heading.
func tableUnder(t *testing.T, doc, heading string) []string {
	t.Helper()
	data, err := os.ReadFile(doc)
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(data), "\n"+heading+"\n")
	require.True(t, ok, "%s has no %q", doc, heading)
	section, _, _ = strings.Cut(section, "\n## ")
	var names []string
	for _, m := range firstColumn.FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	return names
}

func properties(object map[string]any, prefix string) []string {
	var out []string
	for name := range object["properties"].(map[string]any) {
		out = append(out, prefix+name)
	}
	return out
}

// TestDocsListEverySchemaField keeps the field references true: the body
// table of docs/receivers.md and the field table of docs/triggers.md name
// exactly the schemas' properties.
func TestDocsListEverySchemaField(t *testing.T) {
	t.Parallel()
	var delivery, triggers map[string]any
	require.NoError(t, json.Unmarshal(schema.Delivery(), &delivery))
	require.NoError(t, json.Unmarshal(schema.Triggers(), &triggers))

	want := append(properties(delivery, ""), properties(definition(t, delivery, "data"), "data.")...)
	require.ElementsMatch(t, want, tableUnder(t, "../docs/receivers.md", "## The body"))
	require.ElementsMatch(t, properties(definition(t, triggers, "trigger"), ""), tableUnder(t, "../docs/triggers.md", "## Fields"))
}
