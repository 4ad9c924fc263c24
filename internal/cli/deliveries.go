package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/workflows"
)

// ErrEventNotFound is returned when no history read holds the event.
var ErrEventNotFound = errors.New("event not found")

// ErrWorkflowNotFound is returned for a workflow id Temporal has no run of.
var ErrWorkflowNotFound = errors.New("workflow not found")

// defaultRunLimit bounds the runs a lookup or a listing reads.
const defaultRunLimit = 200

// temporalFlags connect a command to the Temporal holding the delivery
// workflows.
type temporalFlags struct {
	hostPort, namespace string
	codec               codecFlags
}

func (f *temporalFlags) register(fs *pflag.FlagSet) {
	d := config.Temporal{}.WithDefaults()
	fs.StringVar(&f.hostPort, "temporal", d.HostPort, "Temporal frontend host:port")
	fs.StringVar(&f.namespace, "namespace", d.Namespace, "Temporal namespace of the delivery workflows")
	f.codec.register(fs)
}

// dial connects and checks the server answers, so that a wrong address
// fails at once. An API key in TRIGGERFLOW_TEMPORAL_API_KEY (the variable
// the binaries read for temporal.apiKey) is sent over TLS. With the keys
// of encrypted histories (--codec-key-file, TRIGGERFLOW_TEMPORAL_CODEC_*)
// every payload is decrypted as it arrives and encrypted as it leaves, so
// the commands read and write as if no encryption were on.
func (f *temporalFlags) dial(ctx context.Context) (client.Client, error) {
	opts := client.Options{
		HostPort:  f.hostPort,
		Namespace: f.namespace,
		Logger:    service.TemporalLogger(quiet(), config.LevelError),
	}
	if key := os.Getenv(config.EnvName("temporal.apiKey")); key != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(key)
		opts.ConnectionOptions.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cdc, err := f.codec.load()
	if err != nil {
		return nil, err
	}
	if cdc != nil {
		dial, err := codec.DialOptions(cdc)
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.DialOptions = append(opts.ConnectionOptions.DialOptions, dial...)
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal at %s (namespace %s; --temporal, --namespace): %w", f.hostPort, f.namespace, err)
	}
	return c, nil
}

// keyFlags select delivery workflows by their search attributes.
type keyFlags struct {
	tenant, trigger, collection, doc string
	since                            string
	limit                            int
}

func (f *keyFlags) register(fs *pflag.FlagSet, what string) {
	fs.StringVar(&f.tenant, "tenant", "", "tenant"+what)
	fs.StringVar(&f.trigger, "trigger", "", "trigger id")
	fs.StringVar(&f.collection, "collection", "", "collection (the document's path, not the trigger's pattern)")
	fs.StringVar(&f.doc, "doc", "", "document key")
	fs.StringVar(&f.since, "since", "", "only runs active since then: a duration back from now (90m, 24h, 7d) or an RFC 3339 time")
	fs.IntVar(&f.limit, "limit", defaultRunLimit, "read at most this many workflow runs, newest first")
}

// query is the visibility query of the flags' workflows.
func (f *keyFlags) query(now time.Time) (string, error) {
	if f.tenant == "" {
		return "", errors.New("--tenant is required")
	}
	if f.limit <= 0 {
		return "", fmt.Errorf("--limit %d: want at least 1", f.limit)
	}
	parts := []string{"WorkflowType = " + quote(workflows.DeliveryWorkflow)}
	for _, c := range []struct{ attr, v string }{
		{"TenantId", f.tenant}, {"TriggerId", f.trigger}, {"Collection", f.collection}, {"DocKey", f.doc},
	} {
		if c.v != "" {
			parts = append(parts, c.attr+" = "+quote(ingest.SearchKeyword(c.v)))
		}
	}
	if f.since != "" {
		t, err := parseSince(f.since, now)
		if err != nil {
			return "", err
		}
		ts := quote(t.UTC().Format(time.RFC3339Nano))
		parts = append(parts, "(StartTime >= "+ts+" OR CloseTime >= "+ts+" OR ExecutionStatus = 'Running')")
	}
	return strings.Join(parts, " AND "), nil
}

