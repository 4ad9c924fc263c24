package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestDLQListShowRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := testenv.NATS(t)
	cfg := config.NATS{}.WithDefaults()
	js := ns.JetStream(t, cfg.Streams())

	task := &trigger.DeliveryTask{V: trigger.TaskVersion, EventID: trigger.NewEventID("acme", "t1", "orders", "o.1", "p1"),
		Tenant: "acme", TriggerID: "t1", Collection: "orders", DocKey: "o.1", Type: trigger.EventCreate,
		Position: "p1", CommitTime: time.Now().UTC(), URL: "https://hooks.example.com/x"}
	body, err := task.Encode()
	require.NoError(t, err)
	dl := deadletter.NewPublisher(js, cfg.DeadLetterSubject)
	require.NoError(t, dl.Publish(ctx, deadletter.Record{ID: task.EventID, Stage: deadletter.StageDelivery, Reason: "http-4xx", Detail: "404", Tenant: "acme", TriggerID: "t1", Collection: "orders", DocKey: "o.1", EventID: task.EventID, Task: body}))
	require.NoError(t, dl.Publish(ctx, deadletter.Record{ID: "garbage", Stage: deadletter.StageIngest, Reason: "invalid-task", Payload: []byte("{")}))

	code, out, errOut := run("dlq", "list", "--nats", ns.URL())
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "http-4xx")
	require.Contains(t, out, "invalid-task")

	code, out, errOut = run("dlq", "show", "--nats", ns.URL(), "1")
	require.Equal(t, 0, code, errOut)
	var rec deadletter.Record
	require.NoError(t, json.Unmarshal([]byte(out), &rec))
	require.Equal(t, "o.1", rec.DocKey)

	code, _, errOut = run("dlq", "redrive", "--nats", ns.URL(), "--actor", "ada", "--reason", "endpoint fixed", "2")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no task to redrive")

	code, out, errOut = run("dlq", "redrive", "--nats", ns.URL(), "--actor", "ada", "--reason", "endpoint fixed", "1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "redrove 1")

	// The task is back on the task stream, marked as a redrive, with a new
	// dedupe key but the same event id, and the dead letter is gone.
	s, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	m, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "TRIGGERS.acme.orders.by4x", m.Subject)
	got, err := trigger.DecodeTask(m.Data)
	require.NoError(t, err)
	require.Equal(t, task.EventID, got.EventID)
	require.EqualValues(t, 1, got.Redrive)
	require.Equal(t, got.DedupeKey(), m.Header.Get(jetstream.MsgIDHeader))
	require.NotEqual(t, task.EventID, got.DedupeKey())
	entries, err := deadletter.List(ctx, js, cfg.DeadLetterSubject, "", 0)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "invalid-task", entries[0].Record.Reason)

	recs, err := audit.List(ctx, js, cfg.AuditStream, "", 0)
	require.NoError(t, err)
	require.Len(t, recs, 1, "the redrive is audited; the refused one changed nothing")
	require.Equal(t, audit.ActionRedrive, recs[0].Action)
	require.Equal(t, "ada", recs[0].Actor)
	require.Equal(t, "endpoint fixed", recs[0].Reason)
	require.True(t, strings.Contains(recs[0].Key, "seq 1"))
}

// dlqEnv is embedded NATS with the streams provisioned and, in stream
// order, seq 1–5:
//
//	1 acme t1 http-4xx           48h old  task
//	2 acme t1 http-4xx                    task
//	3 acme t2 attempts-exhausted          task
//	4 beta t1 http-4xx                    task
//	5 acme    invalid-task (ingest)       no task
func dlqEnv(t *testing.T) (url string, js jetstream.JetStream, cfg config.NATS) {
	t.Helper()
	ctx := context.Background()
	ns := testenv.NATS(t)
	cfg = config.NATS{}.WithDefaults()
	js = ns.JetStream(t, cfg.Streams())
	dl := deadletter.NewPublisher(js, cfg.DeadLetterSubject)
	now := time.Now().UTC()
	for i, r := range []struct {
		tenant, trigger, reason string
		age                     time.Duration
	}{
		{"acme", "t1", "http-4xx", 48 * time.Hour},
		{"acme", "t1", "http-4xx", 0},
		{"acme", "t2", "attempts-exhausted", 0},
		{"beta", "t1", "http-4xx", 0},
	} {
		key := fmt.Sprintf("o.%d", i+1)
		task := &trigger.DeliveryTask{V: trigger.TaskVersion, EventID: trigger.NewEventID(r.tenant, r.trigger, "orders", key, "p1"),
			Tenant: r.tenant, TriggerID: r.trigger, Collection: "orders", DocKey: key, Type: trigger.EventCreate,
			Position: "p1", CommitTime: now, URL: "https://hooks.example.com/x"}
		body, err := task.Encode()
		require.NoError(t, err)
		require.NoError(t, dl.Publish(ctx, deadletter.Record{ID: task.EventID, Stage: deadletter.StageDelivery, Reason: r.reason,
			Tenant: r.tenant, TriggerID: r.trigger, Collection: "orders", DocKey: key, EventID: task.EventID, Task: body, Time: now.Add(-r.age)}))
	}
	require.NoError(t, dl.Publish(ctx, deadletter.Record{ID: "garbage", Stage: deadletter.StageIngest, Reason: "invalid-task", Tenant: "acme", Payload: []byte("{")}))
	return ns.URL(), js, cfg
}

