package evaluator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/condition"
	"github.com/triggerflow/triggerflow/evaluator"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var commit = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// env is an evaluator with its own registry and a log recorder.
type env struct {
	reg  *prometheus.Registry
	logs *logRecorder
	ev   *evaluator.Evaluator
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), logs: &logRecorder{}}
	var err error
	e.ev, err = evaluator.New(evaluator.Config{Logger: slog.New(e.logs.handler()), Registerer: e.reg})
	require.NoError(t, err)
	return e
}

// compile validates ts like the engine does and indexes the result.
func (e *env) compile(t testing.TB, ts ...*trigger.Trigger) *evaluator.Index {
	t.Helper()
	c, err := condition.NewCompiler(0)
	require.NoError(t, err)
	v, err := trigger.NewValidator("acme", trigger.DefaultLimits(), c)
	require.NoError(t, err)
	progs, err := v.Validate(ts)
	require.NoError(t, err)
	ix, err := e.ev.Compile(ts, progs)
	require.NoError(t, err)
	return ix
}

func trig(id, collection, cond string, events ...trigger.EventType) *trigger.Trigger {
	return &trigger.Trigger{ID: id, Tenant: "acme", Collection: collection, Condition: cond, Events: events, URL: "https://hooks.example/" + id}
}

func change(collection string, typ trigger.EventType, before, after string) *watcher.Change {
	c := &watcher.Change{Tenant: "acme", Collection: collection, DocKey: "k1", Type: typ, Position: "0000000042", CommitTime: commit}
	if before != "" {
		c.Before = json.RawMessage(before)
	}
	if after != "" {
		c.After = json.RawMessage(after)
	}
	return c
}

func ids(ms []evaluator.Match) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Trigger.ID)
	}
	return out
}

func TestMatchCollectionsEventsAndConditions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := e.compile(t,
		trig("all-users", "users", ""),
		trig("user-created", "users", "", trigger.EventCreate),
		trig("vip", "users", `event.document.tier == "vip"`),
		trig("members", "chats/*/members", ""),
		trig("any-top", "*", ""),
		trig("prefix", "user*", ""),
		trig("deep", "*/*/members", `event.docKey == "k1"`),
		trig("orders", "orders", ""),
	)
	require.Equal(t, 8, ix.Len())

	for _, tc := range []struct {
		name string
		c    *watcher.Change
		want []string
	}{
		{"create plain", change("users", trigger.EventCreate, "", `{"tier":"std"}`), []string{"all-users", "user-created", "any-top", "prefix"}},
		{"update vip", change("users", trigger.EventUpdate, `{}`, `{"tier":"vip"}`), []string{"all-users", "vip", "any-top", "prefix"}},
		{"nested", change("chats/42/members", trigger.EventCreate, "", `{}`), []string{"members", "deep"}},
		{"nested other parent", change("rooms/7/members", trigger.EventDelete, `{}`, ""), []string{"deep"}},
		{"wrong depth", change("chats/42", trigger.EventCreate, "", `{}`), []string{}},
		{"prefix glob", change("userprofiles", trigger.EventUpdate, `{}`, `{}`), []string{"any-top", "prefix"}},
		{"unwatched", change("invoices/1/lines/2", trigger.EventCreate, "", `{}`), []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ix.Match(context.Background(), tc.c)
			require.NoError(t, err)
			require.Equal(t, tc.want, ids(got))
		})
	}
	require.Equal(t, 1.0, testenv.Metric(t, e.reg, "triggerflow_evaluation_matches_total", prometheus.Labels{"tenant": "acme", "collection": "users", "trigger": "vip"}))
	require.Equal(t, 2.0, testenv.Metric(t, e.reg, "triggerflow_evaluation_events_total", prometheus.Labels{"tenant": "acme", "collection": "_unwatched"}))
	require.Equal(t, 1.0, testenv.Metric(t, e.reg, "triggerflow_evaluation_events_total", prometheus.Labels{"tenant": "acme", "collection": "chats/*/members"}),
		"a collection counts under the first pattern that watches it")
	require.Equal(t, 1.0, testenv.Metric(t, e.reg, "triggerflow_evaluation_events_total", prometheus.Labels{"tenant": "acme", "collection": "*/*/members"}))
}

