package condition_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/condition"
)

func newCompiler(t *testing.T) *condition.Compiler {
	t.Helper()
	c, err := condition.NewCompiler(0)
	require.NoError(t, err)
	return c
}

func TestCompileRejects(t *testing.T) {
	t.Parallel()
	c := newCompiler(t)
	for name, expr := range map[string]string{
		"syntax":        `event.type ==`,
		"non-bool":      `event.docKey + "x"`,
		"unknown field": `event.doc.status == "x"`,
		"unknown var":   `doc.status == "x"`,
		"int result":    `1 + 2`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Compile(expr)
			require.Error(t, err)
		})
	}
}

func TestEval(t *testing.T) {
	t.Parallel()
	c := newCompiler(t)
	ev := &condition.Event{
		Type: "update", Tenant: "acme", Collection: "orders", DocKey: "o1",
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Document:  map[string]any{"status": "paid", "total": 120.5, "count": float64(3), "tags": []any{"a", "vip"}},
		Before:    map[string]any{"status": "open"},
	}
	for expr, want := range map[string]bool{
		``:                       true,
		`event.type == "update"`: true,
		`event.document.status == "paid" && event.before.status != "paid"`: true,
		`event.document.total > 100`:                                       true,
		`event.document.count == 3`:                                        true,
		`"vip" in event.document.tags`:                                     true,
		`event.docKey.startsWith("o")`:                                     true,
		`event.timestamp > timestamp("2026-01-01T00:00:00Z")`:              true,
		`event.document.status == "open"`:                                  false,
		`has(event.document.missing)`:                                      false,
	} {
		p, err := c.Compile(expr)
		require.NoError(t, err, expr)
		got, err := p.Eval(context.Background(), ev)
		require.NoError(t, err, expr)
		require.Equal(t, want, got, expr)
	}
}

func TestEvalRuntimeErrors(t *testing.T) {
	t.Parallel()
	c := newCompiler(t)
	ev := &condition.Event{Document: map[string]any{"status": "x"}}

	p, err := c.Compile(`event.document.missing == 1`)
	require.NoError(t, err)
	_, err = p.Eval(context.Background(), ev)
	require.Error(t, err, "a missing key is an error the caller counts as no match")

	p, err = c.Compile(`event.document.status`)
	require.NoError(t, err, "dyn output is checked at run time")
	_, err = p.Eval(context.Background(), ev)
	require.ErrorIs(t, err, condition.ErrNotBool)
}

func TestCostLimitStopsRunawayCondition(t *testing.T) {
	t.Parallel()
	c := newCompiler(t)
	items := make([]any, 5000)
	for i := range items {
		items[i] = float64(i)
	}
	ev := &condition.Event{Document: map[string]any{"items": items}}
	p, err := c.Compile(`event.document.items.all(a, event.document.items.all(b, a + b >= 0))`)
	require.NoError(t, err)
	_, err = p.Eval(context.Background(), ev)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "cost limit"), err.Error())
}
