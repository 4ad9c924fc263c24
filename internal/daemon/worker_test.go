package daemon_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/daemon"
)

func TestWorkerOptionsCarryThePoolSizes(t *testing.T) {
	t.Parallel()
	o := daemon.WorkerOptions(config.Worker{MaxConcurrentActivities: 8, MaxConcurrentWorkflowTasks: 4})
	require.Equal(t, 8, o.MaxConcurrentActivityExecutionSize)
	require.Equal(t, 4, o.MaxConcurrentWorkflowTaskExecutionSize)
	require.Equal(t, 1000, o.MaxConcurrentLocalActivityExecutionSize, "unset: the SDK's default")
}
