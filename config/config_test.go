package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/trigger"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func dur(d time.Duration) trigger.Duration { return trigger.Duration(d) }

// problemsOf returns the FieldErrors in err, failing if there are none.
func problemsOf(t *testing.T, err error) FieldErrors {
	t.Helper()
	require.Error(t, err)
	var fe FieldErrors
	require.True(t, errors.As(err, &fe), "want FieldErrors, got %T: %v", err, err)
	return fe
}

// writeFile writes a config file into a fresh temporary directory.
var (
	wantLog  = Log{Format: LogJSON, Level: LevelInfo, TemporalLevel: LevelWarn}
	wantNATS = NATS{
		URL:               "nats://127.0.0.1:4222",
		Stream:            "TRIGGERS",
		Consumer:          "triggerflow-ingest",
		Replicas:          1,
		MaxAge:            dur(168 * time.Hour),
		DuplicateWindow:   dur(2 * time.Minute),
		ImageMaxAge:       dur(14 * 24 * time.Hour),
		Provisioning:      ProvisionCreate,
		DeadLetterSubject: "TRIGGERS_DLQ",
		AuditStream:       "TRIGGERS_AUDIT",
	}
	wantTemporal = Temporal{HostPort: "127.0.0.1:7233", Namespace: "default", TaskQueue: "triggerflow"}
	wantWatcher  = Watcher{
		Tenant:             "acme",
		Source:             SourceSQLite,
		SQLite:             SQLiteSource{Path: "data/documents.db"},
		Postgres:           PostgresSource{Publication: "triggerflow", Slot: ""},
		CheckpointEvery:    500,
		MaxTenantLabels:    100,
		CheckpointInterval: dur(time.Second),
		Triggers:           "triggers/",
	}
	wantPublisher = Publisher{
		HashGuard:      new(true),
		MaxPayload:     262144,
		MaxPending:     1024,
		AckTimeout:     dur(5 * time.Second),
		RetryBackoff:   Backoff{Initial: dur(100 * time.Millisecond), Max: dur(5 * time.Second)},
		ImageThreshold: "4096",
	}
	wantIngest = Ingest{
		Lanes:             16,
		AckWait:           dur(15 * time.Second),
		MaxAckPending:     1024,
		MaxDeliver:        -1,
		DrainTimeout:      dur(5 * time.Second),
		ShutdownTimeout:   dur(10 * time.Second),
		CollisionPolicy:   CollisionSerialize,
		FetchBatch:        64,
		Sharing:           "pinned",
		PinnedTTL:         dur(30 * time.Second),
		MaxSignalBatch:    100,
		TakeoverMaxReplay: 10000,
		SignalWindow:      dur(time.Minute),
	}
	wantWorker = Worker{
		HTTPTimeout:          dur(30 * time.Second),
		MaxConnsPerHost:      64,
		MaxBodyBytes:         5242880,
		MaxResponseBodyBytes: 4096,
		RetryableStatuses:    []int{408, 429},
		AllowLoopback:        new(false),
		Retry:                trigger.RetryPolicy{MaxAttempts: 5, InitialBackoff: dur(time.Second), MaxBackoff: dur(5 * time.Minute), Multiplier: 2},
		QuietPeriod:          dur(time.Minute),
		ImageReleaseDelay:    dur(time.Minute),
		Secrets:              Secrets{Backend: SecretsFile, Dir: "secrets/", EnvPrefix: "TRIGGERFLOW_SECRET_", Bucket: "triggerflow-secrets"},
		Tokens:               Tokens{KeyFile: "keys/token-signing.pem", Issuer: "triggerflow", Audience: "webhook", TTL: trigger.Duration(5 * time.Minute)},
		// The Temporal SDK's defaults.
		MaxConcurrentActivities:      1000,
		MaxConcurrentWorkflowTasks:   1000,
		MaxConcurrentLocalActivities: 1000,
		WorkflowTaskPollers:          8,
		StopTimeout:                  dur(20 * time.Second),
	}
)

// requireDefaults parses an empty file of type T and requires it to be
// want.
func requireDefaults[T File[T]](t *testing.T, want T) T {
	t.Helper()
	f, err := Parse[T]("", nil, nil)
	require.NoError(t, err)
	require.Equal(t, want, *f)
	return *f
}

func TestDefaults(t *testing.T) {
	t.Parallel()

	t.Run("watcher", func(t *testing.T) {
		t.Parallel()
		f, err := Parse[WatcherFile]("", nil, env(map[string]string{"TRIGGERFLOW_WATCHER_TENANT": "acme"}))
		require.NoError(t, err)
		require.Equal(t, WatcherFile{
			Log: wantLog, HTTP: HTTP{Addr: ":9464"}, NATS: wantNATS,
			Watcher: wantWatcher, Publisher: wantPublisher, Validation: trigger.DefaultLimits(),
		}, *f)
		require.True(t, f.Publisher.HashGuardOn())
	})
	t.Run("ingest", func(t *testing.T) {
		t.Parallel()
		requireDefaults(t, IngestFile{
			Log: wantLog, HTTP: HTTP{Addr: ":9465"}, NATS: wantNATS, Temporal: wantTemporal, Ingest: wantIngest,
		})
	})
	t.Run("worker", func(t *testing.T) {
		t.Parallel()
		f := requireDefaults(t, WorkerFile{
			Log: wantLog, HTTP: HTTP{Addr: ":9466"}, NATS: wantNATS, Temporal: wantTemporal, Worker: wantWorker,
		})
		require.False(t, f.Worker.LoopbackAllowed())
		require.Equal(t, trigger.DefaultRetryPolicy(), f.Worker.Retry)
		require.False(t, f.Temporal.TLSOn())
	})
	t.Run("watcher needs a tenant", func(t *testing.T) {
		t.Parallel()
		_, err := Parse[WatcherFile]("", nil, nil)
		fe := problemsOf(t, err)
		require.Len(t, fe, 1)
		require.Equal(t, "watcher.tenant", fe[0].Field)
		require.Contains(t, err.Error(), "TRIGGERFLOW_WATCHER_TENANT")
	})
	t.Run("components", func(t *testing.T) {
		t.Parallel()
		// The component defaults stand alone, for code that builds
		// configuration without a file.
		require.Equal(t, wantNATS, NATS{}.WithDefaults())
		require.Equal(t, wantIngest, Ingest{}.WithDefaults())
		require.Equal(t, wantWorker, Worker{}.WithDefaults())
		require.NoError(t, NATS{}.WithDefaults().Validate())
		require.NoError(t, Temporal{}.WithDefaults().Validate())
		require.NoError(t, Publisher{}.WithDefaults().Validate())
		require.NoError(t, Ingest{}.WithDefaults().Validate())
		require.NoError(t, Worker{}.WithDefaults().Validate())
		require.NoError(t, Log{}.WithDefaults().Validate())
		require.NoError(t, HTTP{Addr: ":1"}.Validate())
		require.NoError(t, Watcher{Tenant: "t"}.WithDefaults().Validate())
	})
}

