package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/watcher"
)

// auditFlags are required on every command that changes what gets
// delivered: the trail must say who and why.
type auditFlags struct{ actor, reason string }

func (a *auditFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.actor, "actor", "", "who asks for this (required; written to the audit trail)")
	cmd.Flags().StringVar(&a.reason, "reason", "", "why (required; written to the audit trail)")
	_ = cmd.MarkFlagRequired("actor")
	_ = cmd.MarkFlagRequired("reason")
}

func newCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Show, set or reset a tenant's watcher checkpoint (audited)",
		Long: `A tenant's checkpoint is where its watcher resumes. It lives in the source's
own database under sys/checkpoints/trigger_evaluator/<tenant> (one key per
include entry when the watcher filters collections).

Stop the watcher before set or reset: a running watcher keeps its position
in memory and overwrites the checkpoint. Every change writes an audit record.

Positions are checked by the source and stored in its canonical form: for
the SQLite store a change sequence number (42 is stored as
00000000000000000042), for PostgreSQL a CCCCCCCCCCCCCCCC-LLLLLLLLLLLLLLLL-SSSSSSSS
token or a commit LSN such as 0/16B3748. The commands refuse to create a
SQLite store that does not exist.`,
	}
	cmd.AddCommand(newCheckpointShowCmd(), newCheckpointSetCmd(), newCheckpointResetCmd())
	return cmd
}

func newCheckpointShowCmd() *cobra.Command {
	var wf watcherFlags
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the checkpoint keys, their positions and the source head",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, tenant, err := wf.load()
			if err != nil {
				return err
			}
			src, err := wf.existingSource(cmd.Context(), cfg, tenant)
			if err != nil {
				return err
			}
			defer src.Close()
			head, err := src.Head(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tPOSITION")
			for _, k := range watcher.CheckpointKeys(tenant, cfg.Watcher.Include) {
				pos, found, err := src.Checkpoints().Load(cmd.Context(), k)
				switch {
				case err != nil:
					pos = "unreadable: " + err.Error()
				case !found:
					pos = "(none: the watcher will not start without startFromNow or a resume token)"
				default:
					pos = describePosition(src, pos)
				}
				fmt.Fprintf(w, "%s\t%s\n", k, pos)
			}
			fmt.Fprintf(w, "source head\t%s\n", orNone(head))
			return w.Flush()
		},
	}
	wf.register(cmd)
	return cmd
}

// moveCheckpointCmd completes cmd as a command that moves the checkpoint
// (moveCheckpoint with action and target), with the watcher and audit
// flags.
func moveCheckpointCmd(cmd *cobra.Command, action audit.Action, target func(head string) (string, string)) *cobra.Command {
	var wf watcherFlags
	var af auditFlags
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return moveCheckpoint(cmd, &wf, &af, action, target)
	}
	wf.register(cmd)
	af.register(cmd)
	return cmd
}

func newCheckpointSetCmd() *cobra.Command {
	var position string
	cmd := moveCheckpointCmd(&cobra.Command{
		Use:   "set --position <token>",
		Short: "Set the checkpoint to a position (a replay when it is behind)",
	}, audit.ActionCheckpointSet, func(string) (string, string) { return position, "--position" })
	cmd.Flags().StringVar(&position, "position", "", "source position to resume after (required)")
	_ = cmd.MarkFlagRequired("position")
	return cmd
}

func newCheckpointResetCmd() *cobra.Command {
	var fromNow bool
	cmd := moveCheckpointCmd(&cobra.Command{
		Use:   "reset",
		Short: "Delete the checkpoint, or move it to the source head with --start-from-now",
		Long: `Without --start-from-now the checkpoint is deleted, and the watcher refuses
to start until one is set again (fail fast). With --start-from-now it is
moved to the source's newest change: changes committed before now are never
delivered.`,
	}, audit.ActionCheckpointReset, func(head string) (string, string) {
		if !fromNow {
			return "", ""
		}
		return head, ""
	})
	cmd.Flags().BoolVar(&fromNow, "start-from-now", false, "move the checkpoint to the source head instead of deleting it")
	return cmd
}

