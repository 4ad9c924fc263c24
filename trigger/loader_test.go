package trigger_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
)

func validator(t testing.TB, tenant string) *trigger.Validator {
	t.Helper()
	v, err := trigger.NewValidator(tenant, trigger.Limits{}, nil)
	require.NoError(t, err)
	return v
}

func TestLoadExamples(t *testing.T) {
	t.Parallel()
	// The examples hold two tenants; demo's are the ones looked at here.
	res, err := trigger.LoadByTenant("../examples/triggers", validator(t, ""))
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.Len(t, res.Triggers["acme"], 1)
	byID := map[string]*trigger.Trigger{}
	for _, tr := range res.Triggers["demo"] {
		byID[tr.ID] = tr
	}
	require.Len(t, byID, 4)

	paid := byID["order-paid"]
	require.Equal(t, "demo", paid.Tenant, "file-level tenant applies")
	require.Equal(t, trigger.RetryPolicy{MaxAttempts: 5, InitialBackoff: trigger.Duration(time.Second), MaxBackoff: trigger.Duration(time.Minute), Multiplier: 2}, *paid.RetryPolicy)
	require.Equal(t, 10*time.Second, paid.Timeout.D())
	require.Contains(t, paid.Source, "orders.yaml:")

	deleted := byID["order-deleted"]
	require.Equal(t, 3, deleted.RetryPolicy.MaxAttempts, "trigger field overrides file default")
	require.Equal(t, trigger.Duration(time.Second), deleted.RetryPolicy.InitialBackoff, "unset field comes from file default")

	member := byID["chat-member-joined"]
	require.Equal(t, "chats/*/members", member.Collection, "JSON files load too")
	require.Equal(t, trigger.FailureBlock, member.OnFailure)
	require.Nil(t, byID["user-changed"].RetryPolicy, "no policy anywhere: the worker's defaults apply")
}

// TestInvalidFiles checks each file under testdata/invalid holds exactly one
// distinct mistake and that the error names the file, trigger and field.
func TestInvalidFiles(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ trigger, field string }{
		"authorization-header-override.yaml": {"t1", "headers.Authorization"},
		"bad-duration.yaml":                  {"t1", "timeout"},
		"bad-header-name.yaml":               {"t1", "headers.X Bad Header"},
		"bad-on-failure.yaml":                {"t1", "onFailure"},
		"bad-secrets-ref.yaml":               {"t1", "secretsRef"},
		"bad-tenant-char.yaml":               {"t1", "tenant"},
		"cel-non-bool.yaml":                  {"t1", "condition"},
		"cel-syntax.yaml":                    {"t1", "condition"},
		"cel-unknown-field.yaml":             {"t1", "condition"},
		"collection-bad-char.yaml":           {"t1", "collection"},
		"duplicate-event.yaml":               {"t1", "events"},
		"duplicate-id.yaml":                  {"t1", "triggerId"},
		"empty-collection-segment.yaml":      {"t1", "collection"},
		"ftp-url.yaml":                       {"t1", "url"},
		"header-too-large.yaml":              {"t1", "headers"},
		"initial-above-max.yaml":             {"t1", "retryPolicy.initialBackoff"},
		"long-collection.yaml":               {"t1", "collection"},
		"max-attempts-zero.yaml":             {"t1", "retryPolicy.maxAttempts"},
		"missing-trigger-id.yaml":            {"#1", "triggerId"},
		"missing-url.yaml":                   {"t1", "url"},
		"multiplier-below-one.yaml":          {"t1", "retryPolicy.multiplier"},
		"numeric-duration.yaml":              {"t1", "retryPolicy.initialBackoff"},
		"relative-url.yaml":                  {"t1", "url"},
		"signature-header-override.yaml":     {"t1", "headers.Webhook-Signature"},
		"tenant-mismatch.yaml":               {"t1", "tenant"},
		"timeout-too-long.yaml":              {"t1", "timeout"},
		"unknown-event.yaml":                 {"t1", "events"},
		"unknown-field.json":                 {"t1", "retries"},
		"unknown-field.yaml":                 {"t1", "condtion"},
		"unknown-retry-field.yaml":           {"t1", "retryPolicy.maxAttempt"},
		"url-credentials.yaml":               {"t1", "url"},
	}
	entries, err := os.ReadDir("testdata/invalid")
	require.NoError(t, err)
	require.Len(t, entries, len(cases), "every invalid file has a table entry")

	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join("testdata", "invalid", name)
			ts, err := trigger.LoadTriggersFromFile(path, validator(t, "acme"))
			require.Nil(t, ts, "nothing is returned, so nothing can be activated")
			require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
			var ve *trigger.ValidationError
			require.True(t, errors.As(err, &ve))
			require.Len(t, ve.Problems, 1, "one distinct mistake per file:\n%v", err)
			p := ve.Problems[0]
			require.True(t, strings.HasPrefix(p.File, path+":"), "file with line: %q", p.File)
			require.Equal(t, want.trigger, p.TriggerID)
			require.Equal(t, want.field, p.Field)
			require.Contains(t, err.Error(), path)
			require.Contains(t, err.Error(), fmt.Sprintf("trigger %q", want.trigger))
			require.Contains(t, err.Error(), want.field)
		})
	}
}