func TestDerivedDefaultsFollowTheFile(t *testing.T) {
	t.Parallel()
	f, err := Parse[IngestFile]("x.yaml", []byte("nats:\n  stream: ORDERS\n"), nil)
	require.NoError(t, err)
	require.Equal(t, "ORDERS_DLQ", f.NATS.DeadLetterSubject)
	require.Equal(t, "ORDERS_AUDIT", f.NATS.AuditStream)
}

func TestZeroAndNullMeanDefault(t *testing.T) {
	t.Parallel()
	f, err := Parse[IngestFile]("x.yaml", []byte(`
nats:
  replicas: 0
  url:
  stream: ""
ingest:
  maxDeliver: 0
  lanes: ~
`), nil)
	require.NoError(t, err)
	require.Equal(t, wantNATS, f.NATS)
	require.Equal(t, wantIngest, f.Ingest)
}

func TestExplicitFalseAndEmptySurvive(t *testing.T) {
	t.Parallel()
	w, err := Parse[WatcherFile]("x.yaml", []byte(`
watcher:
  tenant: acme
publisher:
  hashGuard: false
`), nil)
	require.NoError(t, err)
	require.False(t, w.Publisher.HashGuardOn())

	k, err := Parse[WorkerFile]("x.yaml", []byte(`
worker:
  retryableStatuses: []
`), nil)
	require.NoError(t, err)
	require.NotNil(t, k.Worker.RetryableStatuses)
	require.Empty(t, k.Worker.RetryableStatuses)
}

func TestFileOverrides(t *testing.T) {
	t.Parallel()

	t.Run("watcher", func(t *testing.T) {
		t.Parallel()
		f, err := LoadWatcher("testdata/watcher.yaml")
		require.NoError(t, err)
		require.Equal(t, LevelDebug, f.Log.Level)
		require.Equal(t, LogJSON, f.Log.Format)
		require.Equal(t, "nats://nats-1:4222,nats://nats-2:4222", f.NATS.URL)
		require.Equal(t, "ORDERS", f.NATS.Stream)
		require.Equal(t, "ORDERS_DLQ", f.NATS.DeadLetterSubject)
		require.Equal(t, 3, f.NATS.Replicas)
		require.Equal(t, "/etc/triggerflow/nats.creds", f.NATS.Credentials.CredsFile)
		require.Equal(t, SourcePostgres, f.Watcher.Source)
		require.Equal(t, "acme_triggers", f.Watcher.Postgres.Slot)
		require.Equal(t, "triggerflow", f.Watcher.Postgres.Publication)
		require.Equal(t, []string{"public.orders", "public.customers"}, f.Watcher.Postgres.Tables)
		require.Equal(t, []string{"orders"}, f.Watcher.Include)
		require.True(t, f.Watcher.StartFromNow)
		require.False(t, f.Publisher.HashGuardOn())
		require.Equal(t, 1<<20, f.Publisher.MaxPayload)
		require.Equal(t, dur(time.Minute), f.Validation.MaxTimeout)
		require.Equal(t, dur(100*time.Millisecond), f.Validation.MinTimeout)
	})
	t.Run("ingest", func(t *testing.T) {
		t.Parallel()
		f, err := LoadIngest("testdata/ingest.yaml")
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:19465", f.HTTP.Addr)
		require.Equal(t, "ingest-blue", f.NATS.Consumer)
		require.Equal(t, "acme.a1b2c", f.Temporal.Namespace)
		require.True(t, f.Temporal.TLSOn(), "an API key implies TLS")
		require.Equal(t, 32, f.Ingest.Lanes)
		require.Equal(t, 10, f.Ingest.MaxDeliver)
		require.Equal(t, CollisionAlert, f.Ingest.CollisionPolicy)
		require.Equal(t, dur(30*time.Second), f.Ingest.ShutdownTimeout)
	})
	t.Run("worker", func(t *testing.T) {
		t.Parallel()
		f, err := LoadWorker("testdata/worker.yaml")
		require.NoError(t, err)
		require.Equal(t, LogText, f.Log.Format)
		require.True(t, f.Temporal.TLSOn())
		require.Equal(t, dur(10*time.Second), f.Worker.HTTPTimeout)
		require.Equal(t, []int{408, 425, 429}, f.Worker.RetryableStatuses)
		require.True(t, f.Worker.AllowPrivate)
		// Unset retry fields keep their defaults.
		require.Equal(t, trigger.RetryPolicy{MaxAttempts: 10, InitialBackoff: dur(time.Second), MaxBackoff: dur(5 * time.Minute), Multiplier: 1.5}, f.Worker.Retry)
		require.Equal(t, SecretsNATSKV, f.Worker.Secrets.Backend)
		require.Equal(t, 200, f.Worker.MaxConcurrentActivities)
		require.Equal(t, 50, f.Worker.MaxConcurrentWorkflowTasks)
		require.Equal(t, 1000, f.Worker.MaxConcurrentLocalActivities, "unset: the SDK's default")
	})
}