// quote is a visibility query string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// parseSince reads --since: a duration back from now (with d for days) or
// an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 {
			return now.Add(-time.Duration(n * float64(24*time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration back from now (90m, 24h, 7d) or an RFC 3339 time", s)
}

// listRuns lists up to limit runs matching query, newest first (running
// runs, then by close time), and reports whether there were more.
func listRuns(ctx context.Context, c client.Client, query string, limit int) ([]*workflowpb.WorkflowExecutionInfo, bool, error) {
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: query, PageSize: int32(min(limit-len(out)+1, 1000)), NextPageToken: token,
		})
		if err != nil {
			return nil, false, fmt.Errorf("listing workflows (%s): %w", query, err)
		}
		out = append(out, resp.GetExecutions()...)
		if len(out) > limit {
			return out[:limit], true, nil
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return out, false, nil
		}
	}
}

// runRow is one run of a key's delivery workflow, as `deliveries list`
// prints it.
type runRow struct {
	WorkflowID string     `json:"workflowId"`
	RunID      string     `json:"runId"`
	Status     string     `json:"status"`
	Start      time.Time  `json:"start"`
	Close      *time.Time `json:"close,omitempty"`
	Tenant     string     `json:"tenant"`
	TriggerID  string     `json:"triggerId"`
	Collection string     `json:"collection"`
	DocKey     string     `json:"docKey"`
	// FailedDeliveries is the search attribute: deliveries that failed
	// for good (dead-lettered, or blocking the key) in the workflow's
	// runs since it last started fresh.
	FailedDeliveries int64 `json:"failedDeliveries"`
	HistoryLength    int64 `json:"historyLength"`
}

func rowOf(info *workflowpb.WorkflowExecutionInfo) runRow {
	dc := converter.GetDefaultDataConverter()
	str := func(p *commonpb.Payload) string {
		var s string
		if p != nil {
			_ = dc.FromPayload(p, &s)
		}
		return s
	}
	sa := info.GetSearchAttributes().GetIndexedFields()
	memo := info.GetMemo().GetFields()
	r := runRow{
		WorkflowID:    info.GetExecution().GetWorkflowId(),
		RunID:         info.GetExecution().GetRunId(),
		Status:        statusName(info.GetStatus()),
		Start:         info.GetStartTime().AsTime(),
		Tenant:        str(sa["TenantId"]),
		TriggerID:     str(sa["TriggerId"]),
		Collection:    str(sa["Collection"]),
		DocKey:        str(sa["DocKey"]),
		HistoryLength: info.GetHistoryLength(),
	}
	// The memo has the full values where a search attribute holds a hash.
	if v := str(memo["collection"]); v != "" {
		r.Collection = v
	}
	if v := str(memo["docKey"]); v != "" {
		r.DocKey = v
	}
	if p := sa["FailedDeliveries"]; p != nil {
		_ = dc.FromPayload(p, &r.FailedDeliveries)
	}
	if ct := info.GetCloseTime(); ct != nil && info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t := ct.AsTime()
		r.Close = &t
	}
	return r
}

// statusName turns WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW into
// continued-as-new.
func statusName(s enumspb.WorkflowExecutionStatus) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "WORKFLOW_EXECUTION_STATUS_")), "_", "-")
}

func newDeliveriesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "List delivery workflows and show every attempt of an event (from Temporal)",
		Long: `Every delivery and attempt is in the history of the document's delivery
workflow in Temporal; these commands read it there, through Temporal's
visibility (search attributes TenantId, TriggerId, Collection, DocKey,
FailedDeliveries) and the workflows' histories. Nothing else stores it:
what Temporal's retention removed is gone.`,
	}
	var tf temporalFlags
	tf.register(cmd.PersistentFlags())
	cmd.AddCommand(newDeliveriesListCmd(&tf), newDeliveriesShowCmd(&tf))
	return cmd
}

