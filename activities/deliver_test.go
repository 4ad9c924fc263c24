package activities_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Two secrets: a rotation in progress. Test values only.
const (
	oldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newSecret = "whsec_c2VjcmV0LXJvdGF0aW9uLWtleS0wMDAwMDAwMDAx"
	testToken = "tok_live_9f8e7d6c5b4a"
)

type secrets struct {
	err error
}

func (s secrets) Resolve(_ context.Context, tenant, ref string) ([]signature.Secret, error) {
	if s.err != nil {
		return nil, s.err
	}
	if tenant != "acme" || ref != "orders-secret" {
		return nil, errors.New("unknown secret")
	}
	var out []signature.Secret
	for _, v := range []string{newSecret, oldSecret} {
		sec, err := signature.ParseSecret(v)
		if err != nil {
			return nil, err
		}
		out = append(out, sec)
	}
	return out, nil
}

type tokens struct{ err error }

func (s tokens) Token(context.Context, string) (string, error) { return testToken, s.err }

type fixture struct {
	rec  *testenv.WebhookRecorder
	acts *activities.Activities
	env  *testsuite.TestActivityEnvironment
	logs *testenv.LogBuffer
	reg  *prometheus.Registry
	dlq  *testenv.Records[deadletter.Record]
}

func newFixture(t *testing.T, cfg activities.Config, deps activities.Deps) *fixture {
	t.Helper()
	f := &fixture{rec: testenv.Recorder(t), logs: &testenv.LogBuffer{}, reg: prometheus.NewRegistry(), dlq: &testenv.Records[deadletter.Record]{}}
	cfg.Egress.AllowLoopback = true
	if deps.Secrets == nil {
		deps.Secrets = secrets{}
	}
	if deps.Tokens == nil {
		deps.Tokens = tokens{}
	}
	cfg.DeadLetters = f.dlq
	cfg.Logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registerer = f.reg
	acts, err := activities.New(cfg, deps)
	require.NoError(t, err)
	f.acts = acts
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivityWithOptions(acts, activity.RegisterOptions{Name: activities.Prefix})
	return f
}

func (f *fixture) task(id string) trigger.DeliveryTask {
	return trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: id, Tenant: "acme", TriggerID: "orders-hook", TriggerVersion: "v7",
		Collection: "orders", DocKey: "o/1", Type: trigger.EventUpdate,
		Before: json.RawMessage(`{"total":1}`), After: json.RawMessage(`{"total":2}`),
		Position: "42", CommitTime: time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC),
		URL:     f.rec.URL() + "/hooks/orders?key=path-credential",
		Headers: map[string]string{"X-Team": "billing"}, SecretsRef: "orders-secret",
		SubjectHashed: true,
	}
}

// failFirst makes the receiver answer the first request with status and
// every later one with 200.
func (f *fixture) failFirst(status int) {
	f.rec.Respond(func(r *testenv.Request) testenv.Response {
		if r.Seq == 0 {
			return testenv.Response{Status: status}
		}
		return testenv.Response{}
	})
}

// deliver runs the Deliver activity the way a worker does.
func (f *fixture) deliver(t *testing.T, task trigger.DeliveryTask) (activities.Result, error) {
	t.Helper()
	v, err := f.env.ExecuteActivity(activities.DeliverName, task)
	if err != nil {
		return activities.Result{}, err
	}
	var res activities.Result
	require.NoError(t, v.Get(&res))
	return res, nil
}

func failure(t *testing.T, err error) (*temporal.ApplicationError, activities.Failure) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	var f activities.Failure
	require.NoError(t, appErr.Details(&f))
	return appErr, f
}