func newReplayCmd() *cobra.Command {
	var from string
	cmd := moveCheckpointCmd(&cobra.Command{
		Use:   "replay --from <token>",
		Short: "Replay a tenant's changes after a position (a controlled, audited replay)",
		Long: `Moves the tenant's checkpoint back to --from, so the next watcher start
re-reads every change after it. Deliveries that already happened are
deduplicated by event id for as long as the stream's duplicate window and
the workflows' dedupe sets remember them; older ones are delivered again
with the same webhook-id. Stop the watcher first. Equivalent to starting
the watcher once with watcher.resumeToken.`,
	}, audit.ActionResumeToken, func(string) (string, string) { return from, "--from" })
	cmd.Flags().StringVar(&from, "from", "", "source position to replay after (required)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// moveCheckpoint sets every checkpoint key of the tenant to the position
// target returns, or deletes them for "", and writes the audit record.
// target also names the flag the position came from, "" for one derived
// from the source head.
func moveCheckpoint(cmd *cobra.Command, wf *watcherFlags, af *auditFlags, action audit.Action, target func(head string) (pos, from string)) error {
	ctx := cmd.Context()
	cfg, tenant, err := wf.load()
	if err != nil {
		return err
	}
	nc, js, err := jetStream(cfg.NATS)
	if err != nil {
		return fmt.Errorf("%w (the audit trail must be writable before a checkpoint moves)", err)
	}
	defer nc.Close()
	src, err := wf.existingSource(ctx, cfg, tenant)
	if err != nil {
		return err
	}
	defer src.Close()
	head, err := src.Head(ctx)
	if err != nil {
		return err
	}
	pos, from := target(head)
	switch {
	case pos == "" && from != "":
		return fmt.Errorf("%s is empty: give a position (`checkpoint reset` deletes the checkpoint)", from)
	case pos != "":
		// Stored as typed, "42" would sort after every padded position the
		// watcher compares it with, and the watcher would take a malformed
		// one for a missing checkpoint.
		canonical, err := src.ParsePosition(pos)
		if err != nil {
			return fmt.Errorf("%s %q: %w", cmp.Or(from, "source head"), pos, err)
		}
		pos = canonical
	}
	keys := watcher.CheckpointKeys(tenant, cfg.Watcher.Include)
	before, _, err := src.Checkpoints().Load(ctx, keys[0])
	if err != nil {
		before = "unreadable"
	}
	rec := audit.Record{Action: action, Tenant: tenant, Actor: af.actor, Reason: af.reason, Key: strings.Join(keys, ","), Before: before, After: pos}
	// The record is written first: a move without its record must not
	// happen, while a record of a move that then failed says so below.
	if err := audit.NewWriter(js, cfg.NATS.AuditStream).Write(ctx, rec); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("%w (is the audit stream provisioned? start the watcher once or run with nats.provisioning: create)", err)
	}
	for _, k := range keys {
		if pos == "" {
			err = src.Checkpoints().Delete(ctx, k)
		} else {
			err = src.Checkpoints().Save(ctx, k, pos)
		}
		if err != nil {
			return fmt.Errorf("checkpoint %s not moved (the audit record was written): %w", k, err)
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: tenant %s: %s → %s (keys %s)\n", action, tenant, orNone(before), orNone(pos), strings.Join(keys, ", "))
	return nil
}

// describePosition shows a stored position as the watcher will read it.
func describePosition(src watcher.Source, pos string) string {
	canonical, err := src.ParsePosition(pos)
	switch {
	case err != nil:
		return fmt.Sprintf("%q: not a position, the watcher treats it as missing (%v)", pos, err)
	case canonical != pos:
		return fmt.Sprintf("%s (= %s)", pos, canonical)
	}
	return pos
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