func newDeliveriesListCmd(tf *temporalFlags) *cobra.Command {
	var kf keyFlags
	var failed bool
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "list --tenant <tenant>",
		Short: "List the runs of a tenant's delivery workflows, newest first",
		Long: `Lists the runs of a tenant's delivery workflows (one workflow per trigger,
collection and document), running ones first, then by close time. A
document's workflow exits when idle and starts again on its next change,
so a document has a run per busy period; a long one continues as new.

--failed keeps the runs whose FailedDeliveries is above zero: a delivery
failed for good in that run, or in the runs it continued from (dead-lettered,
or blocking the key). Attempts that failed and were retried successfully do
not count. --since keeps the runs active since then (started or closed
since, or still running).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			q, err := kf.query(time.Now())
			if err != nil {
				return err
			}
			if failed {
				q += " AND FailedDeliveries > 0"
			}
			c, err := tf.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			infos, more, err := listRuns(cmd.Context(), c, q, kf.limit)
			if err != nil {
				return err
			}
			rows := make([]runRow, 0, len(infos))
			for _, info := range infos {
				rows = append(rows, rowOf(info))
			}
			if more {
				fmt.Fprintf(cmd.ErrOrStderr(), "showing the newest %d runs; there are more (--limit, --since)\n", kf.limit)
			}
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "STARTED\tCLOSED\tSTATUS\tFAILED\tTRIGGER\tCOLLECTION\tDOCKEY\tWORKFLOW ID\tRUN ID")
			for _, r := range rows {
				closed := "-"
				if r.Close != nil {
					closed = r.Close.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Start.UTC().Format(time.RFC3339), closed, r.Status,
					r.FailedDeliveries, r.TriggerID, r.Collection, cut(r.DocKey, 40), r.WorkflowID, r.RunID)
			}
			return w.Flush()
		},
	}
	kf.register(cmd.Flags(), " (required)")
	cmd.Flags().BoolVar(&failed, "failed", false, "only runs with FailedDeliveries > 0 (deliveries that failed for good)")
	out.register(cmd)
	return cmd
}

// target names what show and redeliver read: a workflow id, or an event
// id with the flags that find its workflow.
type target struct {
	kf         keyFlags
	workflowID string
}

func (t *target) register(fs *pflag.FlagSet) {
	t.kf.register(fs, " (with an event id: the event's tenant)")
	fs.Lookup("since").Usage = "when searching the tenant's runs for the event: only runs active since then (90m, 24h, 7d, or an RFC 3339 time)"
	fs.Lookup("limit").Usage = "read at most this many runs, newest first: of the tenant when searching, of the workflow when reading it"
	fs.StringVar(&t.workflowID, "workflow-id", "", "the event's workflow (instead of --tenant, --trigger, --collection and --doc)")
}

// isWorkflowID tells a workflow id (which always has a '/') from an event
// id (which never has).
func isWorkflowID(s string) bool { return strings.Contains(s, "/") }

// resolve returns the workflow to read for an event id: the --workflow-id,
// the one the key flags name (built as ingest builds it), or, with fewer
// key flags, the first of the tenant's runs whose history has the event.
func (t *target) resolve(ctx context.Context, c client.Client, eventID string, note io.Writer) (string, error) {
	kf := &t.kf
	switch {
	case t.workflowID != "":
		return t.workflowID, nil
	case kf.tenant != "" && kf.trigger != "" && kf.collection != "" && kf.doc != "":
		return ingest.WorkflowID(kf.tenant, kf.trigger, kf.collection, kf.doc), nil
	case kf.tenant == "":
		return "", fmt.Errorf("finding event %s: give its workflow (--workflow-id), its key (--tenant, --trigger, --collection, --doc), or at least --tenant to search the tenant's workflows", eventID)
	}
	q, err := kf.query(time.Now())
	if err != nil {
		return "", err
	}
	infos, more, err := listRuns(ctx, c, q, kf.limit)
	if err != nil {
		return "", err
	}
	for i, info := range infos {
		ex := info.GetExecution()
		found, err := historyMentions(ctx, c, ex.GetWorkflowId(), ex.GetRunId(), eventID)
		if err != nil {
			return "", err
		}
		if found {
			fmt.Fprintf(note, "found %s in %s after reading %d run(s) of tenant %s\n", eventID, ex.GetWorkflowId(), i+1, kf.tenant)
			return ex.GetWorkflowId(), nil
		}
	}
	scope := fmt.Sprintf("any of the %d runs of tenant %s", len(infos), kf.tenant)
	if more {
		scope = fmt.Sprintf("the newest %d runs of tenant %s (--limit)", len(infos), kf.tenant)
	}
	return "", fmt.Errorf("%w: %s is in %s that were read; narrow the search with --trigger, --collection, --doc or --since, or raise --limit", ErrEventNotFound, eventID, scope)
}

// historyMentions reports whether a run received a task or a redelivery of
// eventID.
func historyMentions(ctx context.Context, c client.Client, workflowID, runID, eventID string) (bool, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				return false, nil // removed by retention since it was listed
			}
			return false, fmt.Errorf("reading the history of %s run %s: %w", workflowID, runID, err)
		}
		var input *commonpb.Payloads
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			input = a.GetInput() // a run started with its tasks, or continued with them
		} else if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil &&
			(a.GetSignalName() == workflows.TaskSignal || a.GetSignalName() == workflows.RedeliverSignal) {
			input = a.GetInput()
		}
		for _, p := range input.GetPayloads() {
			if strings.Contains(string(p.GetData()), `"`+eventID+`"`) {
				return true, nil
			}
		}
	}
	return false, nil
}

// deliveryLog is what `deliveries show` reports.
type deliveryLog struct {
	WorkflowID string `json:"workflowId"`
	// Runs are the runs read, oldest first.
	Runs []runRow `json:"runs"`
	// Truncated is set when the workflow has more runs than --limit: the
	// oldest were not read.
	Truncated bool       `json:"truncated,omitempty"`
	Events    []eventLog `json:"events"`

	latestRunning bool
	// latest describes the workflow's latest run; nil when Temporal no
	// longer has the workflow.
	latest *workflowservice.DescribeWorkflowExecutionResponse
}

// readLog reads up to limit runs of a workflow, oldest first, and rebuilds
// the delivery log of eventID ("" for every event).
func readLog(ctx context.Context, c client.Client, workflowID, eventID string, limit int) (*deliveryLog, error) {
	infos, more, err := listRuns(ctx, c, "WorkflowId = "+quote(workflowID), limit)
	if err != nil {
		return nil, err
	}
	// Visibility lags behind: the latest run comes from the workflow itself.
	desc, err := describe(ctx, c, workflowID)
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf) && len(infos) == 0:
		return nil, fmt.Errorf("%w: %s (namespace, retention?)", ErrWorkflowNotFound, workflowID)
	case err != nil && !errors.As(err, &nf):
		return nil, fmt.Errorf("describing %s: %w", workflowID, err)
	case err == nil:
		latest := desc.GetWorkflowExecutionInfo()
		i := slices.IndexFunc(infos, func(in *workflowpb.WorkflowExecutionInfo) bool {
			return in.GetExecution().GetRunId() == latest.GetExecution().GetRunId()
		})
		if i >= 0 {
			infos[i] = latest
		} else {
			infos = append(infos, latest)
		}
	}
	slices.SortStableFunc(infos, func(a, b *workflowpb.WorkflowExecutionInfo) int {
		return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime())
	})
	if len(infos) > limit {
		infos, more = infos[len(infos)-limit:], true
	}
	out := &deliveryLog{WorkflowID: workflowID, Truncated: more, latest: desc}
	b := newLogBuilder(workflowID, eventID)
	for i, info := range infos {
		out.Runs = append(out.Runs, rowOf(info))
		runID := info.GetExecution().GetRunId()
		events, err := history(ctx, c, workflowID, runID)
		if errors.As(err, &nf) {
			continue // removed by retention since it was listed
		}
		if err != nil {
			return nil, err
		}
		b.run(runID, events)
		if i == len(infos)-1 && info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING &&
			desc.GetWorkflowExecutionInfo().GetExecution().GetRunId() == runID {
			// The latest run, still running: what its activities are
			// doing is not in its history yet.
			out.latestRunning = true
			b.pending(runID, desc)
		}
	}
	out.Events = b.result()
	if eventID != "" && len(out.Events) == 0 {
		return nil, fmt.Errorf("%w: %s is not in the %d run(s) of %s that were read", ErrEventNotFound, eventID, len(infos), workflowID)
	}
	return out, nil
}

// describe returns the raw description of the workflow's latest run.
func describe(ctx context.Context, c client.Client, workflowID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	d, err := c.DescribeWorkflow(ctx, workflowID, "")
	if err != nil {
		return nil, err
	}
	return d.RawResponse, nil
}

func history(ctx context.Context, c client.Client, workflowID, runID string) ([]*historypb.HistoryEvent, error) {
	var out []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("reading the history of %s run %s: %w", workflowID, runID, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func newDeliveriesShowCmd(tf *temporalFlags) *cobra.Command {
	var tg target
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "show <eventId|workflowId>",
		Short: "Show every attempt of an event, or of every event of a workflow",
		Long: `Rebuilds the delivery log from the workflow's histories: each attempt with its
time, HTTP status, latency, failure type and the start of the receiver's
answer to a failed attempt.

With a workflow id (tf/<tenant>/<trigger>/<collection>/<docKey>) every
event of that document's workflow is shown. An event id (evt_…, the
webhook-id the receiver saw) cannot be turned back into its workflow, so
give the workflow with --workflow-id, or the key with --tenant, --trigger,
--collection and --doc (the body's data has them), or only --tenant (and
any of the others) to search that tenant's newest runs, at most --limit.