// verifyStandardWebhook checks webhook-signature straight from the
// Standard Webhooks spec, without the signature package: each listed secret
// must have produced one "v1,<base64 HMAC-SHA256(key, id.ts.body)>" entry.
func verifyStandardWebhook(t *testing.T, h http.Header, body []byte, secrets ...string) {
	t.Helper()
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	entries := strings.Fields(h.Get("webhook-signature"))
	require.Len(t, entries, len(secrets))
	for _, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		require.NoError(t, err)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(body)
		require.Contains(t, entries, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
}

func TestDeliverSendsSignedStandardWebhook(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	task := f.task("evt_1")
	before := time.Now().Unix()
	res, err := f.deliver(t, task)
	require.NoError(t, err)
	require.Equal(t, activities.Result{EventID: "evt_1", Status: 200, LatencyMS: res.LatencyMS}, res)

	reqs := f.rec.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/hooks/orders", r.Path)
	require.Equal(t, "key=path-credential", r.Query)
	require.Equal(t, "application/json", r.Headers.Get("Content-Type"))
	require.Equal(t, "Bearer "+testToken, r.Headers.Get("Authorization"))
	require.Equal(t, "billing", r.Headers.Get("X-Team"))
	require.Equal(t, "evt_1", r.Headers.Get("webhook-id"))
	ts, err := strconv.ParseInt(r.Headers.Get("webhook-timestamp"), 10, 64)
	require.NoError(t, err)
	require.GreaterOrEqual(t, ts, before)
	require.LessOrEqual(t, ts, time.Now().Unix())
	verifyStandardWebhook(t, r.Headers, r.Body, newSecret, oldSecret)

	var got map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Equal(t, map[string]any{
		"type":      "document.updated",
		"timestamp": "2026-03-04T05:06:07.89Z",
		"data": map[string]any{
			"tenant": "acme", "triggerId": "orders-hook", "triggerVersion": "v7", "collection": "orders",
			"docKey": "o/1", "eventId": "evt_1", "before": map[string]any{"total": 1.0},
			"after": map[string]any{"total": 2.0}, "subjectHashed": true, "commitTime": "2026-03-04T05:06:07.89Z",
		},
	}, got)
}

func TestEventTypesAndMissingImages(t *testing.T) {
	t.Parallel()
	for typ, want := range map[trigger.EventType]string{
		trigger.EventCreate: "document.created", trigger.EventUpdate: "document.updated", trigger.EventDelete: "document.deleted",
	} {
		task := trigger.DeliveryTask{EventID: "e", Type: typ}
		body, err := activities.Body(&task)
		require.NoError(t, err)
		var env struct {
			Type string
			Data map[string]json.RawMessage
		}
		require.NoError(t, json.Unmarshal(body, &env))
		require.Equal(t, want, env.Type)
		require.Equal(t, "null", string(env.Data["before"]), "an absent image is an explicit null")
	}
}

func TestRetriesKeepWebhookIDAndBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	f.failFirst(503)
	_, err := f.deliver(t, f.task("evt_2"))
	require.Error(t, err)
	_, err = f.deliver(t, f.task("evt_2"))
	require.NoError(t, err)
	reqs := f.rec.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, reqs[0].Headers.Get("webhook-id"), reqs[1].Headers.Get("webhook-id"))
	require.Equal(t, reqs[0].Body, reqs[1].Body)
	for _, r := range reqs {
		verifyStandardWebhook(t, r.Headers, r.Body, newSecret, oldSecret)
	}
}

