package daemon_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

// base64Cores are the forms s takes inside base64 at each of the three
// alignments it can have in a longer string, each without the quanta it
// shares with its neighbours.
func base64Cores(s string) []string {
	var out []string
	for pad := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, pad), s...))
		out = append(out, enc[4:len(enc)-4])
	}
	return out
}

// history reads a run's events with c.
func historyOf(t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	var out []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		out = append(out, ev)
	}
	require.NotEmpty(t, out)
	return out
}

// TestEncryptedHistory runs the stack with temporal.codec on in ingest and
// the worker, delivers a document carrying a marker, and reads the raw
// history with a client without the keys: neither the marker nor the
// webhook's URL and headers appear in any event, in bytes or in base64,
// while the receiver got the plaintext body, the search attributes still
// find the workflow, and the worker's codec server decrypts the history
// for the UI.
func TestEncryptedHistory(t *testing.T) {
	const uiOrigin = "http://localhost:8233"
	keyFile := ""
	s := runStack(t, func(s *stack, inf *config.IngestFile, wkf *config.WorkerFile) {
		keyFile = filepath.Join(s.dir, "keys", "codec.keys")
		active, err := codec.EnsureKeyFile(keyFile)
		require.NoError(t, err)
		c := config.Codec{Enabled: true, KeyFile: keyFile, ActiveKey: active}
		inf.Temporal.Codec, wkf.Temporal.Codec = c, c
		wkf.Worker.CodecServer = config.CodecServer{Enabled: true, AllowedOrigins: []string{uiOrigin}}
		require.NoError(t, inf.Validate())
		require.NoError(t, wkf.Validate())
	})
	ctx := context.Background()

	marker := fmt.Sprintf("tf-marker-%d-confidential", time.Now().UnixNano())
	store, err := docstore.Open(ctx, docstore.Config{Path: s.db})
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.Put(ctx, "acme", "orders", "c-1", json.RawMessage(`{"note":"`+marker+`"}`)))

	reqs := s.rec.WaitFor(t, 1, 90*time.Second)
	require.Contains(t, string(reqs[0].Body), marker, "the receiver gets the plaintext body")

	// A client with the keys, as the operator commands have, waits for
	// the run to close so that its history is complete.
	ring, err := codec.LoadKeys(keyFile, nil)
	require.NoError(t, err)
	var active string
	for id := range ring {
		active = id
	}
	cdc, err := codec.New(codec.Config{Keys: ring, ActiveKey: active})
	require.NoError(t, err)
	dial, err := codec.DialOptions(cdc)
	require.NoError(t, err)
	keyed, err := client.Dial(client.Options{HostPort: s.ts.HostPort(), Namespace: s.ts.Namespace(),
		ConnectionOptions: client.ConnectionOptions{DialOptions: dial}})
	require.NoError(t, err)
	defer keyed.Close()
	id := ingest.WorkflowID("acme", "order-changed", "orders", "c-1")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	require.NoError(t, keyed.GetWorkflow(wctx, id, "").Get(wctx, nil))

	raw := historyOf(t, s.tc, id) // s.tc has no keys
	forbidden := append([]string{marker, "/hooks/orders", "X-Env"}, base64Cores(marker)...)
	forbidden = append(forbidden, base64Cores("/hooks/orders")...)
	var taskPayload *commonpb.Payload // the run's input: a cold key starts with its task
	for _, ev := range raw {
		bin, err := proto.Marshal(ev)
		require.NoError(t, err)
		js, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(ev)
		require.NoError(t, err)
		for _, f := range forbidden {
			require.NotContains(t, string(bin), f, "event %d (%s) holds %q in its bytes", ev.GetEventId(), ev.GetEventType(), f)
			require.NotContains(t, string(js), f, "event %d (%s) holds %q in its JSON", ev.GetEventId(), ev.GetEventType(), f)
		}
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			taskPayload = a.GetInput().GetPayloads()[0]
		}
	}
	require.NotNil(t, taskPayload)
	require.Equal(t, codec.EncodingEncrypted, string(taskPayload.GetMetadata()[codec.MetadataEncoding]))

	// The same history through the keys holds the marker: the check above
	// would have seen it.
	var found bool
	for _, ev := range historyOf(t, keyed, id) {
		bin, err := proto.Marshal(ev)
		require.NoError(t, err)
		found = found || bytes.Contains(bin, []byte(marker))
	}
	require.True(t, found, "the decrypted history holds the document")

	// Search attributes stay readable: the workflow is found without keys.
	testenv.Eventually(t, 30*time.Second, "the workflow visible by its search attributes", func() error {
		resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `TenantId = "acme" AND DocKey = "c-1"`})
		require.NoError(t, err)
		if len(resp.Executions) == 0 {
			return fmt.Errorf("not visible yet")
		}
		memo := resp.Executions[0].GetMemo().GetFields()["docKey"]
		require.Equal(t, codec.EncodingEncrypted, string(memo.GetMetadata()[codec.MetadataEncoding]), "the memo is encrypted")
		return nil
	})

	// The worker's codec server decrypts the input as the UI asks it to.
	body, err := json.Marshal(map[string]any{"payloads": []map[string]any{{
		"metadata": map[string]string{
			codec.MetadataEncoding: base64.StdEncoding.EncodeToString(taskPayload.Metadata[codec.MetadataEncoding]),
			codec.MetadataKeyID:    base64.StdEncoding.EncodeToString(taskPayload.Metadata[codec.MetadataKeyID]),
			codec.MetadataCipher:   base64.StdEncoding.EncodeToString(taskPayload.Metadata[codec.MetadataCipher]),
		},
		"data": base64.StdEncoding.EncodeToString(taskPayload.Data),
	}}})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+s.opsAddr["worker"]+daemon.CodecPath+"/decode", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", s.ts.Namespace())
	req.Header.Set("Origin", uiOrigin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	require.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	var decoded struct {
		Payloads []struct {
			Data []byte `json:"data"`
		} `json:"payloads"`
	}
	require.NoError(t, json.Unmarshal(out, &decoded))
	require.Len(t, decoded.Payloads, 1)
	require.True(t, strings.Contains(string(decoded.Payloads[0].Data), marker), "the codec server gives the UI the task back")
}