// dlqSeqs returns the sequence numbers left on the dead-letter stream.
func dlqSeqs(t *testing.T, js jetstream.JetStream, cfg config.NATS) []uint64 {
	t.Helper()
	entries, err := deadletter.List(context.Background(), js, cfg.DeadLetterSubject, "", 0)
	require.NoError(t, err)
	seqs := []uint64{}
	for _, e := range entries {
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func taskCount(t *testing.T, js jetstream.JetStream, cfg config.NATS) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), cfg.Stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func auditRecords(t *testing.T, js jetstream.JetStream, cfg config.NATS) []audit.Record {
	t.Helper()
	recs, err := audit.List(context.Background(), js, cfg.AuditStream, "", 0)
	require.NoError(t, err)
	return recs
}

func TestDLQListFiltersAndJSON(t *testing.T) {
	t.Parallel()
	url, _, _ := dlqEnv(t)
	list := func(args ...string) []map[string]any {
		t.Helper()
		code, out, errOut := run(append([]string{"dlq", "list", "--nats", url, "-o", "json"}, args...)...)
		require.Equal(t, 0, code, errOut)
		var items []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &items), out)
		return items
	}
	seqs := func(items []map[string]any) []float64 {
		out := []float64{}
		for _, it := range items {
			out = append(out, it["seq"].(float64))
		}
		return out
	}
	all := list()
	require.Len(t, all, 5)
	require.Equal(t, "http-4xx", all[0]["reason"])
	require.Equal(t, "acme", all[0]["tenant"])
	require.Equal(t, true, all[0]["redrivable"])
	require.Equal(t, false, all[4]["redrivable"])
	require.Equal(t, "orders", all[0]["task"].(map[string]any)["collection"], "the task is JSON, not a string")

	require.Equal(t, []float64{1, 2, 3, 5}, seqs(list("--tenant", "acme")))
	require.Equal(t, []float64{1, 2, 4}, seqs(list("--trigger", "t1")))
	require.Equal(t, []float64{1, 2}, seqs(list("--tenant", "acme", "--reason-code", "http-4xx")))
	require.Equal(t, []float64{2, 3, 4, 5}, seqs(list("--since", "24h")))
	require.Equal(t, []float64{2, 4}, seqs(list("--trigger", "t1", "--since", time.Now().Add(-time.Hour).Format(time.RFC3339))))
	require.Equal(t, []float64{2}, seqs(list("--trigger", "t1", "--since", "1h", "--limit", "1")))
	require.Equal(t, []float64{}, seqs(list("--tenant", "nobody")), "no match is an empty array")

	code, out, errOut := run("dlq", "list", "--nats", url, "--reason-code", "attempts-exhausted")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 2, strings.Count(out, "\n"), "the header and one record:\n%s", out)

	code, _, errOut = run("dlq", "list", "--nats", url, "-o", "yaml")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `--output "yaml": want table or json`)
	code, _, errOut = run("dlq", "list", "--nats", url, "--since", "yesterday")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `--since "yesterday": want a duration back from now`)
}

