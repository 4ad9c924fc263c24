package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/watcher"
	"github.com/triggerflow/triggerflow/workflows"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "triggerflow-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(
			// gRPC's and the Temporal SDK's background goroutines outlive
			// a closed client for a moment.
			goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
			goleak.IgnoreAnyFunction("go.temporal.io/sdk/internal.(*sharedNamespaceCapabilities).get"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// size is one chaos run's shape.
type size struct {
	changes, keys int
	// writeFor spreads the changes over this long; every fault is injected
	// within it.
	writeFor   time.Duration
	killsEach  int    // SIGKILLs of each of watcher, ingest and worker
	sharing    string // ingest.sharing
	settle     time.Duration
	httpTimout time.Duration
	// maxIngestGap, when set, bounds the longest stretch without a
	// delivery after each ingest kill that no other fault overlaps.
	maxIngestGap time.Duration
}

// gapWindow is how long after an ingest kill its delivery gap is looked
// for, and how far other faults must stay from it for the gap to be the
// kill's alone.
const gapWindow = 10 * time.Second

// TestChaosShort is the chaos run `make test` includes.
func TestChaosShort(t *testing.T) {
	runChaos(t, size{changes: 600, keys: 20, writeFor: 25 * time.Second, killsEach: 2,
		sharing: "pinned", settle: 3 * time.Minute, httpTimout: 2 * time.Second})
}

// TestChaosFull is the long run, `make chaos`.
func TestChaosFull(t *testing.T) {
	if os.Getenv("CHAOS_FULL") != "1" {
		t.Skip("the full chaos run takes minutes; run it with `make chaos` (CHAOS_FULL=1 go test ./chaos -run TestChaosFull -timeout 30m -count=1 -v)")
	}
	sharing := os.Getenv("CHAOS_SHARING")
	if sharing == "" {
		sharing = "pinned"
	}
	runChaos(t, size{changes: 10000, keys: 100, writeFor: 6 * time.Minute, killsEach: 6,
		sharing: sharing, settle: 10 * time.Minute, httpTimout: 2 * time.Second, maxIngestGap: 5 * time.Second})
}

// fault is one scheduled action.
type fault struct {
	at   time.Duration // after the first write
	kind string
	// down is how long a killed service stays down, or how long a
	// receiver failure lasts.
	down time.Duration
}

func schedule(rng *rand.Rand, sz size) []fault {
	span := func() time.Duration {
		return sz.writeFor/20 + time.Duration(rng.Int64N(int64(sz.writeFor*17/20)))
	}
	var fs []fault
	for _, svc := range []string{"watcher", "ingest", "worker"} {
		for range sz.killsEach {
			fs = append(fs, fault{at: span(), kind: "kill " + svc, down: time.Duration(rng.Int64N(int64(time.Second)))})
		}
	}
	fs = append(fs,
		fault{at: span(), kind: "restart nats", down: time.Second + time.Duration(rng.Int64N(int64(time.Second)))},
		fault{at: span(), kind: "restart temporal"},
		fault{at: span(), kind: "receiver 500s", down: 2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))},
		fault{at: span(), kind: "receiver timeouts", down: 2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))},
	)
	// Move each ingest kill, where the span allows, at least gapWindow
	// away from every other fault, so the delivery gap it causes is its own.
	for i := range fs {
		if fs[i].kind != "kill ingest" {
			continue
		}
		for range 200 {
			if isolated(fs, i) {
				break
			}
			fs[i].at = span()
		}
	}
	slices.SortStableFunc(fs, func(a, b fault) int { return int(a.at - b.at) })
	return fs
}

// isolated reports whether no other fault acts within gapWindow of fs[i]
// (a receiver failure acts for its whole duration).
func isolated(fs []fault, i int) bool {
	for j, f := range fs {
		if j == i {
			continue
		}
		end := f.at + f.down
		if end > fs[i].at-gapWindow && f.at < fs[i].at+gapWindow {
			return false
		}
	}
	return true
}

// injected is a fault as it happened: start when it began, end when the
// service was down (kills, restarts).
type injected struct {
	fault
	start, end time.Time
}

// write is one document change as committed.
type write struct {
	key string
	seq int
	at  time.Time
}

// ks identifies one change: its document key and sequence number.
type ks struct {
	key string
	seq int
}

