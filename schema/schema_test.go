package schema_test

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/schema"
	"github.com/triggerflow/triggerflow/trigger"
)

// task is a delivery task as the evaluator builds it, before the
// per-case changes.
func task(typ trigger.EventType, before, after string) trigger.DeliveryTask {
	raw := func(s string) json.RawMessage {
		if s == "" {
			return nil
		}
		return json.RawMessage(s)
	}
	return trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: trigger.NewEventID("acme", "orders-hook", "orders/eu", "o-1", "42"),
		Tenant: "acme", TriggerID: "orders-hook", TriggerVersion: "3", Collection: "orders/eu", DocKey: "o-1",
		Type: typ, Before: raw(before), After: raw(after), Position: "42",
		CommitTime: time.Date(2026, 4, 1, 9, 30, 0, 0, time.UTC),
	}
}

// TestDeliveryBodiesMatchTheSchema: the bodies the worker builds, one per
// kind of change, validate.
func TestDeliveryBodiesMatchTheSchema(t *testing.T) {
	t.Parallel()
	cet := time.FixedZone("CET", 3600)
	cases := map[string]func() trigger.DeliveryTask{
		"create": func() trigger.DeliveryTask { return task(trigger.EventCreate, "", `{"total":1}`) },
		"update": func() trigger.DeliveryTask { return task(trigger.EventUpdate, `{"total":1}`, `{"total":2}`) },
		"update without old image": func() trigger.DeliveryTask {
			return task(trigger.EventUpdate, "", `{"total":2}`)
		},
		"delete":                   func() trigger.DeliveryTask { return task(trigger.EventDelete, `{"total":2}`, "") },
		"delete without old image": func() trigger.DeliveryTask { return task(trigger.EventDelete, "", "") },
		"no trigger version, hashed subject, odd key, local time": func() trigger.DeliveryTask {
			tk := task(trigger.EventUpdate, `{"a":{"b":[1,null,"x"]}}`, `{}`)
			tk.TriggerVersion = ""
			tk.SubjectHashed = true
			tk.DocKey = "a.b/*>  ü\x01" + strings.Repeat("k", 2000)
			tk.CommitTime = time.Date(2026, 4, 1, 11, 30, 0, 123456789, cet)
			return tk
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tk := mk()
			body, err := activities.Body(&tk)
			require.NoError(t, err)
			require.NoError(t, schema.ValidateDelivery(body), "%s", body)
		})
	}
}

// TestDeliverySchemaCatchesDrift: a body that differs from the contract in
// any of the ways a code change could make it differ is refused.
func TestDeliverySchemaCatchesDrift(t *testing.T) {
	t.Parallel()
	tk := task(trigger.EventUpdate, `{"total":1}`, `{"total":2}`)
	valid, err := activities.Body(&tk)
	require.NoError(t, err)
	require.NoError(t, schema.ValidateDelivery(valid))

	type body = map[string]any
	data := func(b body) body { return b["data"].(body) }
	cases := map[string]func(b body){
		"unknown type":              func(b body) { b["type"] = "document.upserted" },
		"timestamp not UTC":         func(b body) { b["timestamp"] = "2026-04-01T11:30:00+02:00" },
		"timestamp not a date":      func(b body) { b["timestamp"] = "yesterday" },
		"timestamp as a number":     func(b body) { b["timestamp"] = 1775035800 },
		"field added to envelope":   func(b body) { b["id"] = "x" },
		"field added to data":       func(b body) { data(b)["position"] = "42" },
		"data missing":              func(b body) { delete(b, "data") },
		"tenant with a dot":         func(b body) { data(b)["tenant"] = "ac.me" },
		"collection glob":           func(b body) { data(b)["collection"] = "orders/*" },
		"eventId with a dot":        func(b body) { data(b)["eventId"] = "evt.1" },
		"empty docKey":              func(b body) { data(b)["docKey"] = "" },
		"empty triggerVersion":      func(b body) { data(b)["triggerVersion"] = "" },
		"subjectHashed as a string": func(b body) { data(b)["subjectHashed"] = "false" },
		"document as an array":      func(b body) { data(b)["after"] = []any{1} },
		"update without new image":  func(b body) { data(b)["after"] = nil },
		"create with old image":     func(b body) { b["type"] = "document.created" },
		"delete with new image":     func(b body) { b["type"] = "document.deleted" },
	}
	var required []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[activities.EventData]()) {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if opts != "omitempty" {
			required = append(required, name)
		}
	}
	require.Contains(t, required, "eventId")
	for _, name := range required {
		cases["data."+name+" missing"] = func(b body) { delete(data(b), name) }
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var b body
			require.NoError(t, json.Unmarshal(valid, &b))
			edit(b)
			changed, err := json.Marshal(b)
			require.NoError(t, err)
			require.ErrorIs(t, schema.ValidateDelivery(changed), schema.ErrInvalid, "%s", changed)
		})
	}
	require.ErrorIs(t, schema.ValidateDelivery(append(valid, '{')), schema.ErrInvalid, "trailing data")
}

