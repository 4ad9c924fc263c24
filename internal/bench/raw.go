package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/triggerflow/triggerflow/workflows"
)

const (
	rawTaskQueue = "bench-raw"
	rawSignal    = "task"
)

// post sends one mark to url in the receiver's body shape.
func post(ctx context.Context, hc *http.Client, url string, m Mark) error {
	var b body
	b.Data.After = m
	buf, _ := json.Marshal(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(buf))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// CPUOf returns a CPU reader for this process and the Temporal dev
// server (a child named "temporal"), plus extra named pids.
func CPUOf(extra map[string]string) func() map[string]float64 {
	return func() map[string]float64 {
		out := map[string]float64{"bench": CPUSeconds("self")}
		if pid := ChildPID("temporal"); pid != "" {
			out["temporal-server"] = CPUSeconds(pid)
		}
		for name, pid := range extra {
			out[name] = CPUSeconds(pid)
		}
		return out
	}
}

func selfRSS() map[string]float64 {
	return map[string]float64{"bench(in-process)": round1(PeakRSSMB("self"))}
}

// RawJetStream is ceiling (a): publish to a stream, one plain pull
// consumer POSTs each message and acks after the 2xx. No Temporal.
func RawJetStream(ctx context.Context, nc *nats.Conn, url string) (Scenario, func(), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return Scenario{}, nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCHRAW", Subjects: []string{"benchraw.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		return Scenario{}, nil, err
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return Scenario{}, nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var m Mark
		if json.Unmarshal(msg.Data(), &m) != nil || post(ctx, hc, url, m) != nil {
			_ = msg.Nak()
			return
		}
		_ = msg.Ack()
	})
	if err != nil {
		return Scenario{}, nil, err
	}
	return Scenario{
		Name:    "a) raw JetStream → HTTP",
		Key:     func(p Phase, i int) string { return fmt.Sprintf("k%d", i%50) },
		Senders: 4,
		Send: func(ctx context.Context, _ Phase, key string, m Mark) error {
			b, _ := json.Marshal(m)
			_, err := js.Publish(ctx, "benchraw."+key, b)
			return err
		},
		RSS:   selfRSS,
		CPU:   CPUOf(nil),
		Notes: "one pull consumer, sequential POST then ack; synchronous publish.",
	}, cc.Stop, nil
}

// rawActivities POSTs marks to the receiver: the no-op work of the raw
// Temporal rows, so they are measured at the same receiver.
type rawActivities struct {
	url string
	hc  *http.Client
}

func (a *rawActivities) Post(ctx context.Context, marks []Mark) error {
	for _, m := range marks {
		if err := post(ctx, a.hc, a.url, m); err != nil {
			return err
		}
	}
	return nil
}

var actOpts = workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second}

// RawColdWorkflow takes one signal and runs one activity for it.
func RawColdWorkflow(ctx workflow.Context) error {
	var m Mark
	workflow.GetSignalChannel(ctx, rawSignal).Receive(ctx, &m)
	var a *rawActivities
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, actOpts), a.Post, []Mark{m}).Get(ctx, nil)
}

// RawMailboxWorkflow is the minimal mailbox: block for a signal, drain
// the queued ones, deliver them in one activity, repeat. It never exits;
// the bench terminates it after counting its history.
func RawMailboxWorkflow(ctx workflow.Context) error {
	ch := workflow.GetSignalChannel(ctx, rawSignal)
	ctx = workflow.WithActivityOptions(ctx, actOpts)
	var a *rawActivities
	for {
		var m Mark
		ch.Receive(ctx, &m)
		batch := []Mark{m}
		for ch.ReceiveAsync(&m) {
			batch = append(batch, m)
		}
		if err := workflow.ExecuteActivity(ctx, a.Post, batch).Get(ctx, nil); err != nil {
			return err
		}
	}
}

// StartRawWorker runs the raw rows' workflows and activity in-process.
func StartRawWorker(tc client.Client, url string) (worker.Worker, error) {
	w := worker.New(tc, rawTaskQueue, worker.Options{})
	w.RegisterWorkflow(RawColdWorkflow)
	w.RegisterWorkflow(RawMailboxWorkflow)
	w.RegisterActivity(&rawActivities{url: url, hc: &http.Client{Timeout: 10 * time.Second}})
	return w, w.Start()
}

// RawTemporal is ceiling (b) (hot=false: every event a new workflow) or
// (c) (hot=true: hotKeys mailbox workflows). With attrs each start also
// carries what ingest's does (four keyword search attributes, a memo and a
// summary), to tell Triggerflow's visibility cost from the rest.
func RawTemporal(tc client.Client, hot bool, hotKeys, senders int, attrs bool) Scenario {
	name, wf := "b) raw Temporal cold", any(RawColdWorkflow)
	key := func(p Phase, i int) string { return fmt.Sprintf("raw-cold-%s-%d", p, i) }
	if hot {
		name, wf = fmt.Sprintf("c) raw Temporal mailbox, %d hot keys", hotKeys), RawMailboxWorkflow
		key = func(p Phase, i int) string { return fmt.Sprintf("raw-hot-%s-%d", p, i%hotKeys) }
	}
	notes := fmt.Sprintf("SignalWithStart from %d senders; activity POSTs to the receiver.", senders)
	if attrs {
		notes += " Starts carry Triggerflow's search attributes, memo and summary (-raw-attrs)."
	}
	options := func(key string) client.StartWorkflowOptions {
		o := client.StartWorkflowOptions{ID: key, TaskQueue: rawTaskQueue}
		if attrs {
			o.TypedSearchAttributes = temporal.NewSearchAttributes(
				workflows.TenantID.ValueSet("bench"), workflows.TriggerID.ValueSet("raw"),
				workflows.Collection.ValueSet("raw"), workflows.DocKey.ValueSet(key))
			o.Memo = map[string]any{"docKey": key, "collection": "raw"}
			o.StaticSummary = "bench/raw/raw " + key
		}
		return o
	}
	return Scenario{
		Name: name, Key: key, Senders: senders, RSS: selfRSS, CPU: CPUOf(nil), Notes: notes,
		Send: func(ctx context.Context, _ Phase, key string, m Mark) error {
			_, err := tc.SignalWithStartWorkflow(ctx, key, rawSignal, m, options(key), wf)
			return err
		},
		History: func(ctx context.Context, keys []string) (Usage, error) {
			return historyOf(ctx, tc, unique(keys), !hot, hot)
		},
	}
}

// historyOf sums the history events, Temporal Cloud actions and history
// bytes of the latest runs of ids, first waiting (bounded) for them to
// close when waitClosed, and terminating them afterwards when terminate.
func historyOf(ctx context.Context, tc client.Client, ids []string, waitClosed, terminate bool) (Usage, error) {
	var sum Usage
	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			d, err := tc.DescribeWorkflow(ctx, id, "")
			if err != nil {
				return Usage{}, fmt.Errorf("describe %s: %w", id, err)
			}
			info := d.RawResponse.GetWorkflowExecutionInfo()
			if waitClosed && info.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond) // polling the server for the run to close
				continue
			}
			var events []*historypb.HistoryEvent
			it := tc.GetWorkflowHistory(ctx, id, info.GetExecution().GetRunId(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					return Usage{}, fmt.Errorf("history of %s: %w", id, err)
				}
				events = append(events, ev)
			}
			sum.Events += int64(len(events))
			sum.Actions += cloudActions(events)
			sum.Bytes += historyBytes(events)
			break
		}
		if terminate {
			_ = tc.TerminateWorkflow(ctx, id, "", "bench row done")
		}
	}
	return sum, nil
}

func unique(keys []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