func TestDeliverStatusMapping(t *testing.T) {
	t.Parallel()
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name       string
		resp       testenv.Response
		cfg        activities.Config
		typ        string
		retryable  bool
		retryAfter time.Duration // exact, or a lower bound for an HTTP-date
	}{
		{name: "404", resp: testenv.Response{Status: 404}, typ: "HTTP_4XX"},
		{name: "400", resp: testenv.Response{Status: 400}, typ: "HTTP_4XX"},
		{name: "410", resp: testenv.Response{Status: 410}, typ: "HTTP_4XX"},
		{name: "429 Retry-After seconds", resp: testenv.Response{Status: 429, Headers: http.Header{"Retry-After": {"7"}}},
			typ: "HTTP_4XX_RETRYABLE", retryable: true, retryAfter: 7 * time.Second},
		{name: "429 Retry-After date", resp: testenv.Response{Status: 429, Headers: http.Header{"Retry-After": {httpDate}}},
			typ: "HTTP_4XX_RETRYABLE", retryable: true, retryAfter: 80 * time.Second},
		{name: "429 Retry-After capped", resp: testenv.Response{Status: 429, Headers: http.Header{"Retry-After": {"999999"}}},
			cfg: activities.Config{MaxRetryAfter: time.Minute}, typ: "HTTP_4XX_RETRYABLE", retryable: true, retryAfter: time.Minute},
		{name: "408", resp: testenv.Response{Status: 408}, typ: "HTTP_4XX_RETRYABLE", retryable: true},
		{name: "429 not configured retryable", resp: testenv.Response{Status: 429},
			cfg: activities.Config{RetryableStatuses: []int{}}, typ: "HTTP_4XX"},
		{name: "500", resp: testenv.Response{Status: 500}, typ: "HTTP_5XX", retryable: true},
		{name: "503 Retry-After", resp: testenv.Response{Status: 503, Headers: http.Header{"Retry-After": {"3"}}},
			typ: "HTTP_5XX", retryable: true, retryAfter: 3 * time.Second},
		{name: "302", resp: testenv.Response{Status: 302, Headers: http.Header{"Location": {"/elsewhere"}}}, typ: "HTTP_3XX"},
		{name: "301 absolute", resp: testenv.Response{Status: 301, Headers: http.Header{"Location": {"https://other.example.com/x"}}}, typ: "HTTP_3XX"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.cfg, activities.Deps{})
			f.rec.Respond(func(*testenv.Request) testenv.Response { return tc.resp })
			_, err := f.deliver(t, f.task("evt_s"))
			appErr, fl := failure(t, err)
			require.Equal(t, tc.typ, appErr.Type())
			require.Equal(t, !tc.retryable, appErr.NonRetryable())
			require.Equal(t, tc.typ, fl.Type)
			require.Equal(t, tc.retryable, fl.Retryable)
			require.Equal(t, tc.resp.Status, fl.Status)
			require.Equal(t, "evt_s", fl.EventID)
			require.Contains(t, fl.Message, strconv.Itoa(tc.resp.Status))
			require.NotContains(t, fl.Message, "path-credential", "only scheme and host are quoted")
			switch {
			case strings.HasSuffix(tc.name, "date"):
				require.Greater(t, appErr.NextRetryDelay(), tc.retryAfter)
				require.LessOrEqual(t, appErr.NextRetryDelay(), 90*time.Second)
			default:
				require.Equal(t, tc.retryAfter, appErr.NextRetryDelay())
			}
			require.Len(t, f.rec.Requests(), 1, "one request per attempt; redirects are not followed")
		})
	}
}

func TestFailureDetailsKeepStartOfBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	body := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	f.rec.Respond(func(*testenv.Request) testenv.Response { return testenv.Response{Status: 500, Body: body} })
	_, err := f.deliver(t, f.task("evt_b"))
	_, fl := failure(t, err)
	require.Equal(t, string(body[:4096]), fl.Body)
	require.True(t, fl.BodyTruncated)
	require.GreaterOrEqual(t, fl.LatencyMS, int64(0))

	f.rec.Respond(func(*testenv.Request) testenv.Response { return testenv.Response{Status: 500, Body: []byte("short")} })
	_, err = f.deliver(t, f.task("evt_b"))
	_, fl = failure(t, err)
	require.Equal(t, "short", fl.Body)
	require.False(t, fl.BodyTruncated)
}

func TestSecretsAndTokensStayOutOfLogsErrorsAndDetails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	// An echo endpoint hands the request's headers back in its error body.
	f.rec.Respond(func(r *testenv.Request) testenv.Response {
		var b strings.Builder
		_ = r.Headers.Write(&b)
		return testenv.Response{Status: 400, Body: []byte(b.String())}
	})
	_, err := f.deliver(t, f.task("evt_l"))
	_, fl := failure(t, err)
	require.Contains(t, fl.Body, "Bearer [redacted]")

	f.rec.Respond(nil)
	_, err = f.deliver(t, f.task("evt_ok"))
	require.NoError(t, err)

	var leaked []string
	for _, s := range []string{oldSecret, newSecret} {
		leaked = append(leaked, s, strings.TrimPrefix(s, "whsec_"))
	}
	leaked = append(leaked, testToken)
	out := f.logs.String()
	require.NotEmpty(t, out)
	for _, s := range leaked {
		require.NotContains(t, out, s)
		require.NotContains(t, err2text(err), s)
		require.NotContains(t, fl.Message+fl.Body, s)
	}
	require.NotContains(t, out, "path-credential", "URLs are logged by host only")
}