func TestEnvOverridesWinOverFile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/watcher.yaml")
	require.NoError(t, err)
	f, err := Parse[WatcherFile]("testdata/watcher.yaml", data, env(map[string]string{
		"TRIGGERFLOW_NATS_URL":                       "nats://other:4222",
		"TRIGGERFLOW_NATS_REPLICAS":                  "5",
		"TRIGGERFLOW_NATS_MAX_AGE":                   "24h",
		"TRIGGERFLOW_WATCHER_TENANT":                 "globex",
		"TRIGGERFLOW_WATCHER_START_FROM_NOW":         "false",
		"TRIGGERFLOW_WATCHER_POSTGRES_TABLES":        " a.b , c ",
		"TRIGGERFLOW_WATCHER_INCLUDE":                "",
		"TRIGGERFLOW_PUBLISHER_HASH_GUARD":           "true",
		"TRIGGERFLOW_VALIDATION_MAX_HEADER_BYTES":    "1024",
		"TRIGGERFLOW_INGEST_LANES":                   "not for the watcher", // not a key here: ignored
		"TRIGGERFLOW_PUBLISHER_RETRY_BACKOFF_MAX":    "10s",
		"TRIGGERFLOW_WATCHER_POSTGRES_TENANT_COLUMN": "org",
		"TRIGGERFLOW_WATCHER_CHECKPOINT_EVERY":       "", // empty: default
		"TRIGGERFLOW_WATCHER_POSTGRES_SLOT":          " ",
	}))
	require.NoError(t, err)
	require.Equal(t, "nats://other:4222", f.NATS.URL)
	require.Equal(t, 5, f.NATS.Replicas)
	require.Equal(t, dur(24*time.Hour), f.NATS.MaxAge)
	require.Equal(t, "ORDERS", f.NATS.Stream, "file values the environment does not name stay")
	require.Equal(t, "globex", f.Watcher.Tenant)
	require.False(t, f.Watcher.StartFromNow)
	require.Equal(t, []string{"a.b", "c"}, f.Watcher.Postgres.Tables)
	require.Empty(t, f.Watcher.Include)
	require.True(t, f.Publisher.HashGuardOn())
	require.Equal(t, 1024, f.Validation.MaxHeaderBytes)
	require.Equal(t, dur(10*time.Second), f.Publisher.RetryBackoff.Max)
	require.Equal(t, "org", f.Watcher.Postgres.TenantColumn)
	require.Equal(t, 500, f.Watcher.CheckpointEvery)
	require.Equal(t, "acme_triggers", f.Watcher.Postgres.Slot, "an empty variable does not clear the file's value")

	w, err := Parse[WorkerFile]("", nil, env(map[string]string{
		"TRIGGERFLOW_WORKER_RETRY_MAX_ATTEMPTS": "3",
		"TRIGGERFLOW_WORKER_RETRY_MULTIPLIER":   "1.5",
		"TRIGGERFLOW_WORKER_RETRYABLE_STATUSES": "429",
		"TRIGGERFLOW_WORKER_ALLOW_LOOPBACK":     "true",
		"TRIGGERFLOW_TEMPORAL_TLS_SERVER_NAME":  "temporal.internal",
		"TRIGGERFLOW_NATS_CREDENTIALS_TOKEN":    "t0k3n",
		"TRIGGERFLOW_WORKER_SECRETS_ENV_PREFIX": "HOOK_",
		"TRIGGERFLOW_WORKER_SECRETS_BACKEND":    "env",
		"TRIGGERFLOW_HTTP_PPROF":                "true",
	}))
	require.NoError(t, err)
	require.True(t, w.HTTP.Pprof)
	require.Equal(t, 3, w.Worker.Retry.MaxAttempts)
	require.Equal(t, 1.5, w.Worker.Retry.Multiplier)
	require.Equal(t, []int{429}, w.Worker.RetryableStatuses)
	require.True(t, w.Worker.LoopbackAllowed())
	require.True(t, w.Temporal.TLSOn())
	require.Equal(t, "t0k3n", w.NATS.Credentials.Token)
	require.Equal(t, SecretsEnv, w.Worker.Secrets.Backend)
}

func TestBadEnvValue(t *testing.T) {
	t.Parallel()
	_, err := Parse[WorkerFile]("worker.yaml", []byte("worker:\n  httpTimeout: 5s\n"), env(map[string]string{
		"TRIGGERFLOW_NATS_REPLICAS":             "three",
		"TRIGGERFLOW_WORKER_HTTP_TIMEOUT":       "30",
		"TRIGGERFLOW_WORKER_ALLOW_PRIVATE":      "yes please",
		"TRIGGERFLOW_WORKER_RETRYABLE_STATUSES": "408,teapot",
		"TRIGGERFLOW_LOG_LEVEL":                 "loud",
	}))
	fe := problemsOf(t, err)
	msg := err.Error()
	require.Contains(t, msg, `$TRIGGERFLOW_NATS_REPLICAS: nats.replicas: "three" is not an integer`)
	require.Contains(t, msg, `$TRIGGERFLOW_WORKER_HTTP_TIMEOUT: worker.httpTimeout: "30" is not a duration`)
	require.Contains(t, msg, `$TRIGGERFLOW_WORKER_ALLOW_PRIVATE: worker.allowPrivate: "yes please" is not true or false`)
	require.Contains(t, msg, `$TRIGGERFLOW_WORKER_RETRYABLE_STATUSES: worker.retryableStatuses[1]: "teapot" is not an integer`)
	// A value that parses but fails validation still names its variable.
	require.Contains(t, msg, `$TRIGGERFLOW_LOG_LEVEL: log.level: "loud" is not one of debug, info, warn, error`)
	require.Len(t, fe, 5)
	for _, e := range fe {
		require.Equal(t, "worker.yaml", e.File)
		require.NotEmpty(t, e.Env)
	}
}

func TestUnknownKeyNamesFileAndLine(t *testing.T) {
	t.Parallel()
	_, err := LoadIngest("testdata/unknown-key.yaml")
	fe := problemsOf(t, err)
	require.Len(t, fe, 2)
	require.Equal(t, &FieldError{File: "testdata/unknown-key.yaml", Line: 3, Field: "nats.max_age", Reason: `is not a known key; did you mean "maxAge"?`}, fe[0])
	require.Equal(t, "testdata/unknown-key.yaml", fe[1].File)
	require.Equal(t, 5, fe[1].Line)
	require.Equal(t, "ingest.lanez", fe[1].Field)
	require.Contains(t, err.Error(), "testdata/unknown-key.yaml:3: nats.max_age: is not a known key")
	require.Contains(t, err.Error(), `testdata/unknown-key.yaml:5: ingest.lanez: is not a known key; did you mean "lanes"? known keys here: ackWait, collisionPolicy`)

	// A key valid for another binary is unknown to this one.
	_, err = Parse[WatcherFile]("w.yaml", []byte("watcher:\n  tenant: a\ntemporal:\n  namespace: x\n"), nil)
	require.ErrorContains(t, err, "w.yaml:3: temporal: is not a known key")
}

