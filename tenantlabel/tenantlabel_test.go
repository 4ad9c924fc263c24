package tenantlabel_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/tenantlabel"
)

func TestGuardFoldsTenantsPastTheLimit(t *testing.T) {
	t.Parallel()
	g := tenantlabel.New(2)
	require.Equal(t, "a", g.Label("a"))
	require.Equal(t, "b", g.Label("b"))
	require.Equal(t, tenantlabel.Other, g.Label("c"))
	require.Equal(t, "a", g.Label("a"), "a tenant named once keeps its name")

	var nilGuard *tenantlabel.Guard
	require.Equal(t, "c", nilGuard.Label("c"))
	require.Equal(t, "z", tenantlabel.New(-1).Label("z"))
}

func ExampleGuard() {
	g := tenantlabel.New(1)
	fmt.Println(g.Label("acme"), g.Label("globex"), g.Label("acme"))
	// Output: acme _other acme
}
