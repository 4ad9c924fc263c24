package workflows_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// The encrypted replay corpus, testdata/encrypted-run*.json, is recorded
// with temporal.codec on (ingest's signal and the worker's commands
// encrypted) by
//
//	go test ./workflows -run TestEncryptedHistoryReplays -record
//
// under replayKeyID, a test key: public by design, it protects nothing.
const (
	encryptedHistory = "encrypted"
	replayKeyID      = "replay-test-key"
)

var encryptedOptions = workflows.Options{QuietPeriod: time.Second}

// replayCodec is the codec the encrypted corpus was recorded with.
func replayCodec(t testing.TB) *codec.Codec {
	t.Helper()
	c, err := codec.New(codec.Config{Keys: map[string][]byte{replayKeyID: bytes.Repeat([]byte("tf-replay"), 4)[:codec.KeySize]}, ActiveKey: replayKeyID})
	require.NoError(t, err)
	return c
}

// newEncryptedHarness is newHarness with a client that encrypts, as
// ingest's and the worker's do with temporal.codec.enabled.
func newEncryptedHarness(t testing.TB, srv *testenv.TemporalServer, opts workflows.Options) *harness {
	t.Helper()
	dc := codec.DataConverter(replayCodec(t))
	c, err := client.NewClientFromExisting(srv.Client(t), client.Options{
		Namespace: srv.Namespace(), DataConverter: dc, FailureConverter: codec.FailureConverter(dc),
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cfg := config.NATS{}.WithDefaults()
	js := testenv.NATS(t).JetStream(t, cfg.Streams())
	h := &harness{c: c, tq: fmt.Sprintf("deliveries-%d", taskQueueSeq.Add(1)), rec: testenv.Recorder(t), js: js, nats: cfg}
	acts, err := activities.New(activities.Config{
		Egress:      egress.Policy{AllowLoopback: true},
		DeadLetters: deadletter.NewPublisher(js, cfg.DeadLetterSubject),
	}, activities.Deps{})
	require.NoError(t, err)
	w := worker.New(h.c, h.tq, worker.Options{})
	workflows.Register(w, acts, opts)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return h
}

// replayWith replays the histories matching pattern in dir with the
// replayer options ro, as replayDir does.
func replayWith(t *testing.T, dir, pattern string, opts workflows.Options, ro worker.WorkflowReplayerOptions) error {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no histories match %s in %s", pattern, dir)
	opts.QuietPeriod = 7 * time.Minute
	opts.HTTPTimeout = 3 * time.Second
	opts.Retry = trigger.RetryPolicy{MaxAttempts: 1, InitialBackoff: trigger.Duration(time.Minute)}
	r, err := worker.NewWorkflowReplayerWithOptions(ro)
	require.NoError(t, err)
	workflows.RegisterWorkflow(r, opts)
	for _, f := range files {
		if err := r.ReplayWorkflowHistoryFromJSONFile(quietLogger, f); err != nil {
			return fmt.Errorf("replaying %s: %w", f, err)
		}
	}
	return nil
}

func encryptedReplayer(t testing.TB) worker.WorkflowReplayerOptions {
	dc := codec.DataConverter(replayCodec(t))
	return worker.WorkflowReplayerOptions{DataConverter: dc, FailureConverter: codec.FailureConverter(dc)}
}

// TestEncryptedHistoryReplays runs a delivery (a failed first attempt, a
// successful retry) with every payload encrypted, checks the history holds
// none of the task in plaintext, and replays it: with the codec it
// replays, without it it does not.
func TestEncryptedHistoryReplays(t *testing.T) {
	t.Parallel()
	srv := testenv.Temporal(t)
	h := newEncryptedHarness(t, srv, encryptedOptions)
	sc := &script{outs: map[string][]int{}}
	h.rec.Respond(sc.respond)
	sc.set("evt_enc", 500)
	tk := h.liveTask("enc", "evt_enc")
	tk.After = []byte(`{"secret":"enc-marker-document"}`)
	tk.Headers = map[string]string{"X-Enc-Marker": "enc-marker-header"}
	h.signal(t, tk)
	h.wait(t, "enc")
	require.Equal(t, []string{"evt_enc", "evt_enc"}, requestsFor(h, "enc"))

	hists := h.runs(t, "enc")
	for _, hist := range hists {
		js, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(hist)
		require.NoError(t, err)
		for _, plain := range []string{"enc-marker", "/hooks/enc", "evt_enc", "scripted 500"} {
			require.NotContains(t, string(js), plain)
		}
		require.Contains(t, string(js), base64.StdEncoding.EncodeToString([]byte(replayKeyID)), "payloads name their key")
	}

	dir := t.TempDir()
	if *record {
		dir = historyDir
	}
	saveHistories(t, dir, encryptedHistory, hists)
	require.NoError(t, replayWith(t, dir, encryptedHistory+"-run*.json", encryptedOptions, encryptedReplayer(t)))
	err := replayWith(t, dir, encryptedHistory+"-run*.json", encryptedOptions, worker.WorkflowReplayerOptions{})
	require.Error(t, err, "without the keys the history does not replay")
}

// TestReplayEncrypted replays the recorded encrypted corpus with the codec,
// and every plaintext history with the codec too: a worker that turns
// encryption on still replays runs recorded before.
func TestReplayEncrypted(t *testing.T) {
	t.Parallel()
	if *record {
		t.Skip("recording")
	}
	require.NoError(t, replayWith(t, historyDir, encryptedHistory+"-run*.json", encryptedOptions, encryptedReplayer(t)))
	for name, opts := range replayOptions {
		require.False(t, strings.HasPrefix(name, encryptedHistory))
		require.NoError(t, replayWith(t, historyDir, name+"-run*.json", opts, encryptedReplayer(t)), name)
	}
}
