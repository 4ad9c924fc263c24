package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/streams"
)

// dlqFlags are the flags every dlq command shares.
type dlqFlags struct{ natsURL, stream string }

// explain names the dead-letter stream when it is missing.
func (f *dlqFlags) explain(err error) error {
	return explainStream(err, "dead-letter", f.stream, "--stream", f.natsURL)
}

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, inspect, redrive and purge dead-lettered tasks and deliveries",
		Long: `Everything Triggerflow gives up on lands on the dead-letter stream with its
reason: changes the source could not decode, tasks too large to publish,
messages ingest could not read, deliveries that failed for good (a 4xx, or
retries exhausted). Records are kept until redriven or purged.`,
	}
	d := config.NATS{}.WithDefaults()
	f := &dlqFlags{}
	cmd.PersistentFlags().StringVar(&f.natsURL, "nats", d.URL, "NATS URL")
	cmd.PersistentFlags().StringVar(&f.stream, "stream", d.DeadLetterSubject, "dead-letter stream")
	cmd.AddCommand(newDLQListCmd(f), newDLQShowCmd(f), newDLQRedriveCmd(f, d), newDLQPurgeCmd(f, d))
	return cmd
}

// filterFlags select records by their fields. The record's reason is
// --reason-code: --reason is the audit trail's why, on every command that
// changes something.
type filterFlags struct{ tenant, trigger, reasonCode, since string }

func (s *filterFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.tenant, "tenant", "", "only this tenant's records (_: records without a valid tenant)")
	cmd.Flags().StringVar(&s.trigger, "trigger", "", "only this trigger's records")
	cmd.Flags().StringVar(&s.reasonCode, "reason-code", "", "only records with this reason code (the REASON column: http-4xx, attempts-exhausted, invalid-task, …)")
	cmd.Flags().StringVar(&s.since, "since", "", "only records made since then: a duration back from now (90m, 24h, 7d) or an RFC 3339 time")
}

func (s *filterFlags) filter(now time.Time) (deadletter.Filter, error) {
	f := deadletter.Filter{Tenant: s.tenant, TriggerID: s.trigger, Reason: s.reasonCode}
	if s.since == "" {
		return f, nil
	}
	since, err := parseSince(s.since, now)
	f.Since = since
	return f, err
}

// selection is how redrive and purge name their records: by sequence
// number, by filters, or all of them, explicitly.
type selection struct {
	filterFlags
	all bool
}

func (s *selection) register(cmd *cobra.Command, verb string) {
	s.filterFlags.register(cmd)
	cmd.Flags().BoolVar(&s.all, "all", false, verb+" every record (instead of sequence numbers or filters)")
}

// check refuses a selection that names nothing or two things; it runs
// before anything connects.
func (s *selection) check(args []string, filter deadletter.Filter) error {
	switch {
	case len(args) > 0 && (s.all || !filter.IsZero()):
		return errors.New("name records either by sequence number or by filters (or --all), not both")
	case s.all && !filter.IsZero():
		return errors.New("--all selects every record: drop it, or the filters")
	case len(args) == 0 && !s.all && filter.IsZero():
		return errors.New("name the records: sequence numbers, filters (--tenant, --trigger, --reason-code, --since), or --all")
	}
	for _, a := range args {
		if _, err := strconv.ParseUint(a, 10, 64); err != nil {
			return fmt.Errorf("seq %q is not a number", a)
		}
	}
	return nil
}

// parse reads the filter flags and checks the selection (see check); it
// runs before anything connects.
func (s *selection) parse(args []string) (deadletter.Filter, error) {
	filter, err := s.filter(time.Now())
	if err != nil {
		return deadletter.Filter{}, err
	}
	return filter, s.check(args, filter)
}

// opened is a selection resolved over its NATS connection; the caller
// closes nc.
type opened struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	entries []deadletter.Entry
	named   bool
	filter  deadletter.Filter
}

// open parses the selection (see parse) and runs checks, all before
// anything connects, then connects to f's NATS and resolves the selection
// there (see resolve).
func (s *selection) open(ctx context.Context, f *dlqFlags, args []string, checks ...func() error) (opened, error) {
	filter, err := s.parse(args)
	if err != nil {
		return opened{}, err
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return opened{}, err
		}
	}
	nc, js, err := jetStream(config.NATS{URL: f.natsURL})
	if err != nil {
		return opened{}, err
	}
	entries, named, err := s.resolve(ctx, js, f, args, filter)
	if err != nil {
		nc.Close()
		return opened{}, err
	}
	return opened{nc: nc, js: js, entries: entries, named: named, filter: filter}, nil
}