// reconcile compares the changes written with those delivered: lost were
// written and never delivered, unexpected delivered and never written.
func reconcile[V any](writes []write, delivered map[ks]V) (lost, unexpected []string) {
	written := map[ks]bool{}
	for _, w := range writes {
		k := ks{w.key, w.seq}
		written[k] = true
		if _, ok := delivered[k]; !ok {
			lost = append(lost, fmt.Sprintf("%s/%d", w.key, w.seq))
		}
	}
	for k := range delivered {
		if !written[k] {
			unexpected = append(unexpected, fmt.Sprintf("%s/%d", k.key, k.seq))
		}
	}
	return lost, unexpected
}

func runChaos(t *testing.T, sz size) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "CHAOS_SEED")
	}
	t.Logf("chaos: seed %d (replay with CHAOS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	plan := schedule(rng, sz)
	var sb strings.Builder
	for _, f := range plan {
		fmt.Fprintf(&sb, "  %8s  %-18s %s\n", f.at.Round(time.Millisecond), f.kind, f.down.Round(time.Millisecond))
	}
	t.Logf("chaos: schedule (offset, fault, down/duration):\n%s", sb.String())

	bins := buildBinaries(t)
	dir := t.TempDir()
	ctx := context.Background()

	// NATS, its own process, restarted on the same port and store.
	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	natsProc := newProc(t, "nats-server", filepath.Join(bins, "nats-server"),
		"-js", "-sd", filepath.Join(dir, "jetstream"), "-p", strconv.Itoa(natsPort), "-a", "127.0.0.1")
	natsProc.start()
	awaitPort(t, natsPort)

	ts := testenv.Temporal(t)
	tc := ts.Client(t)

	rcv := newReceiver(t, 2*sz.httpTimout)

	// The document store, written by this process.
	db := filepath.Join(dir, "docs.db")
	store, err := docstore.Open(ctx, docstore.Config{Path: db})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	require.NoError(t, store.Checkpoints().Save(ctx, watcher.CheckpointPrefix+"acme", docstore.FormatPosition(0)))

	trigDir := filepath.Join(dir, "triggers")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(trigDir, "items.yaml"), fmt.Appendf(nil,
		"tenant: acme\ntriggers:\n  - triggerId: all\n    collection: items\n    url: %s/hook\n", rcv.url), 0o600))

	common := fmt.Sprintf("log: {format: text, level: warn, temporalLevel: error}\nhttp: {addr: \"127.0.0.1:0\"}\nnats: {url: %q}\ntemporal: {hostPort: %q}\n", natsURL, ts.HostPort())
	cfgs := map[string]string{
		"watcher": fmt.Sprintf("log: {format: text, level: warn}\nhttp: {addr: \"127.0.0.1:0\"}\nnats: {url: %q}\n"+
			"watcher: {tenant: acme, sqlite: {path: %q}, triggers: %q, checkpointInterval: 100ms}\n"+
			"publisher: {ackTimeout: 2s, retryBackoff: {initial: 50ms, max: 1s}}\n", natsURL, db, trigDir),
		"ingest": common + fmt.Sprintf("ingest: {ackWait: 3s, sharing: %s, drainTimeout: 1s, shutdownTimeout: 2s}\n", sz.sharing),
		"worker": common + fmt.Sprintf("worker:\n  httpTimeout: %s\n  allowLoopback: true\n  quietPeriod: 2s\n"+
			"  retry: {maxAttempts: 1000, initialBackoff: 200ms, maxBackoff: 2s, multiplier: 2}\n"+
			"  secrets: {dir: %q}\n  tokens: {keyFile: %q}\n", sz.httpTimout, filepath.Join(dir, "secrets"), filepath.Join(dir, "keys", "token.pem")),
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	svcs := map[string]*proc{}
	for _, name := range []string{"watcher", "ingest", "worker"} {
		path := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(path, []byte(cfgs[name]), 0o600))
		svcs[name] = newProc(t, name, filepath.Join(bins, name), "--config", path)
		svcs[name].start()
	}
	reviveAll := func() {
		for _, name := range []string{"watcher", "ingest", "worker"} {
			svcs[name].revive()
		}
	}

	// The writer: sz.changes changes spread evenly over sz.writeFor, each
	// setting {"seq": n} on a random key, n counting up per key.
	writes := make([]write, sz.changes)
	writeErr := make(chan error, 1)
	begin := time.Now()
	wrng := rand.New(rand.NewPCG(seed, 1))
	go func() {
		next := map[string]int{}
		for i := range sz.changes {
			if d := time.Until(begin.Add(sz.writeFor * time.Duration(i) / time.Duration(sz.changes))); d > 0 {
				time.Sleep(d) // pacing the load, not synchronising
			}
			key := fmt.Sprintf("k%03d", wrng.IntN(sz.keys))
			seq := next[key]
			next[key]++
			if err := store.Put(ctx, "acme", "items", key, fmt.Appendf(nil, `{"seq":%d}`, seq)); err != nil {
				writeErr <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			writes[i] = write{key: key, seq: seq, at: time.Now()}
		}
		writeErr <- nil
	}()

	// waitUntil keeps supervising the services until the moment comes.
	waitUntil := func(when time.Time) {
		for {
			reviveAll()
			d := time.Until(when)
			if d <= 0 {
				return
			}
			time.Sleep(min(d, 200*time.Millisecond)) // the schedule's clock
		}
	}
	var done []injected
	var ends []fault // receiver failures to switch off
	for _, f := range plan {
		for len(ends) > 0 && ends[0].at <= f.at {
			waitUntil(begin.Add(ends[0].at))
			rcv.setMode(modeOK)
			ends = ends[1:]
		}
		waitUntil(begin.Add(f.at))
		in := injected{fault: f, start: time.Now()}
		switch {
		case strings.HasPrefix(f.kind, "kill "):
			p := svcs[strings.TrimPrefix(f.kind, "kill ")]
			p.stop(syscall.SIGKILL)
			in.end = time.Now()
			time.Sleep(f.down) // the outage being injected
			p.start()
		case f.kind == "restart nats":
			natsProc.stop(syscall.SIGTERM)
			in.end = time.Now()
			time.Sleep(f.down) // the outage being injected
			natsProc.start()
			awaitPort(t, natsPort)
		case f.kind == "restart temporal":
			ts.Restart(t)
			in.end = time.Now()
		case f.kind == "receiver 500s":
			rcv.setMode(modeFail)
			ends = append(ends, fault{at: f.at + f.down})
		case f.kind == "receiver timeouts":
			rcv.setMode(modeTimeout)
			ends = append(ends, fault{at: f.at + f.down})
		}
		slices.SortFunc(ends, func(a, b fault) int { return int(a.at - b.at) })
		if in.end.IsZero() {
			in.end = in.start
		}
		done = append(done, in)
		t.Logf("chaos: %8s %s", time.Since(begin).Round(time.Millisecond), f.kind)
	}
	for _, e := range ends {
		waitUntil(begin.Add(e.at))
		rcv.setMode(modeOK)
	}
	rcv.setMode(modeOK)
	require.NoError(t, <-writeErr)
	writesDone := time.Since(begin)

	// Every change delivered at least once.
	deadline := time.Now().Add(sz.settle)
	for rcv.distinct() < sz.changes && time.Now().Before(deadline) {
		reviveAll()
		time.Sleep(100 * time.Millisecond) // polling external processes' effect
	}
	allIn := time.Since(begin)

	// No workflow left running with work queued or blocked.
	stuck := stuckWorkflows(t, tc)
	for len(stuck) > 0 && time.Now().Before(deadline) {
		reviveAll()
		time.Sleep(200 * time.Millisecond) // visibility and queries of an external server
		stuck = stuckWorkflows(t, tc)
	}

	dlq := deadLetters(t, natsURL)

	// Analysis.
	acc, failed, timedOut, bad := rcv.snapshot()
	first := map[ks]delivery{}
	idOf := map[ks]string{}
	keyOfID := map[string]ks{}
	var wrongID []string
	dups := 0
	var order = map[string][]delivery{} // first deliveries per key, arrival order
	for _, d := range acc {
		k := ks{d.key, d.seq}
		if _, seen := first[k]; seen {
			dups++
			if idOf[k] != d.webhookID {
				wrongID = append(wrongID, fmt.Sprintf("%s/%d: %s then %s", d.key, d.seq, idOf[k], d.webhookID))
			}
			continue
		}
		first[k], idOf[k] = d, d.webhookID
		if other, ok := keyOfID[d.webhookID]; ok {
			wrongID = append(wrongID, fmt.Sprintf("webhook-id %s on %v and %v", d.webhookID, other, k))
		}
		keyOfID[d.webhookID] = k
		order[d.key] = append(order[d.key], d)
	}
	lost, unexpected := reconcile(writes, first)
	// A late first delivery is one that arrives after a higher seq of its
	// key. The design allows it only for a task the killed ingest held:
	// committed before a kill of ingest and first delivered after it.
	writeAt := map[ks]time.Time{}
	for _, w := range writes {
		writeAt[ks{w.key, w.seq}] = w.at
	}
	var ingestKills []injected
	for _, in := range done {
		if in.kind == "kill ingest" {
			ingestKills = append(ingestKills, in)
		}
	}
	reorderedKeys, late := 0, 0
	var unexplained []string
	for key, ds := range order {
		maxSeq, reordered := -1, false
		for _, d := range ds {
			if d.seq < maxSeq {
				reordered = true
				late++
				explained := false
				for _, kill := range ingestKills {
					if sz.sharing == "pinned" {
						break // a takeover keeps order: nothing to explain away
					}
					if writeAt[ks{key, d.seq}].Before(kill.end) && d.at.After(kill.start) {
						explained = true
					}
				}
				if !explained {
					unexplained = append(unexplained, fmt.Sprintf("%s/%d after %d (written %s, delivered %s)", key, d.seq, maxSeq,
						writeAt[ks{key, d.seq}].Sub(begin).Round(time.Millisecond), d.at.Sub(begin).Round(time.Millisecond)))
				}
			}
			maxSeq = max(maxSeq, d.seq)
		}
		if reordered {
			reorderedKeys++
		}
	}
	// The longest stretch without a delivery in the gapWindow after each
	// ingest kill: the stall the crash caused, restart and takeover included.
	var gaps []string
	var tooLong []string
	for _, kill := range ingestKills {
		gap, last := time.Duration(0), kill.start
		for _, d := range acc {
			if d.at.Before(kill.start) || d.at.After(kill.start.Add(gapWindow)) {
				continue
			}
			gap, last = max(gap, d.at.Sub(last)), d.at
		}
		end := kill.start.Add(gapWindow)
		if last := writes[len(writes)-1].at; last.Before(end) {
			end = last // after the last write, quiet is no stall
		}
		gap = max(gap, end.Sub(last))
		alone := true
		for _, other := range done {
			if other.start != kill.start && other.end.Add(other.down).After(kill.start.Add(-gapWindow)) && other.start.Before(kill.start.Add(gapWindow)) {
				alone = false
			}
		}
		note := ""
		if !alone {
			note = " (overlaps another fault)"
		}
		gaps = append(gaps, fmt.Sprintf("%s at %s%s", gap.Round(10*time.Millisecond), kill.start.Sub(begin).Round(time.Second), note))
		if sz.maxIngestGap > 0 && alone && gap > sz.maxIngestGap {
			tooLong = append(tooLong, fmt.Sprintf("%s after the kill at %s", gap.Round(10*time.Millisecond), kill.start.Sub(begin).Round(time.Second)))
		}
	}
	faults := map[string]int{}
	for _, in := range done {
		faults[in.kind]++
	}
	var fl []string
	for k, n := range faults {
		fl = append(fl, fmt.Sprintf("%s ×%d", k, n))
	}
	slices.Sort(fl)
	dupRate := 0.0
	if len(first) > 0 {
		dupRate = 100 * float64(dups) / float64(len(first))
	}
	var tb strings.Builder
	row := func(name string, v any) { fmt.Fprintf(&tb, "  %-34s %v\n", name, v) }
	row("seed", seed)
	row("ingest.sharing", sz.sharing)
	row("events (changes written)", sz.changes)
	row("keys", sz.keys)
	row("delivered (200s, incl. duplicates)", len(acc))
	row("distinct (key, seq) delivered", len(first))
	row("lost", len(lost))
	row("unexpected deliveries", len(unexpected))
	row("reordered keys", reorderedKeys)
	row("late first deliveries", late)
	row("  of which not after an ingest kill", len(unexplained))
	row("duplicates", fmt.Sprintf("%d (%.2f%%)", dups, dupRate))
	row("duplicates with another webhook-id", len(wrongID))
	row("unparseable deliveries", len(bad))
	row("attempts answered 500", failed)
	row("attempts held past httpTimeout", timedOut)
	row("workflows stuck", len(stuck))
	row("dead letters", dlq)
	row("faults injected", strings.Join(fl, ", "))
	row("longest delivery gap per ingest kill", strings.Join(gaps, "; "))
	row("unexpected service exits", fmt.Sprintf("watcher %d, ingest %d, worker %d", svcs["watcher"].unexpected, svcs["ingest"].unexpected, svcs["worker"].unexpected))
	row("writes done after", writesDone.Round(time.Millisecond))
	row("all delivered after", allIn.Round(time.Millisecond))
	t.Logf("chaos: results\n%s", tb.String())

	require.Empty(t, lost, "changes never delivered (seed %d)", seed)
	require.Empty(t, unexpected, "deliveries of changes never written (seed %d)", seed)
	require.Empty(t, wrongID, "a duplicate must carry the original's webhook-id, and ids must not repeat across changes (seed %d)", seed)
	require.Empty(t, bad, "deliveries the receiver could not parse (seed %d)", seed)
	require.Empty(t, unexplained, "per-key order broken where the design promises it (seed %d)", seed)
	require.Empty(t, stuck, "workflows still running with queued or blocked tasks (seed %d)", seed)
	require.Zero(t, dlq, "dead-letter stream must be empty (seed %d)", seed)
	for _, name := range []string{"watcher", "ingest", "worker"} {
		require.Zero(t, svcs[name].unexpected, "%s exited on its own outside the injected faults (seed %d); see its output", name, seed)
	}
	if sz.sharing == "pinned" {
		requireTakeovers(t, svcs["ingest"], ingestKills, done)
	}
	require.Empty(t, tooLong, "deliveries stalled longer than %s after an ingest kill (seed %d)", sz.maxIngestGap, seed)
}

