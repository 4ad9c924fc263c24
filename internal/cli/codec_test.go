package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/cli"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

func TestCodecKeygen(t *testing.T) {
	t.Parallel()
	code, out, errOut := run("codec", "keygen")
	require.Equal(t, 0, code, errOut)
	keys, err := codec.ParseKeys([]byte(out))
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Regexp(t, `^k\d{8}-[0-9a-f]{4}$`, keys[0].ID)

	file := filepath.Join(t.TempDir(), "codec.keys")
	code, out, errOut = run("codec", "keygen", "--id", "k2026-07", "--out", file)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "added key k2026-07 to "+file+"\n", out, "the key itself is not printed")
	code, out, errOut = run("codec", "keygen", "--id", "k2026-07", "--out", file)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "already holds key k2026-07; left unchanged")
	ring, err := codec.LoadKeys(file, nil)
	require.NoError(t, err)
	require.Len(t, ring, 1)

	code, _, errOut = run("codec", "keygen", "--id", "no spaces")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--id: key id")
}

// TestOperatorCommandsReadEncryptedHistories runs the pipeline with
// temporal.codec on: with the key file, `deliveries show` rebuilds every
// attempt (failure details included) and `redeliver` sends an encrypted
// signal the worker delivers; without it, the history shows nothing.
func TestOperatorCommandsReadEncryptedHistories(t *testing.T) {
	t.Parallel()
	var keyFile string
	p := runPipeline(t, func(dir string, inf *config.IngestFile, wkf *config.WorkerFile) {
		keyFile = filepath.Join(dir, "keys", "codec.keys")
		active, err := codec.EnsureKeyFile(keyFile)
		require.NoError(t, err)
		c := config.Codec{Enabled: true, KeyFile: keyFile, ActiveKey: active}
		inf.Temporal.Codec, wkf.Temporal.Codec = c, c
	})
	var mu sync.Mutex
	served := 0
	p.rec.Respond(func(r *testenv.Request) testenv.Response {
		mu.Lock()
		defer mu.Unlock()
		if served++; served == 1 {
			return testenv.Response{Status: 500, Body: []byte(`{"error":"not now"}`)}
		}
		return testenv.Response{}
	})
	ctx := context.Background()
	require.NoError(t, p.store.Put(ctx, "acme", "orders", "enc-1", json.RawMessage(`{"status":"secret-status"}`)))
	first := p.awaitRequests(t, "/hooks/orders", 2)
	eventID := first[0].Headers.Get("webhook-id")
	wid := ingest.WorkflowID("acme", "order-changed", "orders", "enc-1")
	p.awaitIdle(t, wid)

	code, out, errOut := p.cli("deliveries", "show", eventID, "--workflow-id", wid, "--codec-key-file", keyFile, "-o", "json")
	require.Equal(t, 0, code, errOut)
	var l shownLog
	require.NoError(t, json.Unmarshal([]byte(out), &l), out)
	require.Len(t, l.Events, 1)
	require.Equal(t, "delivered", l.Events[0].Outcome)
	require.Equal(t, "enc-1", l.Events[0].DocKey)
	require.Equal(t, []attempt{{1, 1, 500, "HTTP_5XX"}, {1, 2, 200, ""}}, l.attempts())
	require.Equal(t, `{"error":"not now"}`, l.Events[0].Entries[1].Response, "the encrypted failure details")

	data, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	keys, err := codec.ParseKeys(data)
	require.NoError(t, err)
	code, out, errOut = p.cli("deliveries", "list", "--tenant", "acme", "--doc", "enc-1", "-o", "json", "--codec-key-file", keyFile)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"docKey": "enc-1"`)

	// Without the keys nothing of the task can be read.
	code, out, errOut = p.cli("deliveries", "show", eventID, "--workflow-id", wid, "-o", "json")
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "event not found")

	code, out, errOut = p.cli("redeliver", eventID, "--workflow-id", wid, "--nats", p.ns.URL(),
		"--actor", "ada", "--reason", "encrypted redelivery", "--wait", "1m", "--codec-key-file", keyFile, "--codec-active-key", keys[0].ID)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "DELIVERED")
	again := p.awaitRequests(t, "/hooks/orders", 3)[2]
	require.Equal(t, eventID, again.Headers.Get("webhook-id"))
	require.JSONEq(t, string(first[1].Body), string(again.Body))

	// The redelivery the command sent is encrypted in the history too.
	p.awaitIdle(t, wid)
	found := false
	it := p.tc.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		raw, err := proto.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(raw), "secret-status")
		require.NotContains(t, string(raw), "encrypted redelivery")
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			found = true
			require.Equal(t, codec.EncodingEncrypted, string(a.GetInput().GetPayloads()[0].GetMetadata()[codec.MetadataEncoding]))
		}
	}
	require.True(t, found, "the redelivery's run has its signal")
}

// TestCodecKeysFromTheEnvironment: the operator commands read the keys
// from the variables the binaries read. Not parallel: it sets them for
// the process.
func TestCodecKeysFromTheEnvironment(t *testing.T) {
	two := codec.FormatKey("a", bytes.Repeat([]byte{1}, codec.KeySize)) + "," + codec.FormatKey("b", bytes.Repeat([]byte{2}, codec.KeySize))
	t.Setenv(config.EnvName("temporal.codec.keys"), two)
	code, _, errOut := run("deliveries", "list", "--tenant", "acme", "--temporal", "127.0.0.1:1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no active key: name the key that encrypts (one of a, b)")

	t.Setenv(config.EnvName("temporal.codec.keys"), "a=c2hvcnQ=")
	code, _, errOut = run("deliveries", "list", "--tenant", "acme", "--temporal", "127.0.0.1:1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `$TRIGGERFLOW_TEMPORAL_CODEC_KEYS: keys entry 1: codec: invalid key list: line 1, entry 1: key "a" is 5 bytes long`)
	require.NotContains(t, errOut, "c2hvcnQ")
}

func TestCodecServerCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "codec.keys")
	active, err := codec.EnsureKeyFile(keyFile)
	require.NoError(t, err)
	cfgFile := filepath.Join(dir, "worker.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(`
temporal:
  codec:
    enabled: true
    keyFile: `+keyFile+`
    activeKey: `+active+`
worker:
  codecServer:
    authToken: t0ken
`), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		root := cli.New(pw, &errOut)
		root.SetArgs([]string{"codec-server", "--config", cfgFile, "--addr", "127.0.0.1:0", "--allow-origin", "http://localhost:8080"})
		done <- root.ExecuteContext(ctx)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, errOut.String())
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	m := regexp.MustCompile(`^codec server on (http://\S+) \(keys \[` + active + `\], active ` + active + `, allowed origins \[http://localhost:8080\], bearer token true\)`).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	base := m[1]

	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	post := func(path, token string, body []byte) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}
	plain := []byte(`{"payloads":[{"metadata":{"encoding":"` + base64.StdEncoding.EncodeToString([]byte("json/plain")) + `"},"data":"` + base64.StdEncoding.EncodeToString([]byte(`"hello"`)) + `"}]}`)
	resp, _ = post("/encode", "", plain)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, enc := post("/encode", "t0ken", plain)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", enc)
	require.NotContains(t, string(enc), base64.StdEncoding.EncodeToString([]byte(`"hello"`)))
	resp, dec := post("/default/decode", "t0ken", enc)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", dec)
	require.JSONEq(t, string(plain), string(dec))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("codec-server did not stop")
	}

	// Without encryption on there is nothing to serve.
	code, _, stderr := run("codec-server", "--addr", "127.0.0.1:0")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "temporal.codec.enabled is not true")
}