func TestMatchOtherTenantNeverFires(t *testing.T) {
	t.Parallel()
	ix := newEnv(t).compile(t, trig("a", "users", ""))
	c := change("users", trigger.EventCreate, "", `{}`)
	c.Tenant = "globex"
	got, err := ix.Match(context.Background(), c)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestConditionSeesImagesAndCommitTime(t *testing.T) {
	t.Parallel()
	ix := newEnv(t).compile(t,
		trig("deleted-active", "users", `event.type == "delete" && event.before.status == "active" && !has(event.document.status)`),
		trig("became-paid", "users", `has(event.before.status) && event.before.status != "paid" && event.document.status == "paid"`),
		trig("recent", "users", `event.timestamp > timestamp("2025-01-01T00:00:00Z") && event.collection == "users" && event.tenant == "acme"`),
		trig("big", "users", `event.document.total > 100`),
	)
	for _, tc := range []struct {
		name string
		c    *watcher.Change
		want []string
	}{
		{"delete sees before, empty document", change("users", trigger.EventDelete, `{"status":"active"}`, ""), []string{"deleted-active", "recent"}},
		{"update transition", change("users", trigger.EventUpdate, `{"status":"new"}`, `{"status":"paid","total":250}`), []string{"became-paid", "recent", "big"}},
		{"create has no before", change("users", trigger.EventCreate, "", `{"status":"paid","total":3}`), []string{"recent"}},
		{"json null before", change("users", trigger.EventUpdate, `null`, `{"status":"paid"}`), []string{"recent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ix.Match(context.Background(), tc.c)
			require.NoError(t, err)
			require.Equal(t, tc.want, ids(got))
		})
	}
}

func TestRuntimeErrorIsNoMatchCountedAndLoggedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := e.compile(t,
		trig("fragile", "users", `event.document.profile.age > 18`),
		trig("robust", "users", ""),
	)
	const n = 50
	for range n {
		got, err := ix.Match(context.Background(), change("users", trigger.EventCreate, "", `{"name":"x"}`))
		require.NoError(t, err)
		require.Equal(t, []string{"robust"}, ids(got))
	}
	require.Equal(t, float64(n), testenv.Metric(t, e.reg, "triggerflow_evaluation_errors_total", prometheus.Labels{"tenant": "acme", "collection": "users", "trigger": "fragile"}))
	warns := e.logs.messages(slog.LevelWarn)
	require.Len(t, warns, 1, "one warning per trigger per interval, not one per event")
	require.Contains(t, warns[0], "triggerId=fragile")
	require.Contains(t, warns[0], "tenant=acme")

	// A reload keeps the rate limit: the same failing trigger stays quiet.
	ix2 := e.compile(t, trig("fragile", "users", `event.document.profile.age > 18`))
	_, err := ix2.Match(context.Background(), change("users", trigger.EventCreate, "", `{}`))
	require.NoError(t, err)
	require.Len(t, e.logs.messages(slog.LevelWarn), 1)
	require.Equal(t, float64(n+1), testenv.Metric(t, e.reg, "triggerflow_evaluation_errors_total", prometheus.Labels{"tenant": "acme", "collection": "users", "trigger": "fragile"}))
}

func TestNonObjectDocumentIsEmptyAndCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := e.compile(t,
		trig("no-cond", "users", ""),
		trig("type-only", "users", `event.type == "update"`),
		trig("needs-field", "users", `has(event.document.x)`),
	)
	for _, doc := range []string{`[1,2]`, `"str"`, `42`, `{"x":`, `true`} {
		got, err := ix.Match(context.Background(), change("users", trigger.EventUpdate, "", doc))
		require.NoError(t, err, doc)
		require.Equal(t, []string{"no-cond", "type-only"}, ids(got), doc)
	}
	require.Equal(t, 5.0, testenv.Metric(t, e.reg, "triggerflow_evaluation_invalid_documents_total", prometheus.Labels{"tenant": "acme", "collection": "users"}))
	require.Len(t, e.logs.messages(slog.LevelWarn), 1)
}

func TestMatchReturnsContextErrorWhenInterrupted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := e.compile(t, trig("scan", "users", `event.document.items.all(x, x >= 0)`))
	items := make([]string, 5000)
	for i := range items {
		items[i] = "1"
	}
	c := change("users", trigger.EventCreate, "", `{"items":[`+strings.Join(items, ",")+`]}`)

	got, err := ix.Match(context.Background(), c)
	require.NoError(t, err)
	require.Equal(t, []string{"scan"}, ids(got))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ix.Match(ctx, c)
	require.ErrorIs(t, err, context.Canceled, "an interrupted condition must not read as no match")
	require.Equal(t, 0.0, testenv.Metric(t, e.reg, "triggerflow_evaluation_errors_total", prometheus.Labels{"tenant": "acme", "collection": "users", "trigger": "scan"}))
}