func TestDLQRedriveFiltersAndDryRun(t *testing.T) {
	t.Parallel()
	url, js, cfg := dlqEnv(t)

	// A dry run needs no actor, lists what a redrive would do, and changes
	// nothing: no task, no audit record, every dead letter still there.
	code, out, errOut := run("dlq", "redrive", "--nats", url, "--tenant", "acme", "--since", "24h", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "would redrive 2: t1 orders/o.2")
	require.Contains(t, out, "would redrive 3: t2 orders/o.3")
	require.Contains(t, out, "skipped 5: ingest invalid-task, no task to redrive")
	require.NotContains(t, out, "would redrive 1:", "older than --since")
	require.NotContains(t, out, "would redrive 4:", "another tenant")
	require.Contains(t, out, "would redrive 2 records; skipped 1 without a task")
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, dlqSeqs(t, js, cfg))
	require.Zero(t, taskCount(t, js, cfg))
	require.Empty(t, auditRecords(t, js, cfg))

	code, _, errOut = run("dlq", "redrive", "--nats", url, "--tenant", "acme", "--since", "24h")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `required flag(s) "actor", "reason" not set (not needed with --dry-run)`)

	code, _, errOut = run("dlq", "redrive", "--nats", url, "--actor", "ada", "--reason", "r")
	require.Equal(t, 1, code, "no records named")
	require.Contains(t, errOut, "name the records")
	code, _, errOut = run("dlq", "redrive", "--nats", url, "--actor", "ada", "--reason", "r", "--tenant", "acme", "2")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not both")

	code, out, errOut = run("dlq", "redrive", "--nats", url, "--tenant", "acme", "--since", "24h", "--actor", "ada", "--reason", "receiver fixed")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "redrove 2: t1 orders/o.2")
	require.Contains(t, out, "redrove 3: t2 orders/o.3")
	require.Contains(t, out, "redrove 2 records; skipped 1 without a task")
	require.Equal(t, []uint64{1, 4, 5}, dlqSeqs(t, js, cfg))
	require.EqualValues(t, 2, taskCount(t, js, cfg))
	recs := auditRecords(t, js, cfg)
	require.Len(t, recs, 2, "one audit record per redriven record")
	for i, seq := range []string{"seq 2 ", "seq 3 "} {
		require.Equal(t, audit.ActionRedrive, recs[i].Action)
		require.Equal(t, "acme", recs[i].Tenant)
		require.Equal(t, "ada", recs[i].Actor)
		require.Equal(t, "receiver fixed", recs[i].Reason)
		require.Contains(t, recs[i].Key, seq)
	}

	// Named records are checked before any is redriven.
	code, _, errOut = run("dlq", "redrive", "--nats", url, "--actor", "ada", "--reason", "r", "4", "5")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "record 5 (ingest invalid-task): dead letter holds no task to redrive")
	code, _, errOut = run("dlq", "redrive", "--nats", url, "--actor", "ada", "--reason", "r", "4", "2")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "holds no record 2 (redriven or purged already")
	require.Equal(t, []uint64{1, 4, 5}, dlqSeqs(t, js, cfg))
	require.Len(t, auditRecords(t, js, cfg), 2)

	code, out, errOut = run("dlq", "redrive", "--nats", url, "--all", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "would redrive 2 records; skipped 1")
}