// knownKeys lists t's YAML keys as unknown-key errors do.
func knownKeys(t reflect.Type) string {
	var keys []string
	for i := range t.NumField() {
		keys = append(keys, yamlName(t.Field(i)))
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

func TestUnknownKeySuggestsNearMiss(t *testing.T) {
	t.Parallel()
	_, err := LoadWatcher("testdata/typo-key.yaml")
	fe := problemsOf(t, err)
	byField := map[string]*FieldError{}
	for _, e := range fe {
		byField[e.Field] = e
	}

	// A typo gets the key it likely meant, and the known keys in case it
	// meant another.
	require.Equal(t, &FieldError{
		File:   "testdata/typo-key.yaml",
		Line:   2,
		Field:  "watcher.tennant",
		Reason: `is not a known key; did you mean "tenant"? known keys here: ` + knownKeys(reflect.TypeFor[Watcher]()),
	}, byField["watcher.tennant"])
	require.Contains(t, err.Error(), `testdata/typo-key.yaml:2: watcher.tennant: is not a known key; did you mean "tenant"? known keys here: `)

	// A key close to no known one gets only the list, as before.
	require.Equal(t, &FieldError{
		File:   "testdata/typo-key.yaml",
		Line:   4,
		Field:  "publisher.bogusSetting",
		Reason: "is not a known key; known keys here: " + knownKeys(reflect.TypeFor[Publisher]()),
	}, byField["publisher.bogusSetting"])
}

func TestUnknownKeyReason(t *testing.T) {
	t.Parallel()
	fields := map[string]int{"maxAge": 0, "replicas": 1, "stream": 2, "tenant": 3}
	cases := []struct{ key, want string }{
		// Another naming style of a known key: surely that key.
		{"max_age", `is not a known key; did you mean "maxAge"?`},
		{"MAX-AGE", `is not a known key; did you mean "maxAge"?`},
		// A typo within two edits: a suggestion plus the list.
		{"tennant", `is not a known key; did you mean "tenant"? known keys here: maxAge, replicas, stream, tenant`},
		{"Replica", `is not a known key; did you mean "replicas"? known keys here: maxAge, replicas, stream, tenant`},
		{"steam", `is not a known key; did you mean "stream"? known keys here: maxAge, replicas, stream, tenant`},
		// Nothing close: the list alone.
		{"database", "is not a known key; known keys here: maxAge, replicas, stream, tenant"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, unknownKey(c.key, fields), c.key)
	}
}

func TestSyntaxErrorNamesFileAndLine(t *testing.T) {
	t.Parallel()
	_, err := LoadIngest("testdata/syntax.yaml")
	fe := problemsOf(t, err)
	require.Len(t, fe, 1)
	require.Equal(t, "testdata/syntax.yaml", fe[0].File)
	require.Equal(t, 3, fe[0].Line)
	require.True(t, strings.HasPrefix(err.Error(), "testdata/syntax.yaml:3: invalid YAML: "), err.Error())
}

func TestStructuralErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml, want string
	}{
		{"scalar for mapping", "nats: localhost\n", `x.yaml:1: nats: must be a mapping of keys, not a scalar`},
		{"list for scalar", "nats:\n  url: [a, b]\n", `x.yaml:2: nats.url: must be a string, not a list`},
		{"scalar for list", "worker:\n  retryableStatuses: 429\n", `x.yaml:2: worker.retryableStatuses: must be a list of integer, not a scalar`},
		{"bad list item", "worker:\n  retryableStatuses:\n    - 408\n    - x\n", `x.yaml:4: worker.retryableStatuses[1]: "x" is not an integer`},
		{"duplicate key", "nats:\n  url: a\n  url: b\n", `x.yaml:3: nats.url: is set twice; first on line 2`},
		{"unknown root key", "base: &b {url: a}\n", `x.yaml:1: base: is not a known key`},
		{"merge", "nats:\n  <<: {url: a}\n", `x.yaml:2: nats.<<: merge keys are not supported`},
		{"two documents", "log: {}\n---\nlog: {}\n", `x.yaml:2: starts a second YAML document`},
		{"root not a mapping", "- a\n", `x.yaml:1: must be a mapping of keys, not a list`},
		{"negative duration", "nats:\n  maxAge: -1h\n", `x.yaml:2: nats.maxAge: "-1h" must not be negative`},
		{"bare number duration", "nats:\n  maxAge: 60\n", `x.yaml:2: nats.maxAge: "60" is not a duration like "500ms", "1s" or "5m"`},
		{"octal-looking int", "ingest:\n  lanes: 0x10\n", `x.yaml:2: ingest.lanes: "0x10" is not an integer`},
		{"huge int", "ingest:\n  lanes: 99999999999999999999\n", `ingest.lanes: "99999999999999999999" is out of range`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse[WorkerFile]("x.yaml", []byte(tc.yaml), nil)
			if strings.HasPrefix(tc.yaml, "ingest") {
				_, err = Parse[IngestFile]("x.yaml", []byte(tc.yaml), nil)
			}
			problemsOf(t, err)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("a bad value is reported once", func(t *testing.T) {
		t.Parallel()
		_, err := Parse[WatcherFile]("x.yaml", []byte("watcher:\n  tenant: [a]\n"), nil)
		fe := problemsOf(t, err)
		require.Len(t, fe, 1, err.Error())
		require.EqualError(t, err, "x.yaml:2: watcher.tenant: must be a string, not a list")
	})
	t.Run("aliases are followed", func(t *testing.T) {
		t.Parallel()
		f, err := Parse[WorkerFile]("x.yaml", []byte(`
nats:
  tls: &tls {caFile: /ca.pem}
temporal:
  tls: *tls
`), nil)
		require.NoError(t, err)
		require.Equal(t, "/ca.pem", f.Temporal.TLS.CAFile)
	})
	t.Run("empty and comment-only files are defaults", func(t *testing.T) {
		t.Parallel()
		for _, data := range []string{"", "# nothing\n", "---\n", "~\n"} {
			f, err := Parse[IngestFile]("x.yaml", []byte(data), nil)
			require.NoError(t, err, "%q", data)
			require.Equal(t, IngestFile{}.WithDefaults(), *f)
		}
	})
}

func TestInvalidValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*sections)
		field  string
		value  any // nil: the error shows no value
	}{
		{"log format", func(f *sections) { f.Log.Format = "xml" }, "log.format", "xml"},
		{"log level", func(f *sections) { f.Log.Level = "trace" }, "log.level", "trace"},
		{"temporal log level", func(f *sections) { f.Log.TemporalLevel = "none" }, "log.temporalLevel", "none"},
		{"http addr", func(f *sections) { f.HTTP.Addr = "9464" }, "http.addr", "9464"},
		{"http addr empty", func(f *sections) { f.HTTP.Addr = "" }, "http.addr", nil},
		{"nats url scheme", func(f *sections) { f.NATS.URL = "http://x:4222" }, "nats.url", "http://x:4222"},
		{"nats url empty entry", func(f *sections) { f.NATS.URL = "nats://a:1,,nats://b:1" }, "nats.url", "nats://a:1,,nats://b:1"},
		{"stream dot", func(f *sections) { f.NATS.Stream = "TRIG.GERS" }, "nats.stream", "TRIG.GERS"},
		{"stream wildcard", func(f *sections) { f.NATS.Stream = "T*" }, "nats.stream", "T*"},
		{"stream gt", func(f *sections) { f.NATS.Stream = "T>" }, "nats.stream", "T>"},
		{"stream space", func(f *sections) { f.NATS.Stream = "T S" }, "nats.stream", "T S"},
		{"stream not a bucket name", func(f *sections) { f.NATS.Stream = "TRIGGERS@prod" }, "nats.stream", "TRIGGERS@prod"},
		{"stream slash", func(f *sections) { f.NATS.Stream = "a/b" }, "nats.stream", "a/b"},
		{"stream backslash", func(f *sections) { f.NATS.Stream = `a\b` }, "nats.stream", `a\b`},
		{"stream too long", func(f *sections) { f.NATS.Stream = strings.Repeat("S", 256) }, "nats.stream", strings.Repeat("S", 256)},
		{"consumer", func(f *sections) { f.NATS.Consumer = "in.gest" }, "nats.consumer", "in.gest"},
		{"replicas zero", func(f *sections) { f.NATS.Replicas = 0 }, "nats.replicas", 0},
		{"replicas six", func(f *sections) { f.NATS.Replicas = 6 }, "nats.replicas", 6},
		{"max age", func(f *sections) { f.NATS.MaxAge = 0 }, "nats.maxAge", dur(0)},
		{"duplicate window zero", func(f *sections) { f.NATS.DuplicateWindow = 0 }, "nats.duplicateWindow", dur(0)},
		{"duplicate window over max age", func(f *sections) { f.NATS.DuplicateWindow = dur(200 * time.Hour) }, "nats.duplicateWindow", dur(200 * time.Hour)},
		{"provisioning", func(f *sections) { f.NATS.Provisioning = "auto" }, "nats.provisioning", "auto"},
		{"dlq wildcard", func(f *sections) { f.NATS.DeadLetterSubject = "dlq.>" }, "nats.deadLetterSubject", "dlq.>"},
		{"dlq empty token", func(f *sections) { f.NATS.DeadLetterSubject = "dlq..x" }, "nats.deadLetterSubject", "dlq..x"},
		{"audit stream name", func(f *sections) { f.NATS.AuditStream = "A.B" }, "nats.auditStream", "A.B"},
		{"audit stream equals stream", func(f *sections) { f.NATS.AuditStream = "TRIGGERS" }, "nats.auditStream", "TRIGGERS"},
		{"two auth methods", func(f *sections) { f.NATS.Credentials.Token = "t"; f.NATS.Credentials.CredsFile = "c" }, "nats.credentials", nil},
		{"user without password", func(f *sections) { f.NATS.Credentials.User = "u" }, "nats.credentials.password", nil},
		{"password without user", func(f *sections) { f.NATS.Credentials.Password = "p" }, "nats.credentials.user", nil},
		{"nats cert without key", func(f *sections) { f.NATS.TLS.CertFile = "c" }, "nats.tls.keyFile", nil},
		{"temporal key without cert", func(f *sections) { f.Temporal.TLS.KeyFile = "k" }, "temporal.tls.certFile", nil},
		{"temporal host port", func(f *sections) { f.Temporal.HostPort = "localhost" }, "temporal.hostPort", "localhost"},
		{"temporal namespace", func(f *sections) { f.Temporal.Namespace = "" }, "temporal.namespace", nil},
		{"temporal task queue", func(f *sections) { f.Temporal.TaskQueue = "" }, "temporal.taskQueue", nil},
		{"tenant empty", func(f *sections) { f.Watcher.Tenant = "" }, "watcher.tenant", nil},
		{"tenant charset", func(f *sections) { f.Watcher.Tenant = "acme corp" }, "watcher.tenant", "acme corp"},
		{"tenant too long", func(f *sections) { f.Watcher.Tenant = strings.Repeat("t", 129) }, "watcher.tenant", strings.Repeat("t", 129)},
		{"tenant over limit", func(f *sections) { f.Validation.MaxTenantLength = 2 }, "watcher.tenant", "acme"},
		{"source", func(f *sections) { f.Watcher.Source = "mongo" }, "watcher.source", "mongo"},
		{"sqlite path", func(f *sections) { f.Watcher.SQLite.Path = "" }, "watcher.sqlite.path", nil},
		{"postgres dsn", func(f *sections) { f.Watcher.Source = SourcePostgres }, "watcher.postgres.dsn", nil},
		{"postgres slot", func(f *sections) {
			f.Watcher.Source, f.Watcher.Postgres.DSN, f.Watcher.Postgres.Slot = SourcePostgres, "postgres://", "Acme-1"
		}, "watcher.postgres.slot", "Acme-1"},
		{"postgres publication", func(f *sections) {
			f.Watcher.Source, f.Watcher.Postgres.DSN, f.Watcher.Postgres.Publication = SourcePostgres, "postgres://", strings.Repeat("p", 64)
		}, "watcher.postgres.publication", strings.Repeat("p", 64)},
		{"postgres table", func(f *sections) {
			f.Watcher.Source, f.Watcher.Postgres.DSN, f.Watcher.Postgres.Tables = SourcePostgres, "postgres://", []string{"a", " "}
		}, "watcher.postgres.tables[1]", " "},
		{"include", func(f *sections) { f.Watcher.Include = []string{""} }, "watcher.include[0]", ""},
		{"exclude", func(f *sections) { f.Watcher.Exclude = []string{"x", ""} }, "watcher.exclude[1]", ""},
		{"start from now and resume token", func(f *sections) { f.Watcher.StartFromNow, f.Watcher.ResumeToken = true, "t" }, "watcher.startFromNow", true},
		{"checkpoint every", func(f *sections) { f.Watcher.CheckpointEvery = -1 }, "watcher.checkpointEvery", -1},
		{"checkpoint interval", func(f *sections) { f.Watcher.CheckpointInterval = 0 }, "watcher.checkpointInterval", dur(0)},
		{"triggers", func(f *sections) { f.Watcher.Triggers = "" }, "watcher.triggers", nil},
		{"max payload", func(f *sections) { f.Publisher.MaxPayload = 65 << 20 }, "publisher.maxPayload", 65 << 20},
		{"max pending", func(f *sections) { f.Publisher.MaxPending = 0 }, "publisher.maxPending", 0},
		{"ack timeout", func(f *sections) { f.Publisher.AckTimeout = 0 }, "publisher.ackTimeout", dur(0)},
		{"backoff initial", func(f *sections) { f.Publisher.RetryBackoff.Initial = 0 }, "publisher.retryBackoff.initial", dur(0)},
		{"backoff max", func(f *sections) { f.Publisher.RetryBackoff.Max = dur(time.Millisecond) }, "publisher.retryBackoff.max", dur(time.Millisecond)},
		{"max tenant length", func(f *sections) { f.Validation.MaxTenantLength = 500 }, "validation.maxTenantLength", 500},
		{"max collection length", func(f *sections) { f.Validation.MaxCollectionLength = 0 }, "validation.maxCollectionLength", 0},
		{"max header bytes", func(f *sections) { f.Validation.MaxHeaderBytes = -1 }, "validation.maxHeaderBytes", -1},
		{"min timeout", func(f *sections) { f.Validation.MinTimeout = 0 }, "validation.minTimeout", dur(0)},
		{"max timeout", func(f *sections) { f.Validation.MaxTimeout = dur(time.Millisecond) }, "validation.maxTimeout", dur(time.Millisecond)},
		{"lanes", func(f *sections) { f.Ingest.Lanes = 0 }, "ingest.lanes", 0},
		{"ack wait", func(f *sections) { f.Ingest.AckWait = 0 }, "ingest.ackWait", dur(0)},
		{"max ack pending", func(f *sections) { f.Ingest.MaxAckPending = 0 }, "ingest.maxAckPending", 0},
		{"max deliver zero", func(f *sections) { f.Ingest.MaxDeliver = 0 }, "ingest.maxDeliver", 0},
		{"max deliver negative", func(f *sections) { f.Ingest.MaxDeliver = -2 }, "ingest.maxDeliver", -2},
		{"drain timeout", func(f *sections) { f.Ingest.DrainTimeout = 0 }, "ingest.drainTimeout", dur(0)},
		{"shutdown before drain", func(f *sections) { f.Ingest.ShutdownTimeout = dur(time.Second) }, "ingest.shutdownTimeout", dur(time.Second)},
		{"collision policy", func(f *sections) { f.Ingest.CollisionPolicy = "drop" }, "ingest.collisionPolicy", "drop"},
		{"fetch batch", func(f *sections) { f.Ingest.FetchBatch = 0 }, "ingest.fetchBatch", 0},
		{"fetch batch over pending", func(f *sections) { f.Ingest.FetchBatch = 2000 }, "ingest.fetchBatch", 2000},
		{"pinned TTL too short", func(f *sections) { f.Ingest.PinnedTTL = dur(time.Second) }, "ingest.pinnedTTL", dur(time.Second)},
		{"pinned TTL within shutdown", func(f *sections) { f.Ingest.PinnedTTL = dur(5 * time.Second) }, "ingest.pinnedTTL", dur(5 * time.Second)},
		{"http timeout", func(f *sections) { f.Worker.HTTPTimeout = 0 }, "worker.httpTimeout", dur(0)},
		{"max conns", func(f *sections) { f.Worker.MaxConnsPerHost = 0 }, "worker.maxConnsPerHost", 0},
		{"max body", func(f *sections) { f.Worker.MaxBodyBytes = 0 }, "worker.maxBodyBytes", 0},
		{"max response body", func(f *sections) { f.Worker.MaxResponseBodyBytes = 0 }, "worker.maxResponseBodyBytes", 0},
		{"retryable status", func(f *sections) { f.Worker.RetryableStatuses = []int{429, 503} }, "worker.retryableStatuses[1]", 503},
		{"max attempts", func(f *sections) { f.Worker.Retry.MaxAttempts = 0 }, "worker.retry.maxAttempts", 0},
		{"initial backoff", func(f *sections) { f.Worker.Retry.InitialBackoff = 0 }, "worker.retry.initialBackoff", dur(0)},
		{"max backoff", func(f *sections) { f.Worker.Retry.MaxBackoff = dur(time.Millisecond) }, "worker.retry.maxBackoff", dur(time.Millisecond)},
		{"multiplier", func(f *sections) { f.Worker.Retry.Multiplier = 0.5 }, "worker.retry.multiplier", 0.5},
		{"quiet period", func(f *sections) { f.Worker.QuietPeriod = 0 }, "worker.quietPeriod", dur(0)},
		{"quiet period under a second", func(f *sections) { f.Worker.QuietPeriod = dur(500 * time.Millisecond) }, "worker.quietPeriod", dur(500 * time.Millisecond)},
		{"max concurrent activities", func(f *sections) { f.Worker.MaxConcurrentActivities = -1 }, "worker.maxConcurrentActivities", -1},
		{"max concurrent workflow tasks", func(f *sections) { f.Worker.MaxConcurrentWorkflowTasks = 1 }, "worker.maxConcurrentWorkflowTasks", 1},
		{"max concurrent local activities", func(f *sections) { f.Worker.MaxConcurrentLocalActivities = -5 }, "worker.maxConcurrentLocalActivities", -5},
		{"secrets backend", func(f *sections) { f.Worker.Secrets.Backend = "vault" }, "worker.secrets.backend", "vault"},
		{"secrets dir", func(f *sections) { f.Worker.Secrets.Dir = "" }, "worker.secrets.dir", nil},
		{"secrets env prefix", func(f *sections) {
			f.Worker.Secrets.Backend, f.Worker.Secrets.EnvPrefix = SecretsEnv, "MY-SECRET"
		}, "worker.secrets.envPrefix", "MY-SECRET"},
		{"secrets bucket", func(f *sections) {
			f.Worker.Secrets.Backend, f.Worker.Secrets.Bucket = SecretsNATSKV, "a.b"
		}, "worker.secrets.bucket", "a.b"},
	}

	paths := map[string]bool{}
	for _, typ := range fileTypes {
		for _, k := range keysOf(typ) {
			paths[k.path] = true
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := defaultSections()
			tc.mutate(&s)
			section, _, _ := strings.Cut(tc.field, ".")
			checked := 0
			for _, f := range s.files() {
				err := f.Validate()
				if !hasSection(f, section) {
					require.NoError(t, err, "%T has no %s section", f, section)
					continue
				}
				checked++
				fe := problemsOf(t, err)
				require.Len(t, fe, 1, "%T: want exactly one problem, got: %v", f, err)
				e := fe[0]
				require.Equal(t, tc.field, e.Field)
				require.Equal(t, tc.value, e.Value)
				require.Contains(t, e.Error(), tc.field+": ")
				if tc.value != nil {
					require.Contains(t, e.Error(), formatValue(tc.value))
				}
				// Every problem names a real key, or the block holding it.
				field, _, _ := strings.Cut(e.Field, "[")
				require.True(t, paths[field] || field == "nats.credentials", "%s is not a key", field)
			}
			require.NotZero(t, checked, "no file has the %s section", section)
		})
	}
}