func err2text(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSecretAndTokenFailuresAreRetryable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		deps activities.Deps
		typ  string
	}{
		{"secret store down", activities.Deps{Secrets: secrets{err: errors.New("vault sealed")}}, activities.TypeSecret},
		{"token source down", activities.Deps{Tokens: tokens{err: errors.New("idp timeout")}}, activities.TypeToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, activities.Config{}, tc.deps)
			_, err := f.deliver(t, f.task("evt_x"))
			appErr, fl := failure(t, err)
			require.Equal(t, tc.typ, appErr.Type())
			require.False(t, appErr.NonRetryable())
			require.True(t, fl.Retryable)
			require.Empty(t, f.rec.Requests(), "nothing unsigned or unauthenticated is sent")
		})
	}

	// A task naming a secret the resolver does not know is not sent
	// unsigned either.
	f := newFixture(t, activities.Config{}, activities.Deps{})
	tk := f.task("evt_y")
	tk.SecretsRef = "missing"
	_, err := f.deliver(t, tk)
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeSecret, appErr.Type())

	// No secretsRef: sent unsigned, but with id and timestamp.
	tk.SecretsRef = ""
	_, err = f.deliver(t, tk)
	require.NoError(t, err)
	r := f.rec.Requests()[0]
	require.Empty(t, r.Headers.Get("webhook-signature"))
	require.Equal(t, "evt_y", r.Headers.Get("webhook-id"))
}

func TestTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	f.rec.Respond(func(*testenv.Request) testenv.Response { return testenv.Response{Delay: time.Minute} })
	tk := f.task("evt_t")
	tk.Timeout = trigger.Duration(200 * time.Millisecond)
	_, err := f.deliver(t, tk)
	appErr, fl := failure(t, err)
	require.Equal(t, activities.TypeTimeout, appErr.Type())
	require.True(t, fl.Retryable)
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{ConnectRetries: -1}, activities.Deps{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now
	tk := f.task("evt_n")
	tk.URL = "http://" + addr + "/x"
	_, err = f.deliver(t, tk)
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeNetwork, appErr.Type())
	require.False(t, appErr.NonRetryable())
}

func TestLoopbackForbiddenUnlessAllowed(t *testing.T) {
	t.Parallel()
	rec := testenv.Recorder(t)
	acts, err := activities.New(activities.Config{DeadLetters: &testenv.Records[deadletter.Record]{}}, activities.Deps{})
	require.NoError(t, err)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(acts, activity.RegisterOptions{Name: activities.Prefix})
	tk := trigger.DeliveryTask{V: 1, EventID: "evt_f", Tenant: "acme", Type: trigger.EventCreate, URL: rec.URL() + "/x"}
	_, err = env.ExecuteActivity(activities.DeliverName, tk)
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeForbidden, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Empty(t, rec.Requests())
}

func TestOversizeAndInvalidTasksAreNotRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{MaxBodyBytes: 1024}, activities.Deps{})
	big := f.task("evt_big")
	big.After = json.RawMessage(`"` + strings.Repeat("x", 2000) + `"`)
	_, err := f.deliver(t, big)
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeOversize, appErr.Type())
	require.True(t, appErr.NonRetryable())

	bad := f.task("evt_u")
	bad.URL = "ftp://example.com/x"
	_, err = f.deliver(t, bad)
	appErr, _ = failure(t, err)
	require.Equal(t, activities.TypeInvalid, appErr.Type())

	dotted := f.task("evt.with.dots")
	_, err = f.deliver(t, dotted)
	appErr, _ = failure(t, err)
	require.Equal(t, activities.TypeInvalid, appErr.Type(), "a webhook-id must not contain '.'")
	require.Empty(t, f.rec.Requests())
}

func TestDeliverBatchStopsAtFirstFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	f.rec.Respond(func(r *testenv.Request) testenv.Response {
		if r.Headers.Get("webhook-id") == "evt_b2" {
			return testenv.Response{Status: 502, Headers: http.Header{"Retry-After": {"4"}}}
		}
		return testenv.Response{}
	})
	var beats []int
	var mu sync.Mutex
	f.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		var n int
		if details.Get(&n) == nil {
			beats = append(beats, n)
		}
	})
	v, err := f.env.ExecuteActivity(activities.DeliverBatchName,
		[]trigger.DeliveryTask{f.task("evt_b1"), f.task("evt_b2"), f.task("evt_b3")})
	require.NoError(t, err)
	var res activities.BatchResult
	require.NoError(t, v.Get(&res))
	require.Equal(t, 1, res.Delivered)
	require.Len(t, res.Results, 1)
	require.NotNil(t, res.Failure)
	require.Equal(t, "evt_b2", res.Failure.EventID)
	require.Equal(t, activities.TypeHTTP5xx, res.Failure.Type)
	require.Equal(t, 4*time.Second, res.Failure.RetryAfter())

	reqs := f.rec.Requests()
	require.Len(t, reqs, 2, "nothing after the failure is sent")
	require.Equal(t, "evt_b1", reqs[0].Headers.Get("webhook-id"))
	for _, r := range reqs {
		verifyStandardWebhook(t, r.Headers, r.Body, newSecret, oldSecret)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{1}, beats, "progress is heartbeated")
}