// resolve returns the records named by args (each must exist; in the
// order given, without repeats) or selected by filter (oldest first), and
// whether they were named. check has accepted args and filter.
func (s *selection) resolve(ctx context.Context, js jetstream.JetStream, f *dlqFlags, args []string, filter deadletter.Filter) (entries []deadletter.Entry, named bool, err error) {
	if len(args) == 0 {
		entries, err = deadletter.Find(ctx, js, f.stream, filter, 0)
		return entries, false, f.explain(err)
	}
	seen := map[uint64]bool{}
	for _, a := range args {
		seq, _ := strconv.ParseUint(a, 10, 64)
		if seen[seq] {
			continue
		}
		seen[seq] = true
		rec, err := deadletter.Get(ctx, js, f.stream, seq)
		if err != nil {
			return nil, false, f.explain(err)
		}
		entries = append(entries, deadletter.Entry{Seq: seq, Record: rec})
	}
	return entries, true, nil
}

// checkUnlessDryRun requires --actor and --reason unless nothing will
// change.
func (a *auditFlags) checkUnlessDryRun(dryRun bool) error {
	if dryRun {
		return nil
	}
	var missing []string
	if a.actor == "" {
		missing = append(missing, `"actor"`)
	}
	if a.reason == "" {
		missing = append(missing, `"reason"`)
	}
	if len(missing) > 0 {
		return fmt.Errorf("required flag(s) %s not set (not needed with --dry-run)", strings.Join(missing, ", "))
	}
	return nil
}

func (a *auditFlags) registerOptional(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.actor, "actor", "", "who asks for this (required unless --dry-run; written to the audit trail)")
	cmd.Flags().StringVar(&a.reason, "reason", "", "why (required unless --dry-run; written to the audit trail)")
}

// dlqListItem is one record of `dlq list -o json`.
type dlqListItem struct {
	Seq        uint64 `json:"seq"`
	Redrivable bool   `json:"redrivable"`
	deadletter.Record
}

func newDLQListCmd(f *dlqFlags) *cobra.Command {
	var sel filterFlags
	var out outputFlag
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			filter, err := sel.filter(time.Now())
			if err != nil {
				return err
			}
			nc, js, err := jetStream(config.NATS{URL: f.natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			entries, err := deadletter.Find(cmd.Context(), js, f.stream, filter, limit)
			if err != nil {
				return f.explain(err)
			}
			if out.json() {
				items := make([]dlqListItem, 0, len(entries))
				for _, e := range entries {
					items = append(items, dlqListItem{Seq: e.Seq, Redrivable: len(e.Record.Task) > 0, Record: e.Record})
				}
				return writeJSON(cmd.OutOrStdout(), items)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tTIME\tSTAGE\tREASON\tTENANT\tTRIGGER\tCOLLECTION\tDOCKEY\tREDRIVABLE")
			for _, e := range entries {
				r := e.Record
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\n", e.Seq, r.Time.Format(time.RFC3339), r.Stage, r.Reason, r.Tenant, r.TriggerID, r.Collection, cut(r.DocKey, 40), len(r.Task) > 0)
			}
			return w.Flush()
		},
	}
	sel.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (0: all)")
	out.register(cmd)
	return cmd
}

func newDLQShowCmd(f *dlqFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show <seq>",
		Short: "Print one dead letter in full (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("seq %q is not a number", args[0])
			}
			nc, js, err := jetStream(config.NATS{URL: f.natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			rec, err := deadletter.Get(cmd.Context(), js, f.stream, seq)
			if err != nil {
				return f.explain(err)
			}
			return writeJSON(cmd.OutOrStdout(), rec)
		},
	}
}