// TestUnknownFieldSuggestions checks that an unknown key at each level gets
// the known key it likely meant, and that one close to none gets no guess.
func TestUnknownFieldSuggestions(t *testing.T) {
	t.Parallel()
	const trig = "tenant: acme\ntriggers:\n  - triggerId: t1\n    collection: orders\n    url: https://hooks.example.com/orders\n"
	cases := []struct {
		name, body, trigger, field, reason string
	}{
		{"file level", "tenant: acme\ntrigers: []\n", "", "trigers", `is not a known field (did you mean "triggers"?)`},
		{"trigger level", trig + "    condtion: 'true'\n", "t1", "condtion", `is not a known field (did you mean "condition"?)`},
		{"case only", trig + "    secretsref: default\n", "t1", "secretsref", `is not a known field (did you mean "secretsRef"?)`},
		{"retry policy", trig + "    retryPolicy: {maxAttempt: 3}\n", "t1", "retryPolicy.maxAttempt", `is not a known field (did you mean "maxAttempts"?)`},
		{"nothing close", trig + "    retries: 3\n", "t1", "retries", "is not a known field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "f.yaml")
			require.NoError(t, os.WriteFile(path, []byte(c.body), 0o600))
			_, err := trigger.LoadTriggersFromFile(path, nil)
			var ve *trigger.ValidationError
			require.True(t, errors.As(err, &ve), "%v", err)
			var got *trigger.Problem
			for i, p := range ve.Problems {
				if p.Field == c.field {
					got = &ve.Problems[i]
				}
			}
			require.NotNil(t, got, "no problem for %s in:\n%v", c.field, err)
			require.Equal(t, c.trigger, got.TriggerID)
			require.Equal(t, c.reason, got.Reason)
			require.True(t, strings.HasPrefix(got.File, path+":"), "file with line: %q", got.File)
		})
	}
}

func TestDirectoryReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	ts, err := trigger.LoadTriggersFromDir("testdata/invalid", validator(t, "acme"))
	require.Nil(t, ts)
	var ve *trigger.ValidationError
	require.True(t, errors.As(err, &ve))
	// Every file contributes its problem; duplicate ids across files add more.
	files := map[string]bool{}
	for _, p := range ve.Problems {
		files[strings.SplitN(p.File, ":", 2)[0]] = true
	}
	entries, err := os.ReadDir("testdata/invalid")
	require.NoError(t, err)
	require.Len(t, files, len(entries))
}

func TestDuplicateIDsAcrossFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	body := "tenant: acme\ntriggers:\n  - triggerId: same\n    collection: a\n    url: https://x.example/h\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(body), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.yml"), []byte(body), 0o600))
	_, err := trigger.LoadTriggersFromDir(dir, validator(t, "acme"))
	require.ErrorContains(t, err, "defined twice")
	require.ErrorContains(t, err, "a.yaml")
}

func TestLoadFileShapes(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"empty":          "",
		"list root":      "- triggerId: x\n",
		"no triggers":    "tenant: acme\n",
		"triggers map":   "triggers: {a: 1}\n",
		"broken yaml":    "triggers: [\n",
		"trigger scalar": "triggers: [x]\n",
		"dup key":        "tenant: acme\ntenant: acme\ntriggers: []\n",
		"bad policy":     "tenant: acme\nretryPolicy: 5\ntriggers: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "f.yaml")
			require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
			_, err := trigger.LoadTriggersFromFile(path, nil)
			require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
			require.Contains(t, err.Error(), path)
		})
	}
}

func TestEmptyDirectoryIsAnError(t *testing.T) {
	t.Parallel()
	_, err := trigger.LoadTriggersFromDir(t.TempDir(), nil)
	require.ErrorContains(t, err, "no .yaml, .yml or .json trigger files")
}

func TestValidatorRejectsBadScope(t *testing.T) {
	t.Parallel()
	_, err := trigger.NewValidator("ac.me", trigger.Limits{}, nil)
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
}

func TestValidateGoAPI(t *testing.T) {
	t.Parallel()
	v := validator(t, "acme")
	good := &trigger.Trigger{ID: "a", Tenant: "acme", Collection: "orders", URL: "https://x.example/h"}
	progs, err := v.Validate([]*trigger.Trigger{good})
	require.NoError(t, err)
	require.Len(t, progs, 1)

	_, err = v.Validate([]*trigger.Trigger{good, nil, {ID: "b", Tenant: "zzz", Collection: "x", URL: "https://x.example"}})
	var ve *trigger.ValidationError
	require.True(t, errors.As(err, &ve))
	require.Len(t, ve.Problems, 2, "nil entry and tenant mismatch: %v", err)
}

func TestCustomLimits(t *testing.T) {
	t.Parallel()
	v, err := trigger.NewValidator("acme", trigger.Limits{MaxCollectionLength: 5}, nil)
	require.NoError(t, err)
	_, err = v.Validate([]*trigger.Trigger{{ID: "a", Tenant: "acme", Collection: "orders", URL: "https://x.example"}})
	require.ErrorContains(t, err, "the limit is 5")
}

func BenchmarkLoadTriggers(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	sb.WriteString("tenant: acme\nretryPolicy: {maxAttempts: 5, initialBackoff: 1s}\ntriggers:\n")
	for i := range 1000 {
		fmt.Fprintf(&sb, "  - triggerId: t%d\n    collection: coll%d/*/items\n    events: [create, update]\n    condition: event.document.status == \"s%d\" && event.document.total > %d\n    url: https://hooks.example.com/t%d\n    secretsRef: default\n", i, i%50, i, i, i)
	}
	path := filepath.Join(dir, "triggers.yaml")
	require.NoError(b, os.WriteFile(path, []byte(sb.String()), 0o600))
	v := validator(b, "acme")
	b.ReportAllocs()
	for b.Loop() {
		ts, err := trigger.LoadTriggersFromFile(path, v)
		if err != nil || len(ts) != 1000 {
			b.Fatal(err, len(ts))
		}
	}
}