func TestTaskIsDeterministic(t *testing.T) {
	t.Parallel()
	tr := trig("t1", "users", "")
	tr.Version = "v7"
	tr.Headers = map[string]string{"X-Team": "blue"}
	tr.SecretsRef = "hook-secret"
	tr.RetryPolicy = &trigger.RetryPolicy{MaxAttempts: 3}
	tr.Timeout = trigger.Duration(2 * time.Second)
	tr.OnFailure = trigger.FailureBlock
	ix := newEnv(t).compile(t, tr)

	c := change("users", trigger.EventUpdate, `{"a":1}`, `{"a":2}`)
	ms, err := ix.Match(context.Background(), c)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	task := ms[0].Task(c)
	require.NoError(t, task.Validate())
	require.Equal(t, trigger.NewEventID("acme", "t1", "users", "k1", "0000000042"), task.EventID)
	require.Equal(t, task, ms[0].Task(c), "the same change yields the same task")
	require.Equal(t, &trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: task.EventID, Tenant: "acme", TriggerID: "t1", TriggerVersion: "v7",
		Collection: "users", CollectionPattern: "users", DocKey: "k1", Type: trigger.EventUpdate,
		Before: json.RawMessage(`{"a":1}`), After: json.RawMessage(`{"a":2}`),
		Position: "0000000042", CommitTime: commit, URL: "https://hooks.example/t1",
		Headers: map[string]string{"X-Team": "blue"}, SecretsRef: "hook-secret",
		RetryPolicy: trigger.RetryPolicy{MaxAttempts: 3}, Timeout: trigger.Duration(2 * time.Second),
		OnFailure: trigger.FailureBlock,
	}, task)
}

func TestCompileRejectsWhatItCannotIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := condition.NewCompiler(0)
	require.NoError(t, err)
	always, err := c.Compile("")
	require.NoError(t, err)

	_, err = e.ev.Compile([]*trigger.Trigger{trig("a", "users", "")}, nil)
	require.ErrorIs(t, err, evaluator.ErrInvalidSet)
	_, err = e.ev.Compile([]*trigger.Trigger{nil}, []*condition.Program{always})
	require.ErrorIs(t, err, evaluator.ErrInvalidSet)
	_, err = e.ev.Compile([]*trigger.Trigger{trig("a", "users/[", "")}, []*condition.Program{always})
	require.ErrorIs(t, err, evaluator.ErrInvalidSet)

	ix, err := e.ev.Compile(nil, nil)
	require.NoError(t, err, "an empty set is valid and matches nothing")
	got, err := ix.Match(context.Background(), change("users", trigger.EventCreate, "", `{}`))
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestEvaluatorsShareARegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	for range 2 {
		_, err := evaluator.New(evaluator.Config{Registerer: reg})
		require.NoError(t, err, "one engine per tenant may share the process registry")
	}
}

func TestMatchIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	ix := newEnv(t).compile(t,
		trig("vip", "users", `event.document.tier == "vip"`),
		trig("members", "chats/*/members", `int(event.document.n) % 2 == 0`),
		trig("flaky", "users", `event.document.missing`),
	)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c := change(fmt.Sprintf("chats/%d/members", g), trigger.EventCreate, "", fmt.Sprintf(`{"n":%d}`, i))
				got, err := ix.Match(context.Background(), c)
				if err != nil || (i%2 == 0) != (len(got) == 1) {
					t.Errorf("goroutine %d event %d: got %v, %v", g, i, ids(got), err)
					return
				}
				if _, err := ix.Match(context.Background(), change("users", trigger.EventUpdate, "", `{"tier":"vip"}`)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// logRecorder is an slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) handler() slog.Handler { return recHandler{rec: l} }

type recHandler struct {
	rec   *logRecorder
	attrs []slog.Attr
}

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recHandler) WithGroup(string) slog.Handler            { return h }
func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{rec: h.rec, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h recHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	h.rec.records = append(h.rec.records, r)
	return nil
}

// messages renders the records at level as "msg k=v k=v".
func (l *logRecorder) messages(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level != level {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		out = append(out, b.String())
	}
	return out
}