// TestSchemasNameTheCodesFields ties each schema's property list to the
// Go type that reads or writes it: a field added, renamed or removed on
// one side fails here until the other follows.
func TestSchemasNameTheCodesFields(t *testing.T) {
	t.Parallel()
	var delivery, triggers map[string]any
	require.NoError(t, json.Unmarshal(schema.Delivery(), &delivery))
	require.NoError(t, json.Unmarshal(schema.Triggers(), &triggers))

	for _, c := range []struct {
		where  string
		object map[string]any
		typ    reflect.Type
		tag    string
	}{
		{"delivery envelope", delivery, reflect.TypeFor[activities.Envelope](), "json"},
		{"delivery data", definition(t, delivery, "data"), reflect.TypeFor[activities.EventData](), "json"},
		{"trigger file", triggers, reflect.TypeFor[trigger.File](), "yaml"},
		{"trigger", definition(t, triggers, "trigger"), reflect.TypeFor[trigger.Trigger](), "yaml"},
		{"retryPolicy", definition(t, triggers, "retryPolicy"), reflect.TypeFor[trigger.RetryPolicy](), "yaml"},
	} {
		var fields []string
		for _, f := range reflect.VisibleFields(c.typ) {
			if name, _, _ := strings.Cut(f.Tag.Get(c.tag), ","); name != "" && name != "-" {
				fields = append(fields, name)
			}
		}
		var props []string
		for name := range c.object["properties"].(map[string]any) {
			props = append(props, name)
		}
		slices.Sort(fields)
		slices.Sort(props)
		require.Equal(t, fields, props, "%s: schema properties against %s %s tags", c.where, c.typ, c.tag)
		require.Equal(t, false, c.object["additionalProperties"], "%s is closed", c.where)
	}
	// Required in the data object is exactly what the code never omits.
	var required []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[activities.EventData]()) {
		if name, opts, _ := strings.Cut(f.Tag.Get("json"), ","); opts != "omitempty" {
			required = append(required, name)
		}
	}
	var got []string
	for _, r := range definition(t, delivery, "data")["required"].([]any) {
		got = append(got, r.(string))
	}
	require.ElementsMatch(t, required, got)
}

func definition(t *testing.T, s map[string]any, name string) map[string]any {
	t.Helper()
	d, ok := s["definitions"].(map[string]any)[name].(map[string]any)
	require.True(t, ok, "definition %q", name)
	return d
}