// requireTakeovers checks the mechanism that keeps an ingest crash short
// with sharing "pinned": the ingest started after each kill found the
// killed replica's pin dead and took over, rather than waiting for
// pinnedTTL. An incarnation killed again within a few seconds of its start
// may not have got there; its successor takes over instead. A NATS restart
// near the kill clears the pin, leaving nothing to take over.
func requireTakeovers(t *testing.T, p *proc, kills, all []injected) {
	t.Helper()
	runs := p.incarnations(t)
	natsRestartNear := func(kill injected) bool {
		for _, f := range all {
			if f.kind == "restart nats" && f.start.After(kill.start.Add(-gapWindow)) && f.start.Before(kill.end.Add(gapWindow)) {
				return true
			}
		}
		return false
	}
	for _, kill := range kills {
		if natsRestartNear(kill) {
			continue
		}
		for i, r := range runs {
			if !r.start.After(kill.end) {
				continue
			}
			if i+1 < len(runs) && runs[i+1].start.Sub(r.start) < 5*time.Second {
				break
			}
			require.Contains(t, r.output, "took over its tasks",
				"the ingest started at %s, after the kill at %s, did not take over the dead replica's pin", r.start.Format(time.StampMilli), kill.start.Format(time.StampMilli))
			break
		}
	}
}