func TestDeadLetterPublishes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	rec := deadletter.Record{ID: "evt_d", Stage: deadletter.StageDelivery, Reason: "http-4xx", Tenant: "acme", Collection: "orders", EventID: "evt_d"}
	_, err := f.env.ExecuteActivity(activities.DeadLetterName, rec)
	require.NoError(t, err)
	require.Equal(t, []deadletter.Record{rec}, f.dlq.All())

	f.dlq.Fail(errors.New("nats: timeout"))
	_, err = f.env.ExecuteActivity(activities.DeadLetterName, rec)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.False(t, appErr.NonRetryable(), "an unavailable stream is retried")

	f.dlq.Fail(deadletter.ErrInvalidRecord)
	_, err = f.env.ExecuteActivity(activities.DeadLetterName, rec)
	require.ErrorAs(t, err, &appErr)
	require.True(t, appErr.NonRetryable())
}

// series gathers reg into "name{label=value,…}" → value, labels sorted.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			out[fam.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{}, activities.Deps{})
	f.failFirst(500)
	_, _ = f.deliver(t, f.task("evt_m"))
	_, err := f.deliver(t, f.task("evt_m"))
	require.NoError(t, err)

	// The fixture's tasks travelled on a hashed subject; no label holds an
	// event id.
	require.Equal(t, map[string]float64{
		"triggerflow_webhook_attempts_total{collection=orders,outcome=HTTP_5XX,subject_hashed=true,tenant=acme}": 1,
		"triggerflow_webhook_attempts_total{collection=orders,outcome=success,subject_hashed=true,tenant=acme}":  1,
		"triggerflow_webhook_retries_total{outcome=HTTP_5XX,tenant=acme}":                                        1,
		"triggerflow_delivery_tasks_total{collection=orders,subject_hashed=true,tenant=acme}":                    1,
		"triggerflow_delivery_lag_seconds{collection=orders,subject_hashed=true,tenant=acme}":                    1,
		"triggerflow_webhook_attempt_duration_seconds{collection=orders,tenant=acme}":                            2,
	}, series(t, f.reg))
}

// Every attempt is a retry or finishes its task; which one follows the
// deciders: Temporal's retry policy for Deliver, the task's maxAttempts
// (or the worker's default) for a batch's first attempt.
func TestRetriesAndFinishedTasksAreCounted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, activities.Config{DefaultMaxAttempts: 1}, activities.Deps{})
	f.rec.Respond(func(r *testenv.Request) testenv.Response {
		switch r.Headers.Get("webhook-id") {
		case "evt_gone":
			return testenv.Response{Status: 404}
		case "evt_ok":
			return testenv.Response{}
		}
		return testenv.Response{Status: 503}
	})
	batch := func(tk trigger.DeliveryTask) {
		t.Helper()
		_, err := f.env.ExecuteActivity(activities.DeliverBatchName, []trigger.DeliveryTask{tk})
		require.NoError(t, err)
	}
	plain := f.task("evt_once") // no maxAttempts: the worker's default of 1 ends it
	plain.SubjectHashed = false
	batch(plain)
	own := f.task("evt_more") // its own policy retries it
	own.RetryPolicy.MaxAttempts = 3
	batch(own)
	batch(f.task("evt_gone")) // a 404 is final
	batch(f.task("evt_ok"))

	got := series(t, f.reg)
	require.InDelta(t, 1, got["triggerflow_webhook_retries_total{outcome=HTTP_5XX,tenant=acme}"], 0)
	require.InDelta(t, 1, got["triggerflow_delivery_tasks_total{collection=orders,subject_hashed=false,tenant=acme}"], 0)
	require.InDelta(t, 2, got["triggerflow_delivery_tasks_total{collection=orders,subject_hashed=true,tenant=acme}"], 0)
	var attempts, rest float64
	for name, v := range got {
		switch {
		case strings.HasPrefix(name, "triggerflow_webhook_attempts_total{"):
			attempts += v
		case strings.HasPrefix(name, "triggerflow_webhook_retries_total{"), strings.HasPrefix(name, "triggerflow_delivery_tasks_total{"):
			rest += v
		}
	}
	require.InDelta(t, attempts, rest, 0, "every attempt is a retry or a finished task")
}