// sections holds one of each section of the binaries' files, so that one
// table can break any of them; files then checks every file that has it.
type sections struct {
	Log        Log
	HTTP       HTTP
	NATS       NATS
	Temporal   Temporal
	Watcher    Watcher
	Publisher  Publisher
	Validation Validation
	Ingest     Ingest
	Worker     Worker
}

func defaultSections() sections {
	w := WatcherFile{Watcher: Watcher{Tenant: "acme"}}.WithDefaults()
	return sections{
		Log: w.Log, HTTP: w.HTTP, NATS: w.NATS, Temporal: Temporal{}.WithDefaults(),
		Watcher: w.Watcher, Publisher: w.Publisher, Validation: w.Validation,
		Ingest: Ingest{}.WithDefaults(), Worker: Worker{}.WithDefaults(),
	}
}

// files returns each binary's file made of s.
func (s sections) files() []interface{ Validate() error } {
	return []interface{ Validate() error }{
		WatcherFile{Log: s.Log, HTTP: s.HTTP, NATS: s.NATS, Watcher: s.Watcher, Publisher: s.Publisher, Validation: s.Validation},
		IngestFile{Log: s.Log, HTTP: s.HTTP, NATS: s.NATS, Temporal: s.Temporal, Ingest: s.Ingest},
		WorkerFile{Log: s.Log, HTTP: s.HTTP, NATS: s.NATS, Temporal: s.Temporal, Worker: s.Worker},
	}
}

