package audit_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWriteAndList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := config.NATS{}.WithDefaults()
	js := testenv.NATS(t).JetStream(t, cfg.Streams())

	w := audit.NewWriter(js, cfg.AuditStream)
	require.NoError(t, w.Write(ctx, audit.Record{Action: audit.ActionStartFromNow, Tenant: "acme", Actor: "ops", Reason: "new tenant", After: "00000000000000000042"}))
	require.NoError(t, w.Write(ctx, audit.Record{Action: audit.ActionRedrive, Tenant: "other", Actor: "ops", Reason: "fixed endpoint"}))
	require.ErrorIs(t, w.Write(ctx, audit.Record{Tenant: "acme"}), audit.ErrInvalid)

	all, err := audit.List(ctx, js, cfg.AuditStream, "", 0)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, audit.ActionStartFromNow, all[0].Action)
	require.Equal(t, "00000000000000000042", all[0].After)
	require.False(t, all[0].Time.IsZero())

	acme, err := audit.List(ctx, js, cfg.AuditStream, "acme", 0)
	require.NoError(t, err)
	require.Len(t, acme, 1)

	one, err := audit.List(ctx, js, cfg.AuditStream, "", 1)
	require.NoError(t, err)
	require.Len(t, one, 1)

	none, err := audit.List(ctx, js, cfg.AuditStream, "nobody", 0)
	require.NoError(t, err)
	require.Empty(t, none)
}
