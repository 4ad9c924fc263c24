package cli_test

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/cli"
	"github.com/triggerflow/triggerflow/internal/service"
)

func TestUnknownSubcommandFails(t *testing.T) {
	t.Parallel()
	code, out, errOut := run("dlq", "purg")
	require.Equal(t, 1, code)
	require.Empty(t, out, "no help on stdout for a script to mistake for output")
	require.Equal(t, "error: unknown command \"purg\" for \"triggerflow dlq\" (did you mean \"purge\"?); 'triggerflow dlq --help' lists its commands\n", errOut)

	code, _, errOut = run("dlq", "--nats", "nats://127.0.0.1:1", "frobnicate")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `unknown command "frobnicate" for "triggerflow dlq"`)

	// Every group, however deep, and the root.
	var groups [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() {
			groups = append(groups, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(cli.New(io.Discard, io.Discard), nil)
	require.GreaterOrEqual(t, len(groups), 7, "root, audit, checkpoint, completion, dlq, doc, secret: %v", groups)
	for _, g := range groups {
		code, _, errOut := run(append(g, "no-such-command")...)
		require.Equal(t, 1, code, "triggerflow %s no-such-command", strings.Join(g, " "))
		require.Contains(t, errOut, `unknown command "no-such-command"`, g)
	}

	code, _, errOut = run("help", "dlq", "purg")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `unknown command "purg" for "triggerflow dlq"`)
	code, out, errOut = run("help", "dlq", "purge")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "--reason-code")

	// A group on its own still explains itself.
	code, out, errOut = run("dlq")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "purge")
	require.Contains(t, out, "Records are kept until redriven or purged.")
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, errOut := run("--version")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, service.Build().String("triggerflow")+"\n", out)
	require.Regexp(t, `^triggerflow \S+ \(revision \S+, go\S+\)\n$`, out)
}