func TestDLQPurge(t *testing.T) {
	t.Parallel()
	url, js, cfg := dlqEnv(t)

	code, _, errOut := run("dlq", "purge", "--nats", url, "--reason-code", "http-4xx", "--actor", "ada", "--reason", "r")
	require.Equal(t, 1, code, "neither --yes nor --dry-run")
	require.Contains(t, errOut, "add --yes to purge, or --dry-run")

	code, out, errOut := run("dlq", "purge", "--nats", url, "--reason-code", "http-4xx", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, `would purge 1: delivery http-4xx acme/t1 orders/o.1
would purge 2: delivery http-4xx acme/t1 orders/o.2
would purge 4: delivery http-4xx beta/t1 orders/o.4
would purge 3 records
`, out)
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, dlqSeqs(t, js, cfg))
	require.Empty(t, auditRecords(t, js, cfg))

	code, _, errOut = run("dlq", "purge", "--nats", url, "--reason-code", "http-4xx", "--yes")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `required flag(s) "actor", "reason" not set`)

	code, out, errOut = run("dlq", "purge", "--nats", url, "--reason-code", "http-4xx", "--since", "24h", "--yes", "--actor", "ada", "--reason", "test data")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "purged 2: delivery http-4xx acme/t1")
	require.Contains(t, out, "purged 4: delivery http-4xx beta/t1")
	require.Contains(t, out, "purged 2 records")
	require.Equal(t, []uint64{1, 3, 5}, dlqSeqs(t, js, cfg))
	require.Zero(t, taskCount(t, js, cfg), "purging delivers nothing")
	recs := auditRecords(t, js, cfg)
	require.Len(t, recs, 2, "one audit record per tenant")
	require.Equal(t, audit.ActionPurge, recs[0].Action)
	require.Equal(t, "acme", recs[0].Tenant)
	require.Equal(t, "beta", recs[1].Tenant)
	require.Equal(t, "ada", recs[0].Actor)
	require.Equal(t, "test data", recs[0].Reason)
	require.Contains(t, recs[0].Key, "TRIGGERS_DLQ seq 2 (1 record; selected: reason-code=http-4xx since=")

	code, out, errOut = run("dlq", "purge", "--nats", url, "5", "1", "--yes", "--actor", "ada", "--reason", "by hand")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "purged 2 records")
	require.Equal(t, []uint64{3}, dlqSeqs(t, js, cfg))
	recs = auditRecords(t, js, cfg)
	require.Len(t, recs, 3)
	require.Equal(t, "TRIGGERS_DLQ seq 1, 5 (2 records; selected: by seq)", recs[2].Key)

	// --all is one stream purge, bounded by what was listed.
	require.NoError(t, deadletter.NewPublisher(js, cfg.DeadLetterSubject).Publish(context.Background(),
		deadletter.Record{ID: "late", Stage: deadletter.StageWatch, Reason: "undecodable-change", Tenant: "acme"}))
	code, out, errOut = run("dlq", "purge", "--nats", url, "--all", "--yes", "--actor", "ada", "--reason", "reset")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "purged 3: delivery attempts-exhausted acme/t2")
	require.Contains(t, out, "purged 6: watch undecodable-change acme/_ _/_")
	require.Contains(t, out, "purged 2 records")
	require.Empty(t, dlqSeqs(t, js, cfg))
	recs = auditRecords(t, js, cfg)
	require.Equal(t, "TRIGGERS_DLQ seq 3, 6 (2 records; selected: all)", recs[3].Key)

	code, out, errOut = run("dlq", "purge", "--nats", url, "--all", "--yes", "--actor", "ada", "--reason", "again")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "no dead letters selected; nothing to purge\n", out)
}

// TestMissingStreamIsASentence runs the reading commands against a NATS
// server without Triggerflow's streams.
func TestMissingStreamIsASentence(t *testing.T) {
	t.Parallel()
	url := testenv.NATS(t).URL()
	for _, args := range [][]string{
		{"dlq", "list"},
		{"dlq", "list", "-o", "json"},
		{"dlq", "show", "3"},
		{"dlq", "redrive", "3", "--dry-run"},
		{"dlq", "purge", "--all", "--dry-run"},
		{"audit", "list"},
	} {
		code, out, errOut := run(append(args, "--nats", url)...)
		require.Equal(t, 1, code, args)
		require.Empty(t, out, args)
		stream, role := "TRIGGERS_DLQ", "dead-letter"
		if args[0] == "audit" {
			stream, role = "TRIGGERS_AUDIT", "audit"
		}
		require.Equal(t, fmt.Sprintf("error: the %s stream %q does not exist on %s. Check --stream and --nats; the watcher, ingest and worker create the streams when they start (nats.provisioning: create), or your infrastructure does (verify)\n", role, stream, url), errOut, args)
	}

	// The audit stream is the one missing: the redrive says so and
	// changes nothing.
	ctx := context.Background()
	ns := testenv.NATS(t)
	cfg := config.NATS{}.WithDefaults()
	js := ns.JetStream(t, cfg.Streams())
	require.NoError(t, js.DeleteStream(ctx, cfg.AuditStream))
	task := &trigger.DeliveryTask{V: trigger.TaskVersion, EventID: "evt_1", Tenant: "acme", TriggerID: "t1", Collection: "orders", DocKey: "o.1",
		Type: trigger.EventCreate, Position: "p1", CommitTime: time.Now().UTC(), URL: "https://hooks.example.com/x"}
	body, err := task.Encode()
	require.NoError(t, err)
	require.NoError(t, deadletter.NewPublisher(js, cfg.DeadLetterSubject).Publish(ctx, deadletter.Record{ID: "evt_1", Stage: deadletter.StageDelivery, Reason: "http-4xx", Tenant: "acme", Task: body}))
	code, _, errOut := run("dlq", "redrive", "1", "--nats", ns.URL(), "--actor", "ada", "--reason", "r")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `the audit stream "TRIGGERS_AUDIT" does not exist on `+ns.URL()+". Check --audit-stream and --nats")
	require.Contains(t, errOut, "record 1 not redriven")
	require.Equal(t, []uint64{1}, dlqSeqs(t, js, cfg))
}