// tlsReceiver is an HTTPS receiver whose certificate only its own client
// trusts, and that counts its requests.
func tlsReceiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var got atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestInjectedHTTPClientIsUsed(t *testing.T) {
	t.Parallel()
	srv, got := tlsReceiver(t)
	tk := trigger.DeliveryTask{V: 1, EventID: "evt_tls", Tenant: "acme", Type: trigger.EventCreate, URL: srv.URL + "/hook"}
	run := func(deps activities.Deps) error {
		acts, err := activities.New(activities.Config{Egress: egress.Policy{AllowLoopback: true}, ConnectRetries: -1, DeadLetters: &testenv.Records[deadletter.Record]{}}, deps)
		require.NoError(t, err)
		var s testsuite.WorkflowTestSuite
		env := s.NewTestActivityEnvironment()
		env.RegisterActivityWithOptions(acts, activity.RegisterOptions{Name: activities.Prefix})
		_, err = env.ExecuteActivity(activities.DeliverName, tk)
		return err
	}

	// The worker's own client does not trust the receiver's private CA.
	appErr, _ := failure(t, run(activities.Deps{}))
	require.Equal(t, activities.TypeNetwork, appErr.Type())
	require.Zero(t, got.Load())

	// The injected transport brings the CA, the dialer and the wrapper
	// see the attempt.
	var wrapped atomic.Int32
	var dialed atomic.Value
	base := srv.Client().Transport.(*http.Transport)
	require.NoError(t, run(activities.Deps{HTTP: activities.HTTPOptions{
		Transport: &http.Transport{TLSClientConfig: base.TLSClientConfig.Clone()},
		Dialer: &net.Dialer{Timeout: time.Second, Control: func(_, address string, _ syscall.RawConn) error {
			dialed.Store(address)
			return nil
		}},
		Wrap: func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				wrapped.Add(1)
				return next.RoundTrip(r)
			})
		},
	}}))
	require.EqualValues(t, 1, got.Load())
	require.EqualValues(t, 1, wrapped.Load())
	require.Equal(t, srv.Listener.Addr().String(), dialed.Load())
}

func TestInjectedTransportKeepsEgressGuard(t *testing.T) {
	t.Parallel()
	srv, got := tlsReceiver(t)
	var ownDials atomic.Int32
	base := srv.Client().Transport.(*http.Transport).Clone()
	// A proxy and a dial function of its own would each take the request
	// past the guard; both are dropped.
	base.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: "proxy.invalid:3128"})
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ownDials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	var wrapped atomic.Int32
	acts, err := activities.New(activities.Config{DeadLetters: &testenv.Records[deadletter.Record]{}}, activities.Deps{HTTP: activities.HTTPOptions{
		Transport: base,
		Wrap: func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				wrapped.Add(1)
				return next.RoundTrip(r)
			})
		},
	}})
	require.NoError(t, err)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(acts, activity.RegisterOptions{Name: activities.Prefix})
	_, err = env.ExecuteActivity(activities.DeliverName,
		trigger.DeliveryTask{V: 1, EventID: "evt_guard", Tenant: "acme", Type: trigger.EventCreate, URL: srv.URL + "/hook"})
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeForbidden, appErr.Type(), "loopback stays forbidden")
	require.EqualValues(t, 1, wrapped.Load())
	require.Zero(t, ownDials.Load())
	require.Zero(t, got.Load())
	require.NotNil(t, base.Proxy, "the caller's transport is not modified")

	_, err = activities.New(activities.Config{DeadLetters: &testenv.Records[deadletter.Record]{}}, activities.Deps{HTTP: activities.HTTPOptions{
		Wrap: func(http.RoundTripper) http.RoundTripper { return nil },
	}})
	require.ErrorContains(t, err, "nil RoundTripper")
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, err := activities.New(activities.Config{RetryableStatuses: []int{503}, MaxConnsPerHost: -1, DeadLetters: &testenv.Records[deadletter.Record]{}}, activities.Deps{})
	require.ErrorContains(t, err, "503 is not a 4xx")
	require.ErrorContains(t, err, "maxConnsPerHost")
	_, err = activities.New(activities.Config{}, activities.Deps{})
	require.ErrorContains(t, err, "dead-letter publisher")
}
