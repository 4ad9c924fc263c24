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

	"github.com/triggerflow/triggerflow/internal/service"
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
files, writes demo documents, moves checkpoints, shows and re-sends
deliveries, redrives and purges dead letters and reads the audit trail.`,
		Version:       service.Build().String("triggerflow"),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(out)
	root.SetErr(errOut)
	root.AddCommand(newValidateCmd(), newDocCmd(), newCheckpointCmd(), newReplayCmd(), newAuditCmd(), newDLQCmd(), newDevCmd(), newSecretCmd())
	root.AddCommand(newDeliveriesCmd(), newRedeliverCmd(), newCodecCmd(), newCodecServerCmd(), newTasksCmd())
	// Cobra adds these two when the root executes; added now, the rules
	// below cover them too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	requireSubcommand(root)
	requireHelpTopic(root)
	return root
}

// ErrUnknownCommand is returned for a subcommand a command group does not
// have.
var ErrUnknownCommand = errors.New("unknown command")

// requireSubcommand makes every command group below cmd, and cmd, refuse
// an unknown subcommand. Cobra only does so at the root: `triggerflow dlq
// purg` would print the group's help and exit 0, and a script would take
// the typo for success. A group named alone still prints its help.
func requireSubcommand(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		requireSubcommand(c)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		hint := ""
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			hint = fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return fmt.Errorf("%w %q for %q%s; '%s --help' lists its commands", ErrUnknownCommand, args[0], c.CommandPath(), hint, c.CommandPath())
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// requireHelpTopic makes `triggerflow help <command>` fail on a command
// that does not exist, where cobra prints the root's usage and exits 0.
func requireHelpTopic(root *cobra.Command) {
	for _, h := range root.Commands() {
		if h.Name() != "help" {
			continue
		}
		h.Args = func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return fmt.Errorf("%w %q for %q; '%s --help' lists its commands", ErrUnknownCommand, rest[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		}
	}
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
