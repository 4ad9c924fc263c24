package signature_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// codeBlock returns the first fenced block of lang in doc whose content
// starts with prefix.
func codeBlock(t *testing.T, doc, lang, prefix string) string {
	t.Helper()
	for _, part := range strings.Split(doc, "```"+lang+"\n")[1:] {
		block, _, ok := strings.Cut(part, "\n```")
		require.True(t, ok, "unterminated %s block", lang)
		if strings.HasPrefix(block, prefix) {
			return block
		}
	}
	require.FailNow(t, "no block", "no ```%s block starting with %q", lang, prefix)
	return ""
}

// TestReceiversDocExample keeps the example delivery of docs/receivers.md
// true: the worker sends exactly that request for that change (at that
// time, with that secret), the body matches the schema and the indented
// copy, the signature verifies with the secret the page names, and the
// token against the key set it shows.
func TestReceiversDocExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(receiversDoc)
	require.NoError(t, err)
	doc := string(data)

	head, body, ok := strings.Cut(codeBlock(t, doc, "http", "POST "), "\n\n")
	require.True(t, ok)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body)))
	require.NoError(t, err)
	sent, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	require.Equal(t, body, string(sent), "Content-Length matches the body")
	require.NoError(t, testenv.CheckDelivery(req.Method, req.Header, sent))
	require.JSONEq(t, body, codeBlock(t, doc, "json", "{\n  \"type\""), "the indented body is the body")

	ts, err := strconv.ParseInt(req.Header.Get(signature.HeaderTimestamp), 10, 64)
	require.NoError(t, err)
	at := time.Unix(ts, 0)
	secrets := regexp.MustCompile("`(whsec_[A-Za-z0-9+/=]+)`").FindAllStringSubmatch(doc, -1)
	require.Len(t, secrets, 1, "the page names one secret")
	secret := mustSecret(t, secrets[0][1])
	require.NoError(t, signature.Verify(req.Header, sent, []signature.Secret{secret}, 0, at))
	require.NoError(t, official(t, secret).VerifyIgnoringTimestamp(sent, req.Header))

	var env activities.Envelope
	require.NoError(t, json.Unmarshal(sent, &env))
	keys, err := authn.NewVerifier([]byte(codeBlock(t, doc, "json", `{"keys":`)), authn.VerifierConfig{Now: func() time.Time { return at }})
	require.NoError(t, err)
	token, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	require.True(t, ok)
	_, err = keys.Verify(token, env.Data.Tenant)
	require.NoError(t, err)

	// The demo trigger it claims to come from.
	examples, err := trigger.LoadTriggers("../examples/triggers", nil)
	require.NoError(t, err)
	i := slices.IndexFunc(examples, func(tr *trigger.Trigger) bool { return tr.ID == env.Data.TriggerID })
	require.NotEqual(t, -1, i, "examples/triggers has trigger %q", env.Data.TriggerID)
	tr := examples[i]
	require.Equal(t, tr.Tenant, env.Data.Tenant)
	require.Equal(t, tr.Version, env.Data.TriggerVersion)
	require.True(t, strings.HasSuffix(tr.URL, req.URL.Path), "%s is the trigger's url %s", req.URL.Path, tr.URL)
	for k, v := range tr.Headers {
		require.Equal(t, v, req.Header.Get(k))
	}

	// The worker, given that change, that secret and that time, sends
	// that request, but for its own token.
	types := map[string]trigger.EventType{
		activities.EventDocumentCreated: trigger.EventCreate,
		activities.EventDocumentUpdated: trigger.EventUpdate,
		activities.EventDocumentDeleted: trigger.EventDelete,
	}
	rec := testenv.Recorder(t)
	issuer, err := authn.NewIssuer(authn.Config{Now: func() time.Time { return at }})
	require.NoError(t, err)
	acts, err := activities.New(activities.Config{Egress: egress.Policy{AllowLoopback: true}, DeadLetters: discardDLQ{}}, activities.Deps{
		Secrets: secretList{secret}, Tokens: issuer, Now: func() time.Time { return at },
	})
	require.NoError(t, err)
	_, err = acts.Deliver(context.Background(), trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: env.Data.EventID, Tenant: env.Data.Tenant, TriggerID: env.Data.TriggerID,
		TriggerVersion: env.Data.TriggerVersion, Collection: env.Data.Collection, DocKey: env.Data.DocKey,
		Type: types[env.Type], Before: env.Data.Before, After: env.Data.After, Position: "1",
		CommitTime: env.Data.CommitTime, SubjectHashed: env.Data.SubjectHashed,
		URL: rec.URL() + req.URL.Path, Headers: tr.Headers, SecretsRef: tr.SecretsRef,
	})
	require.NoError(t, err)
	got := rec.Requests()[0]
	require.Equal(t, body, string(got.Body))
	got.Headers.Set("Authorization", req.Header.Get("Authorization"))
	require.Equal(t, req.Header, got.Headers)
	require.NoError(t, official(t, secret).VerifyIgnoringTimestamp(got.Body, got.Headers))

	// The header table names every header the worker sets, besides the
	// transport's own and the trigger's.
	_, section, _ := strings.Cut(doc, "\n## Headers\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var table, set []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		table = append(table, http.CanonicalHeaderKey(m[1]))
	}
	for k := range got.Headers {
		if _, custom := tr.Headers[k]; !custom && k != "Accept-Encoding" && k != "Content-Length" {
			set = append(set, k)
		}
	}
	require.ElementsMatch(t, set, table)
}