// TestExampleTriggerFilesMatchTheSchema: every file in examples/triggers
// validates, and loads.
func TestExampleTriggerFilesMatchTheSchema(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../examples/triggers/*")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, schema.ValidateTriggerFile(data), f)
		_, err = trigger.LoadTriggersFromFile(f, nil)
		require.NoError(t, err, f)
	}
}

// TestInvalidTriggerCorpus runs the loader's corpus of invalid files
// (trigger/testdata/invalid) through the schema. Each file is refused, or
// the table says why a schema cannot express its rule; every file has an
// entry, so a new one needs a decision.
func TestInvalidTriggerCorpus(t *testing.T) {
	t.Parallel()
	beyond := map[string]string{ // file -> why the schema accepts it
		"cel-non-bool.yaml":      "conditions are CEL",
		"cel-syntax.yaml":        "conditions are CEL",
		"cel-unknown-field.yaml": "conditions are CEL",
		"duplicate-id.yaml":      "uniqueness of one field across array items",
		"header-too-large.yaml":  "a sum over header names and values",
		"initial-above-max.yaml": "comparing two durations",
		"tenant-mismatch.yaml":   "the watcher's tenant scope",
		"timeout-too-long.yaml":  "duration ranges; the limits are the deployment's",
	}
	refused := []string{
		"authorization-header-override.yaml", "bad-duration.yaml", "bad-header-name.yaml",
		"bad-on-failure.yaml", "bad-secrets-ref.yaml", "bad-tenant-char.yaml",
		"collection-bad-char.yaml", "duplicate-event.yaml", "empty-collection-segment.yaml",
		"ftp-url.yaml", "long-collection.yaml", "max-attempts-zero.yaml",
		"missing-trigger-id.yaml", "missing-url.yaml", "multiplier-below-one.yaml",
		"numeric-duration.yaml", "relative-url.yaml", "signature-header-override.yaml",
		"unknown-event.yaml", "unknown-field.json", "unknown-field.yaml",
		"unknown-retry-field.yaml", "url-credentials.yaml",
	}
	entries, err := os.ReadDir("../trigger/testdata/invalid")
	require.NoError(t, err)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	listed := slices.AppendSeq(slices.Clone(refused), maps.Keys(beyond))
	require.ElementsMatch(t, files, listed, "every corpus file is either refused or explained")

	for _, name := range files {
		data, err := os.ReadFile(filepath.Join("../trigger/testdata/invalid", name))
		require.NoError(t, err)
		err = schema.ValidateTriggerFile(data)
		if why, ok := beyond[name]; ok {
			require.NoError(t, err, "%s: the schema cannot check %s; if it now refuses the file, move it to refused", name, why)
			continue
		}
		require.ErrorIs(t, err, schema.ErrInvalid, name)
	}
}

// TestTriggerSchemaAgreesWithTheLoader checks edge cases of each rule
// against the loader: the schema accepts what the loader accepts and
// refuses what it refuses, except where YAML typing makes the loader
// laxer, listed as such (docs/triggers.md says so).
func TestTriggerSchemaAgreesWithTheLoader(t *testing.T) {
	t.Parallel()
	type verdict int
	const (
		bothAccept verdict = iota
		bothRefuse
		onlyLoaderAccepts
	)
	// One trigger, with the line given added to it.
	one := func(line string) string {
		return "tenant: acme\ntriggers:\n  - triggerId: t1\n    collection: orders\n    url: https://hooks.example.com/x\n" +
			"    " + line + "\n"
	}
	backoff := func(d string) string { return one("retryPolicy: {initialBackoff: " + d + ", maxBackoff: " + d + "}") }
	cases := []struct {
		name string
		file string
		want verdict
	}{
		{"minimal", one("events: [create]"), bothAccept},
		{"no triggers", "tenant: acme\ntriggers: []\n", bothAccept},
		{"tenant on the trigger", "triggers:\n  - {triggerId: t1, tenant: acme, collection: orders, url: 'https://x'}\n", bothAccept},
		{"no tenant anywhere", "triggers:\n  - {triggerId: t1, collection: orders, url: 'https://x'}\n", bothRefuse},
		{"no triggers key", "tenant: acme\n", bothRefuse},
		{"empty file", "", bothRefuse},
		{"not a mapping", "- a\n", bothRefuse},
		{"glob", strings.Replace(one("events: [create, update, delete]"), "collection: orders", "collection: chats/*/members", 1), bothAccept},
		{"glob leading slash", strings.Replace(one("events: []"), "collection: orders", "collection: /orders", 1), bothRefuse},
		{"id with dots", strings.Replace(one("events: []"), "t1", "orders.v2_paid-1", 1), bothAccept},
		{"id too long", strings.Replace(one("events: []"), "t1", strings.Repeat("t", 129), 1), bothRefuse},
		{"tenant too long", strings.Replace(one("events: []"), "acme", strings.Repeat("a", 129), 1), bothRefuse},
		{"upper-case scheme", strings.Replace(one("events: []"), "https://", "HTTPS://", 1), bothAccept},
		{"IPv6 host, port, query", strings.Replace(one("events: []"), "https://hooks.example.com/x", "'http://[::1]:8080/h?a=b'", 1), bothAccept},
		{"@ in the path", strings.Replace(one("events: []"), "/x", "/@me", 1), bothAccept},
		{"empty fragment", strings.Replace(one("events: []"), "/x", "/x#", 1), bothAccept},
		{"fragment", strings.Replace(one("events: []"), "/x", "/x#top", 1), bothRefuse},
		{"no host", strings.Replace(one("events: []"), "https://hooks.example.com/x", "https:///x", 1), bothRefuse},
		{"space in host", strings.Replace(one("events: []"), "https://hooks.example.com/x", "'https://hooks example.com/'", 1), bothRefuse},
		{"empty user", strings.Replace(one("events: []"), "https://", "https://@", 1), bothRefuse},
		{"header token characters", one("headers: {\"X-A.b_c!#$%&'*+^`|~\": v}"), bothAccept},
		{"reserved header, lower case", one("headers: {webhook-id: x}"), bothRefuse},
		{"reserved header, mixed case", one("headers: {Content-TYPE: x}"), bothRefuse},
		{"reserved header host", one("headers: {HOST: x}"), bothRefuse},
		{"header name prefixed like a reserved one", one("headers: {Webhook-Id-Extra: x, X-Authorization: y}"), bothAccept},
		{"header value with a line break", one(`headers: {X-A: "a\nb"}`), bothRefuse},
		{"maxAttempts 1000", one("retryPolicy: {maxAttempts: 1000}"), bothAccept},
		{"maxAttempts 1001", one("retryPolicy: {maxAttempts: 1001}"), bothRefuse},
		{"maxAttempts 2.0", one("retryPolicy: {maxAttempts: 2.0}"), bothAccept},
		{"multiplier 1", one("retryPolicy: {multiplier: 1}"), bothAccept},
		{"multiplier zero", one("retryPolicy: {multiplier: 0}"), bothRefuse},
		{"retryPolicy null", one("retryPolicy: null"), bothRefuse},
		{"file retryPolicy", "retryPolicy: {maxAttempts: 3}\n" + one("events: []"), bothAccept},
		{"timeout 0s", one("timeout: 0s"), bothRefuse},
		{"timeout 0", one("timeout: '0'"), bothRefuse},
		{"timeout 0.0ms", one("timeout: 0.0ms"), bothRefuse},
		{"timeout -1s", one("timeout: -1s"), bothRefuse},
		{"timeout 1d", one("timeout: 1d"), bothRefuse},
		{"timeout 1.5s", one("timeout: 1.5s"), bothAccept},
		{"backoff 1m30s", backoff("1m30s"), bothAccept},
		{"backoff +2h45m", backoff("+2h45m"), bothAccept},
		{"backoff .5s", backoff(".5s"), bothAccept},
		{"backoff 1.s", backoff("1.s"), bothAccept},
		{"backoff 250µs", backoff("250µs"), bothAccept},
		{"backoff 10us0.5ns", backoff("10us0.5ns"), bothAccept},
		{"backoff 0m0s", backoff("0m0s"), bothRefuse},
		{"backoff 1h0m", backoff("1h0m"), bothAccept},
		{"backoff 10", backoff("10"), bothRefuse},
		{"version number", one("version: 2"), bothAccept},
		{"version string", one("version: '2.1-beta'"), bothAccept},
		// YAML reads these as numbers, booleans or null; the loader takes
		// their text, the schema wants quotes.
		{"unquoted numeric id", strings.Replace(one("events: []"), "t1", "42", 1), onlyLoaderAccepts},
		{"unquoted boolean condition", one("condition: true"), onlyLoaderAccepts},
		{"unquoted numeric header value", one("headers: {X-N: 1}"), onlyLoaderAccepts},
		{"null events", one("events: null"), onlyLoaderAccepts},
		{"empty onFailure", one("onFailure: ''"), onlyLoaderAccepts},
		{"empty secretsRef", one("secretsRef: ''"), onlyLoaderAccepts},
		// yaml.v3 truncates a fraction decoded into an int: the loader
		// reads 2.5 as 2.
		{"maxAttempts 2.5", one("retryPolicy: {maxAttempts: 2.5}"), onlyLoaderAccepts},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "triggers.yaml")
			require.NoError(t, os.WriteFile(path, []byte(c.file), 0o600))
			_, loadErr := trigger.LoadTriggersFromFile(path, nil)
			schemaErr := schema.ValidateTriggerFile([]byte(c.file))
			switch c.want {
			case bothAccept:
				require.NoError(t, loadErr, "loader")
				require.NoError(t, schemaErr, "schema")
			case bothRefuse:
				require.Error(t, loadErr, "loader")
				require.ErrorIs(t, schemaErr, schema.ErrInvalid, "schema")
			case onlyLoaderAccepts:
				require.NoError(t, loadErr, "loader")
				require.ErrorIs(t, schemaErr, schema.ErrInvalid, "schema")
			}
		})
	}
}
