package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/workflows"
)

// ErrDeliveryInProgress is returned when redeliver is asked for an event
// its workflow has not finished delivering.
var ErrDeliveryInProgress = errors.New("the event's delivery is not finished")

func newRedeliverCmd() *cobra.Command {
	var tf temporalFlags
	var tg target
	var af auditFlags
	var natsURL, auditStream string
	var force bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "redeliver <eventId>",
		Short: "Send one event to its webhook again, even one already delivered (audited)",
		Long: `Sends the event's task to the webhook once more: the same body, the same
webhook-id (the event id), signed afresh, as a new delivery of the
document's workflow with its own attempts under the trigger's retry policy.
It goes out after the tasks the workflow has queued for that document.

The task is taken from the workflow's history (find it as for
'deliveries show': --workflow-id, the key flags, or --tenant to search).
An audit record is written first (refused when the audit trail cannot be
written), then the workflow is signalled ('redeliver', with
SignalWithStart, so a workflow that has exited starts again).

A delivery of the event that is still queued, retrying or blocking the key
is refused (it would then go out twice): wait for it, unblock the key, or
pass --force. For a dead-lettered event, 'dlq redrive' also removes the
dead letter; redeliver leaves it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eventID := args[0]
			if isWorkflowID(eventID) {
				return fmt.Errorf("%q is a workflow id: redeliver takes an event id; 'triggerflow deliveries show %s' lists the workflow's events, then pass one with --workflow-id %s", eventID, eventID, eventID)
			}
			ctx := cmd.Context()
			c, err := tf.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			workflowID, err := tg.resolve(ctx, c, eventID, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			log, err := readLog(ctx, c, workflowID, eventID, tg.kf.limit)
			if err != nil {
				return err
			}
			ev := log.Events[0]
			if ev.task.EventID == "" {
				return fmt.Errorf("%w: the task of %s is in none of the %d run(s) of %s read (--limit)", ErrEventNotFound, eventID, len(log.Runs), workflowID)
			}
			if log.latest == nil {
				return fmt.Errorf("%w: %s has no run left to take its task queue from (retention?)", ErrWorkflowNotFound, workflowID)
			}
			if log.latestRunning && !force && ev.Outcome != outcomeDelivered && ev.Outcome != outcomeDeadLettered {
				return fmt.Errorf("%w: %s is %s in %s; a redelivery now would send it again once that delivery ends. Wait for it ('triggerflow deliveries show %s --workflow-id %s'), unblock the key if it is blocked, or pass --force",
					ErrDeliveryInProgress, eventID, ev.Outcome, workflowID, eventID, workflowID)
			}

			nc, js, err := jetStream(config.NATS{URL: natsURL})
			if err != nil {
				return err
			}
			defer nc.Close()
			request, err := requestID()
			if err != nil {
				return err
			}
			ar := audit.Record{Action: audit.ActionRedeliver, Tenant: ev.task.Tenant, Actor: af.actor, Reason: af.reason,
				Key: workflowID, Before: eventID, After: request}
			if err := audit.NewWriter(js, auditStream).Write(ctx, ar); err != nil {
				return fmt.Errorf("%w (nothing redelivered: the audit trail must be writable first)", explainStream(err, "audit", auditStream, "--audit-stream", natsURL))
			}
			runID, err := signalRedelivery(ctx, c, log.latest, workflowID, workflows.Redelivery{Task: ev.task, Actor: af.actor, Reason: af.reason, Request: request})
			if err != nil {
				return fmt.Errorf("%w (the audit record was written; run the command again)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redelivery %s of %s queued on %s (run %s), webhook-id %s\n", request, eventID, workflowID, runID, ev.task.EventID)
			if wait <= 0 {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			return awaitRedelivery(wctx, c, workflowID, runID, eventID, request, cmd.OutOrStdout())
		},
	}
	tf.register(cmd.Flags())
	tg.register(cmd.Flags())
	af.register(cmd)
	d := config.NATS{}.WithDefaults()
	cmd.Flags().StringVar(&natsURL, "nats", d.URL, "NATS URL (for the audit trail)")
	cmd.Flags().StringVar(&auditStream, "audit-stream", d.AuditStream, "audit stream")
	cmd.Flags().BoolVar(&force, "force", false, "redeliver even while the event's delivery is not finished")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the redelivery's outcome and print its attempts (0: do not wait)")
	return cmd
}

// signalRedelivery signals the redelivery to the key's workflow, starting
// a run the way ingest does when none is running, and returns the run
// that got it. desc describes the workflow's latest run, as readLog read
// it.
func signalRedelivery(ctx context.Context, c client.Client, desc *workflowservice.DescribeWorkflowExecutionResponse, workflowID string, r workflows.Redelivery) (string, error) {
	t := &r.Task
	// As ingest starts it, on the task queue where the workflow ran: the
	// worker polls there.
	opts := ingest.StartOptions(workflowID, desc.GetWorkflowExecutionInfo().GetTaskQueue(), t)
	params := workflows.StartParams(t)
	run, err := c.SignalWithStartWorkflow(ctx, workflowID, workflows.RedeliverSignal, r, opts, workflows.DeliveryWorkflow, params)
	if err != nil {
		return "", fmt.Errorf("signalling %s: %w", workflowID, err)
	}
	return run.GetRunID(), nil
}

// requestID names one redeliver command, in its audit record and signal.
func requestID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("request id: %w", err)
	}
	return "rdl_" + hex.EncodeToString(b[:]), nil
}

// awaitRedelivery follows the run's history until the redelivery request
// of eventID has an outcome, and prints its attempts.
func awaitRedelivery(ctx context.Context, c client.Client, workflowID, runID, eventID, request string, w io.Writer) error {
	b := newLogBuilder(workflowID, eventID)
	b.begin(runID)
	it := c.GetWorkflowHistory(ctx, workflowID, runID, true, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("no outcome yet (--wait): %w", ctx.Err())
			}
			return fmt.Errorf("following %s: %w", workflowID, err)
		}
		b.apply(ev)
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW {
			return fmt.Errorf("%s continued as new before the redelivery had an outcome: see 'triggerflow deliveries show %s --workflow-id %s'", workflowID, eventID, workflowID)
		}
		e := b.events[eventID]
		if e == nil {
			continue
		}
		entries := deliveryOf(e.Entries, request)
		o := outcomeOf(entries, e.task.OnFailure)
		if o != outcomeDelivered && o != outcomeDeadLettered && o != outcomeBlocked {
			continue
		}
		for _, en := range entries[1:] {
			fmt.Fprintf(w, "  attempt %d: %s\n", en.Attempt, describeEntry(&en))
		}
		fmt.Fprintln(w, strings.ToUpper(o))
		if o != outcomeDelivered {
			return fmt.Errorf("redelivery of %s %s", eventID, o)
		}
		return nil
	}
	return fmt.Errorf("%s closed before the redelivery of %s had an outcome", workflowID, eventID)
}

// deliveryOf returns the entries of the delivery the redelivery request
// started, or nil.
func deliveryOf(entries []logEntry, request string) []logEntry {
	for i, en := range entries {
		if en.Kind == entryRedeliver && en.Request == request {
			var out []logEntry
			for _, o := range entries[i:] {
				if o.Delivery == en.Delivery {
					out = append(out, o)
				}
			}
			return out
		}
	}
	return nil
}

func describeEntry(en *logEntry) string {
	var parts []string
	if en.Kind != entryAttempt {
		parts = append(parts, en.Kind)
	}
	if en.Status != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", en.Status))
	}
	if l := en.latency(); l != "" {
		parts = append(parts, l)
	}
	if en.FailureType != "" {
		parts = append(parts, en.FailureType)
	}
	if d := detail(en); d != "" && en.FailureType != "" {
		parts = append(parts, d)
	}
	return strings.Join(parts, ", ")
}
