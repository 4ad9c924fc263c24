package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/publisher"
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, inspect and redrive dead-lettered tasks and deliveries",
		Long: `Everything Triggerflow gives up on lands on the dead-letter stream with its
reason: changes the source could not decode, tasks too large to publish,
messages ingest could not read, deliveries that failed for good (a 4xx, or
retries exhausted). Records are kept until redriven or purged.`,
	}
	d := config.NATS{}.WithDefaults()
	var natsURL, dlqStream, taskStream, auditStream string
	cmd.PersistentFlags().StringVar(&natsURL, "nats", d.URL, "NATS URL")
	cmd.PersistentFlags().StringVar(&dlqStream, "stream", d.DeadLetterSubject, "dead-letter stream")

	var tenant string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, js, err := jetStream(config.NATS{URL: natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			entries, err := deadletter.List(cmd.Context(), js, dlqStream, tenant, limit)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tTIME\tSTAGE\tREASON\tTENANT\tTRIGGER\tCOLLECTION\tDOCKEY\tREDRIVABLE")
			for _, e := range entries {
				r := e.Record
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\n", e.Seq, r.Time.Format(time.RFC3339), r.Stage, r.Reason, r.Tenant, r.TriggerID, r.Collection, shortKey(r.DocKey), len(r.Task) > 0)
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only this tenant's records")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many (0: all)")

	show := &cobra.Command{
		Use:   "show <seq>",
		Short: "Print one dead letter in full (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("seq %q is not a number", args[0])
			}
			nc, js, err := jetStream(config.NATS{URL: natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			rec, err := deadletter.Get(cmd.Context(), js, dlqStream, seq)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rec)
		},
	}

	var af auditFlags
	redrive := &cobra.Command{
		Use:   "redrive <seq>...",
		Short: "Send dead-lettered tasks through the normal path again (audited)",
		Long: `Republishes each record's delivery task on the task stream, from where
ingest and the worker deliver it like any other, with the same webhook-id,
and removes the record. Fix the cause first (the endpoint, the trigger's
URL), or the task fails and is dead-lettered again.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, js, err := jetStream(config.NATS{URL: natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			aw := audit.NewWriter(js, auditStream)
			for _, a := range args {
				seq, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return fmt.Errorf("seq %q is not a number", a)
				}
				rec, err := deadletter.Get(cmd.Context(), js, dlqStream, seq)
				if err != nil {
					return err
				}
				if len(rec.Task) == 0 {
					return fmt.Errorf("record %d (%s %s): %w", seq, rec.Stage, rec.Reason, publisher.ErrNotRedrivable)
				}
				ar := audit.Record{Action: audit.ActionRedrive, Tenant: orUnderscore(rec.Tenant), Actor: af.actor, Reason: af.reason,
					Key: fmt.Sprintf("%s seq %d (%s %s)", dlqStream, seq, rec.Stage, rec.Reason), Before: rec.EventID}
				if err := aw.Write(cmd.Context(), ar); err != nil {
					return fmt.Errorf("%w (nothing redriven: the audit trail must be writable first)", err)
				}
				task, err := publisher.Redrive(cmd.Context(), js, dlqStream, taskStream, seq)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "redrove %d: %s %s/%s (event %s)\n", seq, task.TriggerID, task.Collection, shortKey(task.DocKey), task.EventID)
			}
			return nil
		},
	}
	redrive.Flags().StringVar(&taskStream, "task-stream", d.Stream, "task stream to republish on")
	redrive.Flags().StringVar(&auditStream, "audit-stream", d.AuditStream, "audit stream")
	af.register(redrive)

	cmd.AddCommand(list, show, redrive)
	return cmd
}

func shortKey(k string) string {
	if len(k) > 40 {
		return k[:40] + "…"
	}
	return k
}

func orUnderscore(s string) string {
	if s == "" {
		return "_"
	}
	return s
}