// hasSection reports whether file f has the top-level key name.
func hasSection(f any, name string) bool {
	t := reflect.TypeOf(f)
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return true
		}
	}
	return false
}

func TestErrorMessageFormat(t *testing.T) {
	t.Parallel()
	_, err := Parse[IngestFile]("config.yaml", []byte("ingest:\n  collisionPolicy: drop\n"), nil)
	require.EqualError(t, err, `config.yaml:2: ingest.collisionPolicy: "drop" is not one of serialize, alert, fail`)

	// A bad default-derived value has no line to point at.
	_, err = Parse[IngestFile]("config.yaml", []byte("nats:\n  stream: A.B\n"), nil)
	require.ErrorContains(t, err, `config.yaml:2: nats.stream: "A.B" is not a valid JetStream name`)
	require.ErrorContains(t, err, `config.yaml: nats.auditStream: "A.B_AUDIT" is not a valid JetStream name`)

	// The worker pool's sizes, from the file and from the environment.
	_, err = Parse[WorkerFile]("worker.yaml", []byte("worker:\n  maxConcurrentWorkflowTasks: 1\n"),
		env(map[string]string{"TRIGGERFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES": "-3"}))
	require.ErrorContains(t, err, "worker.yaml:2: worker.maxConcurrentWorkflowTasks: 1 must be at least 2")
	require.ErrorContains(t, err, "$TRIGGERFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES: worker.maxConcurrentActivities: -3 must be at least 1")

	// Secrets never appear in messages.
	_, err = Parse[WorkerFile]("config.yaml", []byte("nats:\n  credentials:\n    password: hunter2\n"), nil)
	require.ErrorContains(t, err, "config.yaml: nats.credentials.user: must be set when nats.credentials.password is")
	require.NotContains(t, err.Error(), "hunter2")
}

