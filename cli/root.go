// Package cli implements the `triggerflow` operations command: validating
// trigger files, writing demo documents, inspecting and moving checkpoints,
// listing and redriving dead letters, reading the audit trail, and running
// the all-in-one dev stack.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// ErrSilent marks an error whose message was already printed.
var ErrSilent = errors.New("")

// New returns the root command writing to out and errOut.
func New(out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "triggerflow",
		Short: "Durable document triggers: operate and inspect Triggerflow",
		Long: `triggerflow operates a Triggerflow installation.

A document change is matched against triggers by the watcher, published to
NATS JetStream, handed to a Temporal workflow per document by ingest, and
delivered as a signed webhook by the worker. This command checks trigger
files, writes demo documents, moves checkpoints, redrives dead letters and
reads the audit trail.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.AddCommand(newValidateCmd(), newDocCmd(), newCheckpointCmd(), newReplayCmd(), newAuditCmd(), newDLQCmd(), newDevCmd(), newSecretCmd())
	return root
}

// Execute runs the root command with args and returns the process exit code.
func Execute(args []string, out, errOut io.Writer) int {
	root := New(out, errOut)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if !errors.Is(err, ErrSilent) {
			fmt.Fprintln(errOut, "error:", err)
		}
		return 1
	}
	return 0
}
