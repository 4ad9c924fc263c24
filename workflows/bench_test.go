package workflows_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// BenchmarkDeliveryHotKeys measures 50 documents changing 20 times each,
// signalled by 16 concurrent ingest-like senders (each key's events in
// order from one sender), against the dev server. It reports Temporal
// history events per delivered event, counted over every run of every
// key's workflow (start to quiet exit), and deliveries per second from the
// first signal to the last POST.
func BenchmarkDeliveryHotKeys(b *testing.B) { benchModes(b, 50, 20, false) }

// BenchmarkDeliveryHotKeysPaced is the hot-key worst case: each document
// changes again only once its previous change was delivered, so every
// signal wakes its workflow on its own and nothing can be batched.
func BenchmarkDeliveryHotKeysPaced(b *testing.B) { benchModes(b, 50, 20, true) }

// BenchmarkDeliveryColdKeys measures 200 documents changing once each.
func BenchmarkDeliveryColdKeys(b *testing.B) { benchModes(b, 200, 1, false) }

// benchModes runs with the first attempt as a local activity (the
// default) and as a regular one (Options.ActivityFirstAttempt).
func benchModes(b *testing.B, keys, perKey int, paced bool) {
	for _, local := range []bool{false, true} {
		b.Run(fmt.Sprintf("local=%v", local), func(b *testing.B) { benchDelivery(b, keys, perKey, paced, local) })
	}
}

func benchDelivery(b *testing.B, keys, perKey int, paced, local bool) {
	srv := testenv.Temporal(b)
	// Long enough that a paced key stays one workflow between its changes
	// on a loaded machine; the wait for the exits is not timed.
	h := newHarness(b, srv, workflows.Options{QuietPeriod: 10 * time.Second, ActivityFirstAttempt: !local})
	const senders = 16
	var events, deliveries int
	var elapsed time.Duration
	byType := map[string]int{}
	b.ResetTimer()
	for round := 0; b.Loop(); round++ {
		docKeys := make([]string, keys)
		for k := range docKeys {
			docKeys[k] = fmt.Sprintf("bench-%d-%d", round, k)
		}
		before := len(h.rec.Requests())
		start := time.Now()
		waves, perWave := 1, perKey
		if paced {
			waves, perWave = perKey, 1
		}
		for w := range waves {
			var wg sync.WaitGroup
			errs := make(chan error, senders)
			for s := range senders {
				wg.Go(func() {
					for e := w * perWave; e < (w+1)*perWave; e++ {
						for k := s; k < keys; k += senders {
							tk := h.liveTask(docKeys[k], fmt.Sprintf("evt_%d_%d_%d", round, k, e))
							if err := h.signalErr(tk); err != nil {
								errs <- err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			h.rec.WaitFor(b, before+keys*perWave*(w+1), 5*time.Minute)
		}
		elapsed += time.Since(start)
		deliveries += keys * perKey

		b.StopTimer()
		for _, k := range docKeys {
			h.wait(b, k)
			for _, hist := range h.allRuns(b, k) {
				events += len(hist.Events)
				for _, ev := range hist.Events {
					byType[strings.TrimPrefix(ev.EventType.String(), "EVENT_TYPE_")]++
				}
			}
		}
		b.StartTimer()
	}
	b.Logf("history events per delivery by type: %s", perDelivery(byType, deliveries))
	b.ReportMetric(float64(events)/float64(deliveries), "events/delivery")
	b.ReportMetric(float64(deliveries)/elapsed.Seconds(), "deliveries/s")
}

// signalErr is signal for goroutines other than the test's.
func (h *harness) signalErr(tk trigger.DeliveryTask) error { return h.send(tk.DocKey, tk) }

// send signals payload (a task or a batch of them) as ingest does.
func (h *harness) send(docKey string, payload any) error {
	k := keyFor(docKey)
	_, err := h.c.SignalWithStartWorkflow(context.Background(), workflowID(k), workflows.TaskSignal, payload,
		client.StartWorkflowOptions{
			TaskQueue: h.tq,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.TenantID.ValueSet(k.Tenant), workflows.TriggerID.ValueSet(k.TriggerID),
				workflows.Collection.ValueSet(k.Collection), workflows.DocKey.ValueSet(k.DocKey)),
		}, workflows.DeliveryWorkflow, k)
	return err
}

func perDelivery(byType map[string]int, deliveries int) string {
	names := slices.Sorted(maps.Keys(byType))
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%.2f", n, float64(byType[n])/float64(deliveries)))
	}
	return strings.Join(parts, " ")
}

// allRuns returns the history of every run the key's workflow id had, not
// only the latest chain.
func (h *harness) allRuns(b *testing.B, docKey string) []*historypb.History {
	b.Helper()
	id := workflowID(keyFor(docKey))
	var out []*historypb.History
	var token []byte
	for {
		resp, err := h.c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("WorkflowId = %q", id),
			NextPageToken: token,
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range resp.Executions {
			out = append(out, h.history(b, id, e.GetExecution().GetRunId()))
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return out
		}
	}
}
