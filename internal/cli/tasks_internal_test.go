package cli

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestTasksKeygenWritesAPairThatVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	signing, verify := filepath.Join(dir, "task-signing.key"), filepath.Join(dir, "task-verify.keys")
	run := func(args ...string) error {
		cmd := newTasksCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs(args)
		return cmd.Execute()
	}
	require.NoError(t, run("keygen", "--id", "w1", "--signing", signing, "--verify", verify))
	require.ErrorContains(t, run("keygen", "--id", "w2", "--signing", signing, "--verify", verify), "already exists")

	s, err := tasksig.LoadSigner(signing)
	require.NoError(t, err)
	v, err := tasksig.LoadVerifier(verify)
	require.NoError(t, err)
	task := &trigger.DeliveryTask{EventID: "evt_1", Tenant: "acme", URL: "https://x.example"}
	s.Sign(task)
	require.NoError(t, v.Verify(task))
}