// stuckWorkflows lists running delivery workflows whose status query shows
// queued or blocked tasks (or that cannot answer it).
func stuckWorkflows(t *testing.T, tc client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []string
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `ExecutionStatus = "Running"`, NextPageToken: token})
		if err != nil {
			return []string{"listing workflows: " + err.Error()}
		}
		for _, ex := range resp.Executions {
			id, run := ex.Execution.WorkflowId, ex.Execution.RunId
			var st workflows.Status
			v, err := tc.QueryWorkflow(ctx, id, run, workflows.StatusQuery)
			if err == nil {
				err = v.Get(&st)
			}
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("%s: %v", id, err))
			case st.Pending > 0 || st.Blocked != nil:
				out = append(out, fmt.Sprintf("%s: pending %d blocked %v", id, st.Pending, st.Blocked != nil))
			}
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			return out
		}
	}
}

// awaitNoStuckWorkflows waits up to a minute for stuckWorkflows to come
// back empty: the server's visibility and the workflows' state trail the
// deliveries.
func awaitNoStuckWorkflows(t *testing.T, tc client.Client) {
	t.Helper()
	testenv.Eventually(t, time.Minute, "no workflow running with queued or blocked tasks", func() error {
		if stuck := stuckWorkflows(t, tc); len(stuck) > 0 {
			return fmt.Errorf("still running: %v", stuck)
		}
		return nil
	})
}

// deadLetters counts the messages on the dead-letter stream.
func deadLetters(t *testing.T, url string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "TRIGGERS_DLQ")
	require.NoError(t, err, "the dead-letter stream exists")
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// awaitPort waits until a child process accepts connections on port.
func awaitPort(t testing.TB, port int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("a listener on %d", port), func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}