func TestSeveralErrorsAtOnce(t *testing.T) {
	t.Parallel()
	_, err := LoadIngest("testdata/invalid.yaml")
	fe := problemsOf(t, err)
	type got struct {
		Line  int
		Field string
	}
	var all []got
	for _, e := range fe {
		require.Equal(t, "testdata/invalid.yaml", e.File)
		all = append(all, got{e.Line, e.Field})
	}
	require.ElementsMatch(t, []got{
		{4, "nats.maxAge"},
		{8, "ingest.lanes"},
		{2, "nats.stream"},
		{3, "nats.replicas"},
		{0, "nats.auditStream"}, // derived from the bad stream name
		{6, "ingest.collisionPolicy"},
		{7, "ingest.maxDeliver"},
	}, all)
	require.True(t, strings.HasPrefix(err.Error(), "7 configuration problems:\n  testdata/invalid.yaml:4: nats.maxAge: "), err.Error())
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	_, err := LoadWorker(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, "nope.yaml")
}

// TestLoadEmptyPathUsesEnvironmentOnly: with an empty path Load reads no
// file; every value comes from the process environment or, where none is
// set, the defaults. The test owns the environment: the TRIGGERFLOW_
// variables the process inherited are removed first, so no one's shell
// can change its outcome.
func TestLoadEmptyPathUsesEnvironmentOnly(t *testing.T) {
	// Not parallel: t.Setenv changes the process environment.
	clearConfigEnv(t)
	t.Setenv("TRIGGERFLOW_INGEST_LANES", "7")
	t.Setenv("TRIGGERFLOW_NATS_URL", "nats://env.example:4222")
	t.Setenv("TRIGGERFLOW_LOG_LEVEL", "debug")

	f, err := LoadIngest("")
	require.NoError(t, err)
	want := IngestFile{}.WithDefaults()
	want.Ingest.Lanes = 7
	want.NATS.URL = "nats://env.example:4222"
	want.Log.Level = LevelDebug
	require.Equal(t, want, *f, "the environment's three values over the defaults, nothing else")

	// The same variables reach every file type that has the key.
	w, err := LoadWorker("")
	require.NoError(t, err)
	require.Equal(t, "nats://env.example:4222", w.NATS.URL)
	require.Equal(t, LevelDebug, w.Log.Level)

	// And a bad value in the environment is reported as the environment's.
	t.Setenv("TRIGGERFLOW_INGEST_LANES", "many")
	_, err = LoadIngest("")
	require.ErrorContains(t, err, `$TRIGGERFLOW_INGEST_LANES: ingest.lanes: "many" is not an integer`)
}

// clearConfigEnv removes every TRIGGERFLOW_ variable from the process
// environment for the rest of the test; t.Setenv restores them after.
func clearConfigEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) {
			t.Setenv(name, "")
			require.NoError(t, os.Unsetenv(name))
		}
	}
}