func newDLQRedriveCmd(f *dlqFlags, d config.NATS) *cobra.Command {
	var sel selection
	var af auditFlags
	var taskStream, auditStream string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "redrive [<seq>...]",
		Short: "Send dead-lettered tasks through the normal path again (audited)",
		Long: `Republishes each record's delivery task on the task stream, from where
ingest and the worker deliver it like any other, with the same webhook-id,
and removes the record. Fix the cause first (the endpoint, the trigger's
URL), or the task fails and is dead-lettered again.

Name the records by sequence number (each must hold a task), or select them
with --tenant, --trigger, --reason-code and --since (records without a task
are skipped and listed), or take every record with --all. Each redrive
writes an audit record first. --dry-run lists what would be redriven and
changes nothing.`,
		Example: `  triggerflow dlq redrive 17 18 --actor alice --reason "receiver fixed (INC-42)"
  triggerflow dlq redrive --tenant acme --reason-code http-4xx --since 24h --dry-run`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, w := cmd.Context(), cmd.OutOrStdout()
			o, err := sel.open(ctx, f, args, func() error { return af.checkUnlessDryRun(dryRun) })
			if err != nil {
				return err
			}
			defer o.nc.Close()
			js, entries, named := o.js, o.entries, o.named
			if named {
				// Every named record must be redrivable before any is
				// redriven: a typo in the list should not leave half of it
				// done.
				for _, e := range entries {
					if len(e.Record.Task) == 0 {
						return fmt.Errorf("record %d (%s %s): %w", e.Seq, e.Record.Stage, e.Record.Reason, publisher.ErrNotRedrivable)
					}
				}
			}
			if len(entries) == 0 {
				fmt.Fprintln(w, "no dead letters selected; nothing to redrive")
				return nil
			}
			aw := audit.NewWriter(js, auditStream)
			done, skipped := 0, 0
			for _, e := range entries {
				r := e.Record
				if len(r.Task) == 0 {
					fmt.Fprintf(w, "skipped %d: %s %s, no task to redrive\n", e.Seq, r.Stage, r.Reason)
					skipped++
					continue
				}
				if dryRun {
					fmt.Fprintf(w, "would redrive %d: %s %s/%s (event %s)\n", e.Seq, r.TriggerID, r.Collection, cut(r.DocKey, 40), r.EventID)
					done++
					continue
				}
				ar := audit.Record{Action: audit.ActionRedrive, Tenant: orUnderscore(r.Tenant), Actor: af.actor, Reason: af.reason,
					Key: fmt.Sprintf("%s seq %d (%s %s)", f.stream, e.Seq, r.Stage, r.Reason), Before: r.EventID}
				if err := aw.Write(ctx, ar); err != nil {
					err = explainStream(err, "audit", auditStream, "--audit-stream", f.natsURL)
					return fmt.Errorf("%w (record %d not redriven, nor any after it: the audit trail must be writable first; %d redriven before it)", err, e.Seq, done)
				}
				task, err := publisher.Redrive(ctx, js, f.stream, taskStream, e.Seq)
				if err != nil {
					return explainStream(err, "task", taskStream, "--task-stream", f.natsURL)
				}
				fmt.Fprintf(w, "redrove %d: %s %s/%s (event %s)\n", e.Seq, task.TriggerID, task.Collection, cut(task.DocKey, 40), task.EventID)
				done++
			}
			verb := "redrove"
			if dryRun {
				verb = "would redrive"
			}
			fmt.Fprintf(w, "%s %s", verb, records(done))
			if skipped > 0 {
				fmt.Fprintf(w, "; skipped %d without a task (replay those from a checkpoint position)", skipped)
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	sel.register(cmd, "redrive")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be redriven; change nothing")
	cmd.Flags().StringVar(&taskStream, "task-stream", d.Stream, "task stream to republish on")
	cmd.Flags().StringVar(&auditStream, "audit-stream", d.AuditStream, "audit stream")
	af.registerOptional(cmd)
	return cmd
}

func newDLQPurgeCmd(f *dlqFlags, d config.NATS) *cobra.Command {
	var sel selection
	var af auditFlags
	var auditStream string
	var dryRun, yes bool
	cmd := &cobra.Command{
		Use:   "purge [<seq>...]",
		Short: "Remove dead letters for good (audited)",
		Long: `Removes records from the dead-letter stream without delivering them. Name
them by sequence number, select them with --tenant, --trigger, --reason-code
and --since, or take every record with --all (one stream purge, which leaves
records written meanwhile).

Purging needs --yes; --dry-run lists what would be purged and changes
nothing. Every purged record is listed, and an audit record per tenant
(action dead-letter-purge) names the sequence numbers first.`,
		Example: `  triggerflow dlq purge --tenant acme --reason-code invalid-task --dry-run
  triggerflow dlq purge 17 18 --yes --actor alice --reason "test records"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, w := cmd.Context(), cmd.OutOrStdout()
			o, err := sel.open(ctx, f, args, func() error {
				if !dryRun && !yes {
					return errors.New("purging removes records for good: add --yes to purge, or --dry-run to list what would be purged")
				}
				return af.checkUnlessDryRun(dryRun)
			})
			if err != nil {
				return err
			}
			defer o.nc.Close()
			js, entries, named, filter := o.js, o.entries, o.named, o.filter
			if len(entries) == 0 {
				fmt.Fprintln(w, "no dead letters selected; nothing to purge")
				return nil
			}
			if dryRun {
				printPurged(w, "would purge", entries)
				return nil
			}
			aw := audit.NewWriter(js, auditStream)
			for _, ar := range purgeAudit(f.stream, entries, sel.describe(named, filter), af) {
				if err := aw.Write(ctx, ar); err != nil {
					err = explainStream(err, "audit", auditStream, "--audit-stream", f.natsURL)
					return fmt.Errorf("%w (nothing purged: the audit trail must be writable first)", err)
				}
			}
			if sel.all {
				err = deadletter.PurgeThrough(ctx, js, f.stream, entries[len(entries)-1].Seq)
				if err != nil {
					return f.explain(err)
				}
				printPurged(w, "purged", entries)
				return deletePurgedImages(ctx, w, js, f.stream, entries)
			}
			seqs := make([]uint64, len(entries))
			for i, e := range entries {
				seqs[i] = e.Seq
			}
			n, err := deadletter.Remove(ctx, js, f.stream, seqs)
			if n > 0 {
				printPurged(w, "purged", entries[:n])
			}
			if err != nil {
				return f.explain(err)
			}
			return deletePurgedImages(ctx, w, js, f.stream, entries[:n])
		},
	}
	sel.register(cmd, "purge")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be purged; change nothing")
	cmd.Flags().BoolVar(&yes, "yes", false, "purge: the records are gone for good")
	cmd.Flags().StringVar(&auditStream, "audit-stream", d.AuditStream, "audit stream")
	af.registerOptional(cmd)
	return cmd
}

// describe is how the records were selected, for the audit record; a
// relative --since appears as the time it stood for.
func (s *selection) describe(named bool, filter deadletter.Filter) string {
	switch {
	case named:
		return "by seq"
	case s.all:
		return "all"
	}
	return filter.String()
}

// purgeAudit returns one audit record per tenant of entries, in the order
// the tenants first appear.
func purgeAudit(stream string, entries []deadletter.Entry, how string, af auditFlags) []audit.Record {
	var tenants []string
	seqs := map[string][]uint64{}
	for _, e := range entries {
		t := orUnderscore(e.Record.Tenant)
		if _, ok := seqs[t]; !ok {
			tenants = append(tenants, t)
		}
		seqs[t] = append(seqs[t], e.Seq)
	}
	out := make([]audit.Record, 0, len(tenants))
	for _, t := range tenants {
		slices.Sort(seqs[t]) // named records come in the order given
		out = append(out, audit.Record{Action: audit.ActionPurge, Tenant: t, Actor: af.actor, Reason: af.reason,
			Key: fmt.Sprintf("%s seq %s (%s; selected: %s)", stream, seqRanges(seqs[t]), records(len(seqs[t])), how)})
	}
	return out
}

// maxRanges bounds an audit record's sequence list: a purge of scattered
// records must still fit one NATS message.
const maxRanges = 64

// seqRanges writes ascending sequence numbers compactly: "3-5, 9, 12-40",
// and past maxRanges ranges "…, and 812 more".
func seqRanges(seqs []uint64) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if len(parts) == maxRanges {
			parts = append(parts, fmt.Sprintf("and %d more", len(seqs)-i))
			break
		}
		if i == j {
			parts = append(parts, strconv.FormatUint(seqs[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// deletePurgedImages deletes the document images the purged records kept
// (see package images).
func deletePurgedImages(ctx context.Context, w io.Writer, js jetstream.JetStream, stream string, entries []deadletter.Entry) error {
	recs := make([]deadletter.Record, len(entries))
	for i, e := range entries {
		recs[i] = e.Record
	}
	n, err := images.DeletePurged(ctx, js, stream, recs)
	if n > 0 {
		fmt.Fprintf(w, "deleted %d stored document image(s) of the purged records\n", n)
	}
	if err != nil {
		return fmt.Errorf("records purged, but some of their document images were not deleted (they stay in bucket %s): %w", streams.ImageBucket(stream), err)
	}
	return nil
}

func printPurged(w io.Writer, verb string, entries []deadletter.Entry) {
	for _, e := range entries {
		r := e.Record
		fmt.Fprintf(w, "%s %d: %s %s %s/%s %s/%s\n", verb, e.Seq, r.Stage, r.Reason, orUnderscore(r.Tenant), orUnderscore(r.TriggerID), orUnderscore(r.Collection), cut(orUnderscore(r.DocKey), 40))
	}
	fmt.Fprintf(w, "%s %s\n", verb, records(len(entries)))
}

func records(n int) string {
	if n == 1 {
		return "1 record"
	}
	return fmt.Sprintf("%d records", n)
}

func orUnderscore(s string) string {
	if s == "" {
		return "_"
	}
	return s
}