First attempts are local activities whose marker records each task's
status and latency; retries are a triggerflow.Deliver activity, of which
Temporal records the final attempt and the failure of the one before it.
Attempts in between are listed as not recorded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			c, err := tf.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			workflowID, eventID := args[0], ""
			if !isWorkflowID(args[0]) {
				eventID = args[0]
				if workflowID, err = tg.resolve(cmd.Context(), c, eventID, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			log, err := readLog(cmd.Context(), c, workflowID, eventID, tg.kf.limit)
			if err != nil {
				return err
			}
			if log.Truncated {
				fmt.Fprintf(cmd.ErrOrStderr(), "read the newest %d runs of %s; older ones were not (--limit)\n", tg.kf.limit, workflowID)
			}
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), log)
			}
			return printLog(cmd.OutOrStdout(), log)
		},
	}
	tg.register(cmd.Flags())
	out.register(cmd)
	return cmd
}

func printLog(w io.Writer, l *deliveryLog) error {
	fmt.Fprintf(w, "workflow %s (%d run(s) read)\n", l.WorkflowID, len(l.Runs))
	if len(l.Events) == 0 {
		fmt.Fprintln(w, "no events")
	}
	for _, e := range l.Events {
		fmt.Fprintf(w, "\nevent %s  %s %s/%s  trigger %s  %s\n", e.EventID, e.Type, e.Collection, e.DocKey, e.TriggerID, strings.ToUpper(e.Outcome))
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tRUN\tDELIVERY\tATTEMPT\tWHAT\tSTATUS\tLATENCY\tFAILURE\tDETAIL")
		for _, en := range e.Entries {
			at, run, attempt, status := "-", en.RunID, "", ""
			if en.Time != nil {
				at = en.Time.UTC().Format("2006-01-02T15:04:05.000Z")
			}
			if len(run) > 8 {
				run = run[:8]
			}
			if en.Attempt > 0 {
				attempt = strconv.Itoa(en.Attempt)
			}
			if en.AttemptsNotRecorded > 1 {
				attempt += "-" + strconv.Itoa(en.Attempt+en.AttemptsNotRecorded-1)
			}
			if en.Status != 0 {
				status = strconv.Itoa(en.Status)
			}
			what := en.Kind
			if en.Via != "" && en.Kind == entryAttempt {
				what += " (" + en.Via + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", at, run, en.Delivery, attempt, what, status, en.latency(), en.FailureType, detail(&en))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// detail is an entry's last column: one line, cut at 160 characters.
func detail(en *logEntry) string {
	var parts []string
	if en.Actor != "" || en.Reason != "" {
		parts = append(parts, fmt.Sprintf("by %s: %s", en.Actor, en.Reason))
	}
	if en.Message != "" {
		parts = append(parts, en.Message)
	}
	if en.Response != "" {
		r := "response: " + en.Response
		if en.ResponseTruncated {
			r += "…"
		}
		parts = append(parts, r)
	}
	return cut(strings.Join(strings.Fields(strings.Join(parts, "; ")), " "), 160)
}