// TestExamplesAreValidCompleteAndTrue loads the canonical example files and
// requires that each sets every key of its file type, to the default, so
// that what the examples say is what the code does.
func TestExamplesAreValidCompleteAndTrue(t *testing.T) {
	t.Parallel()
	t.Run("watcher", func(t *testing.T) {
		t.Parallel()
		checkExample(t, "examples/watcher.yaml", WatcherFile{Watcher: Watcher{Tenant: "acme"}}.WithDefaults())
	})
	t.Run("ingest", func(t *testing.T) {
		t.Parallel()
		checkExample(t, "examples/ingest.yaml", IngestFile{}.WithDefaults())
	})
	t.Run("worker", func(t *testing.T) {
		t.Parallel()
		checkExample(t, "examples/worker.yaml", WorkerFile{}.WithDefaults())
	})
}

func checkExample[T File[T]](t *testing.T, path string, want T) {
	t.Helper()
	got, err := Load[T](path)
	require.NoError(t, err)
	require.Equal(t, normalize(want), normalize(*got))

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))
	set := map[string]bool{}
	collectPaths(doc.Content[0], "", set)
	for _, k := range keysOf(reflect.TypeFor[T]()) {
		require.True(t, set[k.path], "%s does not show key %s", path, k.path)
	}
}

// normalize makes nil and empty lists equal: the examples write [] for
// lists whose default is nil.
func normalize[T any](v T) T {
	rv := reflect.ValueOf(&v).Elem()
	for _, k := range keysOf(rv.Type()) {
		if f := rv.FieldByIndex(k.index); f.Kind() == reflect.Slice && f.Len() == 0 {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return v
}

func collectPaths(n *yaml.Node, prefix string, set map[string]bool) {
	if n.Kind != yaml.MappingNode {
		set[prefix] = true
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		collectPaths(n.Content[i+1], joinPath(prefix, n.Content[i].Value), set)
	}
}

func TestTestdataFilesParse(t *testing.T) {
	t.Parallel()
	_, err := LoadWatcher("testdata/watcher.yaml")
	require.NoError(t, err)
	_, err = LoadIngest("testdata/ingest.yaml")
	require.NoError(t, err)
	_, err = LoadWorker("testdata/worker.yaml")
	require.NoError(t, err)
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"nats.url":                    "TRIGGERFLOW_NATS_URL",
		"watcher.startFromNow":        "TRIGGERFLOW_WATCHER_START_FROM_NOW",
		"worker.retry.maxAttempts":    "TRIGGERFLOW_WORKER_RETRY_MAX_ATTEMPTS",
		"nats.credentials.nkeyFile":   "TRIGGERFLOW_NATS_CREDENTIALS_NKEY_FILE",
		"temporal.tls.caFile":         "TRIGGERFLOW_TEMPORAL_TLS_CA_FILE",
		"worker.retryableStatuses[1]": "TRIGGERFLOW_WORKER_RETRYABLE_STATUSES",
		"a.someHTTPThing":             "TRIGGERFLOW_A_SOME_HTTP_THING",
	} {
		require.Equal(t, want, EnvName(path), path)
	}
	// No two keys of a file may share a variable.
	for _, typ := range fileTypes {
		seen := map[string]string{}
		for _, k := range keysOf(typ) {
			prev, dup := seen[k.env]
			require.False(t, dup, "%s and %s share %s", prev, k.path, k.env)
			seen[k.env] = k.path
		}
	}
}

var fileTypes = []reflect.Type{
	reflect.TypeFor[WatcherFile](),
	reflect.TypeFor[IngestFile](),
	reflect.TypeFor[WorkerFile](),
}

// TestEveryKeyCanBeSet guards against a field type that neither YAML nor
// the environment can fill.
func TestEveryKeyCanBeSet(t *testing.T) {
	t.Parallel()
	for _, typ := range fileTypes {
		for _, k := range keysOf(typ) {
			elem := k.typ
			if elem.Kind() == reflect.Slice {
				elem = elem.Elem()
			}
			sample := map[string]string{"duration": "1s", "string": "s", "boolean": "true", "integer": "1", "number": "1.5"}[typeName(elem)]
			require.NotEmpty(t, sample, "%s has unsupported type %s", k.path, k.typ)
			require.NoError(t, setScalar(reflect.New(elem).Elem(), sample), k.path)
		}
	}
}

func TestDump(t *testing.T) {
	t.Parallel()
	f, err := Parse[WorkerFile]("", nil, env(map[string]string{
		"TRIGGERFLOW_NATS_CREDENTIALS_USER":     "u",
		"TRIGGERFLOW_NATS_CREDENTIALS_PASSWORD": "hunter2",
		"TRIGGERFLOW_TEMPORAL_API_KEY":          "key-123",
		"TRIGGERFLOW_WORKER_ALLOW_PRIVATE":      "true",
	}))
	require.NoError(t, err)
	out, err := Dump(f)
	require.NoError(t, err)
	require.NotContains(t, string(out), "hunter2")
	require.NotContains(t, string(out), "key-123")
	require.Contains(t, string(out), "password: "+Redacted)
	require.Contains(t, string(out), "maxAge: 168h0m0s")
	require.Equal(t, "hunter2", f.NATS.Credentials.Password, "Dump must not change its argument")

	// The dump reloads to the same configuration, secrets aside.
	back, err := Parse[WorkerFile]("dump.yaml", out, nil)
	require.NoError(t, err)
	back.NATS.Credentials.Password = f.NATS.Credentials.Password
	back.Temporal.APIKey = f.Temporal.APIKey
	require.Equal(t, *f, *back)
}

// TestDocsListEveryKey keeps docs/configuration.md true: every key of every
// file must have a table row naming its path and its variable.
func TestDocsListEveryKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	var rows []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		}
	}
	for _, typ := range fileTypes {
		for _, k := range keysOf(typ) {
			found := false
			for _, row := range rows {
				if strings.Contains(row, "`"+k.path+"`") && strings.Contains(row, "`"+k.env+"`") {
					found = true
					break
				}
			}
			require.True(t, found, "docs/configuration.md has no table row with `%s` and `%s`", k.path, k.env)
		}
	}
}

// The publisher section maps onto publisher.Config field for field, and
// takes its defaults from the publisher package.
func TestPublisherForStream(t *testing.T) {
	t.Parallel()
	off := false
	cfg := Publisher{HashGuard: &off, MaxPending: 7}.WithDefaults().ForStream("S")
	require.Equal(t, "S", cfg.Stream)
	require.False(t, *cfg.HashGuard)
	require.Equal(t, 7, cfg.MaxPending)
	require.Equal(t, publisher.DefaultMaxPayload, cfg.MaxPayload)
	require.Equal(t, publisher.DefaultAckTimeout, cfg.AckTimeout)
	require.Equal(t, publisher.DefaultRetryInitial, cfg.RetryInitial)
	require.Equal(t, publisher.DefaultRetryMax, cfg.RetryMax)
}
