package config

import (
	"cmp"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// Each component below has WithDefaults, which returns a copy with every
// zero field set to its default, and Validate, which checks the values as
// they are; call it on the result of WithDefaults. Because zero means
// "default", a key set to 0, "" or false in a file is the same as leaving
// it out. The few switches whose default is on are *bool so that an
// explicit false survives.

// LogFormat is how log records are written.
type LogFormat string

// Log formats.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// LogLevel is a minimum log severity.
type LogLevel string

// Log levels.
const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// Slog returns l as a slog.Level; unknown values (which Validate rejects)
// map to info.
func (l LogLevel) Slog() slog.Level {
	switch l {
	case LevelDebug:
		return slog.LevelDebug
	case LevelWarn:
		return slog.LevelWarn
	case LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Log configures the process's structured logs.
type Log struct {
	// Format is "json", one object per line for log shippers, or "text"
	// for people. Defaults to "json"; `triggerflow dev` uses "text".
	Format LogFormat `yaml:"format"`
	// Level is the least severe level written: "debug", "info", "warn" or
	// "error". Defaults to "info".
	Level LogLevel `yaml:"level"`
	// TemporalLevel is the same threshold for the Temporal SDK's own
	// records, which at info log every poller start and retry and drown
	// ours. Defaults to "warn". The watcher has no Temporal client and
	// ignores it.
	TemporalLevel LogLevel `yaml:"temporalLevel"`
}

// WithDefaults returns l with zero fields set to their defaults.
func (l Log) WithDefaults() Log {
	l.Format = cmp.Or(l.Format, LogJSON)
	l.Level = cmp.Or(l.Level, LevelInfo)
	l.TemporalLevel = cmp.Or(l.TemporalLevel, LevelWarn)
	return l
}

// Validate reports every invalid field of l.
func (l Log) Validate() error { p := &problems{}; l.check(p); return p.err() }

func (l Log) check(p *problems) {
	oneOf(p, "log.format", l.Format, LogJSON, LogText)
	oneOf(p, "log.level", l.Level, LevelDebug, LevelInfo, LevelWarn, LevelError)
	oneOf(p, "log.temporalLevel", l.TemporalLevel, LevelDebug, LevelInfo, LevelWarn, LevelError)
}

// Each binary listens on its own port so all three can share a host
// without configuration.
const (
	defaultWatcherAddr = ":9464"
	defaultIngestAddr  = ":9465"
	defaultWorkerAddr  = ":9466"
)

// HTTP configures the operations endpoint: metrics, liveness, readiness.
type HTTP struct {
	// Addr is the listen address. The default depends on the binary:
	// watcher ":9464", ingest ":9465", worker ":9466", dev ":9464".
	Addr string `yaml:"addr"`
	// Pprof also serves Go's profiler under /debug/pprof/ on Addr, for
	// finding where CPU and memory go. Defaults to false: a heap profile
	// holds whatever is in memory, secrets included, and the endpoint is
	// unauthenticated, so enable it only where Addr is not reachable by
	// others.
	Pprof bool `yaml:"pprof"`
}

// withDefaults is unexported because HTTP has no default of its own; each
// file passes its binary's.
func (h HTTP) withDefaults(addr string) HTTP {
	h.Addr = cmp.Or(h.Addr, addr)
	return h
}

// Validate reports every invalid field of h.
func (h HTTP) Validate() error { p := &problems{}; h.check(p); return p.err() }

func (h HTTP) check(p *problems) {
	if h.Addr == "" {
		p.required("http.addr", h.Addr)
		return
	}
	if _, port, err := net.SplitHostPort(h.Addr); err != nil || port == "" {
		p.add("http.addr", h.Addr, `is not a listen address like ":9464" or "127.0.0.1:9464"`)
	}
}

// TLS configures a client's TLS connection. Relative paths are relative
// to the working directory.
type TLS struct {
	// Enabled forces TLS even when no other TLS key is set, for servers
	// with certificates from a public CA. Defaults to false; setting any
	// other TLS key turns TLS on as well.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	// Defaults to "" (system pool).
	CAFile string `yaml:"caFile"`
	// CertFile is the PEM client certificate for mutual TLS; it needs
	// KeyFile. Defaults to "" (no client certificate).
	CertFile string `yaml:"certFile"`
	// KeyFile is the PEM private key for CertFile. Defaults to "".
	KeyFile string `yaml:"keyFile"`
	// ServerName overrides the name checked against the server's
	// certificate, for servers reached by IP or through a proxy. Defaults
	// to "" (the host being dialled).
	ServerName string `yaml:"serverName"`
}

// On reports whether t asks for TLS at all.
func (t TLS) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

func (t TLS) check(p *problems, prefix string) {
	if t.CertFile != "" && t.KeyFile == "" {
		p.add(prefix+".keyFile", nil, "must be set when %s.certFile is", prefix)
	}
	if t.KeyFile != "" && t.CertFile == "" {
		p.add(prefix+".certFile", nil, "must be set when %s.keyFile is", prefix)
	}
}

// Provisioning says whether a process may create the JetStream streams and
// consumers or only verifies them; see streams.Provisioning.
type Provisioning = streams.Provisioning

// Provisioning modes.
const (
	ProvisionCreate = streams.ProvisionCreate
	ProvisionVerify = streams.ProvisionVerify
)

// NATS configures the connection to NATS and the JetStream resources that
// carry delivery tasks between the watcher and ingest.
type NATS struct {
	// URL is the server to connect to; a comma-separated list names
	// several servers of one cluster. Defaults to "nats://127.0.0.1:4222".
	URL string `yaml:"url"`
	// Stream is the JetStream stream holding delivery tasks. Defaults to
	// "TRIGGERS".
	Stream string `yaml:"stream"`
	// Consumer is the durable consumer ingest reads Stream with. Defaults
	// to "triggerflow-ingest".
	Consumer string `yaml:"consumer"`
	// Replicas is the stream's replication factor, 1 to 5; use 3 on a
	// production cluster. Defaults to 1.
	Replicas int `yaml:"replicas"`
	// MaxAge is how long an undelivered task is kept; it bounds how long
	// ingest may be down without losing work. Defaults to 168h (7 days).
	MaxAge trigger.Duration `yaml:"maxAge"`
	// DuplicateWindow is how long JetStream remembers message IDs to drop
	// a task the watcher republishes after a crash. It must be at most
	// MaxAge. Defaults to 2m.
	DuplicateWindow trigger.Duration `yaml:"duplicateWindow"`
	// ImageMaxAge is how long a large document image, stored in the
	// Stream + "_IMAGES" bucket while its task waits for delivery, is
	// kept; delivered tasks' images are deleted sooner. It must be at
	// least MaxAge, and should cover MaxAge plus the longest a delivery
	// may retry or a key stay blocked. Defaults to twice MaxAge (336h).
	ImageMaxAge trigger.Duration `yaml:"imageMaxAge"`
	// Provisioning is "create" or "verify"; see the Provision constants.
	// Defaults to "create".
	Provisioning Provisioning `yaml:"provisioning"`
	// DeadLetterSubject receives tasks ingest gives up on. Defaults to
	// Stream + "_DLQ" ("TRIGGERS_DLQ").
	DeadLetterSubject string `yaml:"deadLetterSubject"`
	// AuditStream records operator and start-up actions: checkpoint moves,
	// start-from-now, resume tokens, trigger reloads and dead-letter
	// redrives. Deliveries are not recorded there (Temporal's history holds
	// them). Defaults to Stream + "_AUDIT" ("TRIGGERS_AUDIT").
	AuditStream string `yaml:"auditStream"`
	// Credentials authenticate the connection; at most one method may be
	// set. Defaults to none.
	Credentials NATSCredentials `yaml:"credentials"`
	// TLS configures TLS to the server. A "tls://" URL or a server that
	// requires TLS turns it on too.
	TLS TLS `yaml:"tls"`
}

// NATSCredentials are the ways to authenticate to NATS. Use one.
type NATSCredentials struct {
	// CredsFile is a .creds file holding a user JWT and nkey seed
	// (decentralized auth, Synadia Cloud). Defaults to "".
	CredsFile string `yaml:"credsFile"`
	// NKeyFile is a file holding a user nkey seed. Defaults to "".
	NKeyFile string `yaml:"nkeyFile"`
	// User is the user name for password auth; it needs Password.
	// Defaults to "".
	User string `yaml:"user"`
	// Password is User's password. Defaults to "".
	Password string `yaml:"password" secret:"true"`
	// Token is a bearer token. Defaults to "".
	Token string `yaml:"token" secret:"true"`
}

// Streams is the streams package's view of n: names, limits and
// provisioning.
func (n NATS) Streams() streams.Config {
	return streams.Config{
		Stream: n.Stream, DeadLetterStream: n.DeadLetterSubject, AuditStream: n.AuditStream,
		Replicas: n.Replicas, MaxAge: n.MaxAge.D(), DuplicateWindow: n.DuplicateWindow.D(),
		ImageMaxAge: n.ImageMaxAge.D(), Provisioning: n.Provisioning,
	}
}

// WithDefaults returns n with zero fields set to their defaults; the
// stream settings take the streams package's (the dead-letter subject and
// audit stream follow Stream).
func (n NATS) WithDefaults() NATS {
	n.URL = cmp.Or(n.URL, "nats://127.0.0.1:4222")
	n.Consumer = cmp.Or(n.Consumer, "triggerflow-ingest")
	d := n.Streams().WithDefaults()
	n.Stream, n.DeadLetterSubject, n.AuditStream = d.Stream, d.DeadLetterStream, d.AuditStream
	n.Replicas, n.Provisioning = d.Replicas, d.Provisioning
	n.MaxAge, n.DuplicateWindow = trigger.Duration(d.MaxAge), trigger.Duration(d.DuplicateWindow)
	n.ImageMaxAge = trigger.Duration(d.ImageMaxAge)
	return n
}

// Validate reports every invalid field of n.
func (n NATS) Validate() error { p := &problems{}; n.check(p); return p.err() }

func (n NATS) check(p *problems) {
	checkNATSURL(p, "nats.url", n.URL)
	checkJetStreamName(p, "nats.stream", n.Stream)
	checkBucketBase(p, "nats.stream", n.Stream)
	checkBucketBase(p, "nats.deadLetterSubject", n.DeadLetterSubject)
	checkJetStreamName(p, "nats.consumer", n.Consumer)
	p.between("nats.replicas", n.Replicas, 1, 5)
	p.positive("nats.maxAge", n.MaxAge)
	p.positive("nats.duplicateWindow", n.DuplicateWindow)
	if n.MaxAge > 0 && n.DuplicateWindow > n.MaxAge {
		p.add("nats.duplicateWindow", n.DuplicateWindow, "must not exceed nats.maxAge (%s)", n.MaxAge)
	}
	if n.ImageMaxAge < n.MaxAge {
		p.add("nats.imageMaxAge", n.ImageMaxAge, "must be at least nats.maxAge (%s): a task must not outlive its images", n.MaxAge)
	}
	oneOf(p, "nats.provisioning", n.Provisioning, ProvisionCreate, ProvisionVerify)
	checkSubject(p, "nats.deadLetterSubject", n.DeadLetterSubject)
	checkJetStreamName(p, "nats.auditStream", n.AuditStream)
	if n.AuditStream != "" && n.AuditStream == n.Stream {
		p.add("nats.auditStream", n.AuditStream, "must differ from nats.stream")
	}
	n.Credentials.check(p)
	n.TLS.check(p, "nats.tls")
}

func (c NATSCredentials) check(p *problems) {
	var methods []string
	if c.CredsFile != "" {
		methods = append(methods, "credsFile")
	}
	if c.NKeyFile != "" {
		methods = append(methods, "nkeyFile")
	}
	if c.User != "" || c.Password != "" {
		methods = append(methods, "user/password")
	}
	if c.Token != "" {
		methods = append(methods, "token")
	}
	if len(methods) > 1 {
		p.add("nats.credentials", nil, "sets %s; use only one", strings.Join(methods, " and "))
	}
	if c.User != "" && c.Password == "" {
		p.add("nats.credentials.password", nil, "must be set when nats.credentials.user is")
	}
	if c.Password != "" && c.User == "" {
		p.add("nats.credentials.user", nil, "must be set when nats.credentials.password is")
	}
}

func checkNATSURL(p *problems, field, value string) {
	if value == "" {
		p.required(field, value)
		return
	}
	for _, s := range strings.Split(value, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			p.add(field, value, "has an empty entry in its comma-separated list")
			continue
		}
		if !strings.Contains(s, "://") {
			continue // nats.go accepts host:port and assumes nats://
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			p.add(field, s, "is not a URL like nats://host:4222")
			continue
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			p.add(field, s, "has scheme %q; want nats, tls, ws or wss", u.Scheme)
		}
	}
}

// checkJetStreamName applies the server's rules for stream and consumer
// names, which double as file names on the server's disk.
// checkBucketBase reports a stream name whose image bucket (name +
// "_IMAGES") JetStream would refuse: bucket names hold letters, digits,
// '-' and '_' only.
func checkBucketBase(p *problems, field, value string) {
	if value == "" || len(value) > 255 || strings.ContainsAny(value, ".*>/\\ \t\r\n") {
		return // checkJetStreamName or checkSubject reports it
	}
	if strings.IndexFunc(value, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		p.add(field, value, "may hold letters, digits, '-' and '_' only: its image bucket %q is named after it", value+"_IMAGES")
	}
}

func checkJetStreamName(p *problems, field, value string) {
	if value == "" {
		p.required(field, value)
		return
	}
	if len(value) > 255 {
		p.add(field, value, "is longer than 255 bytes")
		return
	}
	if strings.IndexFunc(value, func(r rune) bool {
		return strings.ContainsRune(".*>/\\", r) || unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		p.add(field, value, `is not a valid JetStream name: it must not contain '.', '*', '>', '/', '\' or whitespace`)
	}
}

// checkSubject accepts a literal subject; wildcards are for subscribing,
// and this one is published to.
func checkSubject(p *problems, field, value string) {
	if value == "" {
		p.required(field, value)
		return
	}
	for _, tok := range strings.Split(value, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.IndexFunc(tok, unicode.IsSpace) >= 0 {
			p.add(field, value, "is not a literal NATS subject: tokens between dots must be non-empty, without whitespace or wildcards")
			return
		}
	}
}

// Temporal configures the Temporal client of ingest and the worker.
type Temporal struct {
	// HostPort is the frontend address. Defaults to "127.0.0.1:7233".
	HostPort string `yaml:"hostPort"`
	// Namespace holds the delivery workflows. Defaults to "default".
	Namespace string `yaml:"namespace"`
	// TaskQueue is where ingest starts workflows and the worker polls.
	// Defaults to "triggerflow".
	TaskQueue string `yaml:"taskQueue"`
	// APIKey authenticates to Temporal Cloud; it implies TLS. Defaults to
	// "" (no API key).
	APIKey string `yaml:"apiKey" secret:"true"`
	// TLS configures TLS to the frontend.
	TLS TLS `yaml:"tls"`
	// Codec encrypts what the client puts in Temporal's history.
	Codec Codec `yaml:"codec"`
}

// Codec configures the encryption of the payloads ingest and the worker
// write to Temporal (documents, headers, URLs, signal and activity
// arguments and results, memo, summaries, failure messages); see package
// codec. Search attributes and workflow ids stay readable.
type Codec struct {
	// Enabled encrypts every payload with AES-256-GCM under ActiveKey.
	// Defaults to false: once on, every ingest and worker replica needs
	// every key still used by a history it may read (a worker lacking one
	// cannot run that document's workflow until it has it), and the
	// Temporal UI and CLI show payloads only through a codec server
	// (worker.codecServer or `triggerflow codec-server`). `triggerflow
	// dev` turns it on with a key of its own.
	Enabled bool `yaml:"enabled"`
	// KeyFile holds keys, one "id=<base64 of 32 bytes>" per line ('#'
	// starts a comment), as `triggerflow codec keygen` writes them.
	// Defaults to "" (keys from Keys only).
	KeyFile string `yaml:"keyFile"`
	// Keys are keys as "id=<base64>" entries, beside or instead of
	// KeyFile (in the environment: comma-separated). A key id in both
	// must hold the same key. Defaults to [].
	Keys []string `yaml:"keys,omitempty" secret:"true"`
	// ActiveKey is the id of the key that encrypts; every key of the ring
	// decrypts, so keys rotate without a stop. Required when Enabled.
	ActiveKey string `yaml:"activeKey"`
}

func (c Codec) check(p *problems) {
	if !c.Enabled {
		return
	}
	if c.KeyFile == "" && len(c.Keys) == 0 {
		p.add("temporal.codec.keyFile", nil, "or temporal.codec.keys must be set when temporal.codec.enabled is true ('triggerflow codec keygen --out FILE' makes a key file)")
	}
	ids := map[string]bool{}
	for i, e := range c.Keys {
		keys, err := codec.ParseKeys([]byte(e))
		if err != nil {
			// The value is secret; the reason names line and entry only.
			p.add(indexPath("temporal.codec.keys", i), nil, "%s", strings.TrimPrefix(err.Error(), codec.ErrInvalidKeys.Error()+": "))
			continue
		}
		for _, k := range keys {
			ids[k.ID] = true
		}
	}
	switch {
	case c.ActiveKey == "":
		p.required("temporal.codec.activeKey", c.ActiveKey)
	case codec.CheckKeyID(c.ActiveKey) != nil:
		p.add("temporal.codec.activeKey", c.ActiveKey, "is not a key id: use 1 to 64 letters, digits, '.', '_' and '-'")
	case c.KeyFile == "" && len(ids) > 0 && !ids[c.ActiveKey]:
		p.add("temporal.codec.activeKey", c.ActiveKey, "is none of the keys in temporal.codec.keys")
	}
}

// WithDefaults returns t with zero fields set to their defaults.
func (t Temporal) WithDefaults() Temporal {
	t.HostPort = cmp.Or(t.HostPort, "127.0.0.1:7233")
	t.Namespace = cmp.Or(t.Namespace, "default")
	t.TaskQueue = cmp.Or(t.TaskQueue, workflows.DefaultTaskQueue)
	return t
}

// TLSOn reports whether the client should use TLS. An API key implies it,
// as the Temporal SDK does, because sending one in clear text leaks it.
func (t Temporal) TLSOn() bool { return t.TLS.On() || t.APIKey != "" }

// Validate reports every invalid field of t.
func (t Temporal) Validate() error { p := &problems{}; t.check(p); return p.err() }

func (t Temporal) check(p *problems) {
	if t.HostPort == "" {
		p.required("temporal.hostPort", t.HostPort)
	} else if host, port, err := net.SplitHostPort(t.HostPort); err != nil || host == "" || port == "" {
		p.add("temporal.hostPort", t.HostPort, `is not a host:port like "127.0.0.1:7233"`)
	}
	p.required("temporal.namespace", t.Namespace)
	p.required("temporal.taskQueue", t.TaskQueue)
	t.TLS.check(p, "temporal.tls")
	t.Codec.check(p)
}

// Source is where the watcher reads document changes.
type Source string

// Change sources.
const (
	SourceSQLite   Source = "sqlite"
	SourcePostgres Source = "postgres"
)

// Watcher configures which document changes the watcher reads and where it
// finds its triggers.
type Watcher struct {
	// Tenant is the one tenant this watcher serves; every trigger it loads
	// must belong to it. Letters, digits, '-' and '_', at most 128
	// characters. Set this or Tenants.
	Tenant string `yaml:"tenant"`
	// Tenants serves several tenants from one change stream, each with
	// its own checkpoints and trigger set: a list of tenant names, or
	// ["*"] for every tenant that has a trigger file. A trigger naming a
	// tenant outside the list is a load error. Set this or Tenant.
	Tenants []string `yaml:"tenants"`
	// MaxTenantLabels bounds the tenant label values of the watcher's
	// metrics: past this many tenants, the rest are reported as
	// "_other" (logs and audit records still name them). Defaults to
	// 100; -1 names every tenant.
	MaxTenantLabels int `yaml:"maxTenantLabels"`
	// Source is "sqlite" (the embedded document store) or "postgres"
	// (logical replication). Defaults to "sqlite".
	Source Source `yaml:"source"`
	// SQLite configures the embedded store; used when Source is "sqlite".
	SQLite SQLiteSource `yaml:"sqlite"`
	// Postgres configures logical replication; used when Source is
	// "postgres".
	Postgres PostgresSource `yaml:"postgres"`
	// Include lists collection prefixes to watch; empty watches all.
	// Defaults to [].
	Include []string `yaml:"include"`
	// Exclude lists collection prefixes to skip even when included.
	// Defaults to [].
	Exclude []string `yaml:"exclude"`
	// StartFromNow skips changes made before the first start instead of
	// reading the whole history; it has no effect once a checkpoint
	// exists. Defaults to false.
	StartFromNow bool `yaml:"startFromNow"`
	// ResumeToken starts from this position instead of the stored
	// checkpoint, to replay or skip a stretch of changes. Defaults to "".
	ResumeToken string `yaml:"resumeToken"`
	// CheckpointEvery saves the position after this many changes...
	// Defaults to 500.
	CheckpointEvery int `yaml:"checkpointEvery"`
	// CheckpointInterval ...or after this long, whichever comes first; it
	// bounds how much is replayed (and deduplicated) after a crash.
	// Defaults to 1s.
	CheckpointInterval trigger.Duration `yaml:"checkpointInterval"`
	// Triggers is a trigger file or a directory of them. Defaults to
	// "triggers/".
	Triggers string `yaml:"triggers"`
}

// SQLiteSource configures the embedded document store.
type SQLiteSource struct {
	// Path is the database file. Defaults to "data/documents.db"; the dev
	// file defaults it to dev.dataDir + "/documents.db".
	Path string `yaml:"path"`
}

// PostgresSource configures PostgreSQL logical replication.
type PostgresSource struct {
	// DSN is the connection string; the role needs the REPLICATION
	// attribute. Required when the source is "postgres".
	DSN string `yaml:"dsn" secret:"true"`
	// Publication names the publication to stream. Defaults to
	// "triggerflow".
	Publication string `yaml:"publication"`
	// Slot names the replication slot that holds our position; each
	// watcher on one database needs its own. Defaults to "" meaning
	// "triggerflow_<tenant>" (lower-cased, other characters as '_', with a
	// short hash appended when that changed the name or it had to be cut
	// to 63 bytes), so each tenant scope gets its own slot.
	Slot string `yaml:"slot"`
	// Tables restricts the publication to these tables; empty means every
	// table. Defaults to [].
	Tables []string `yaml:"tables"`
	// TenantColumn names the column holding a row's tenant; rows of
	// tenants outside the scope are skipped. Defaults to "": with
	// watcher.tenant every row belongs to it; with watcher.tenants it (or
	// tenantFrom: schema) is required.
	TenantColumn string `yaml:"tenantColumn"`
	// TenantFrom says where a row's tenant comes from with
	// watcher.tenants: "column" (tenantColumn, tables shared by tenants)
	// or "schema" (one schema per tenant, named like it; the collection is
	// the bare table name). Defaults to "column".
	TenantFrom string `yaml:"tenantFrom"`
}

// WithDefaults returns w with zero fields set to their defaults.
func (w Watcher) WithDefaults() Watcher {
	w.Source = cmp.Or(w.Source, SourceSQLite)
	if w.SQLite.Path == "" {
		w.SQLite.Path = filepath.Join("data", "documents.db")
	}
	w.Postgres.Publication = cmp.Or(w.Postgres.Publication, "triggerflow")
	w.CheckpointEvery = cmp.Or(w.CheckpointEvery, 500)
	w.MaxTenantLabels = cmp.Or(w.MaxTenantLabels, tenantlabel.DefaultMax)
	if w.CheckpointInterval == 0 {
		w.CheckpointInterval = trigger.Duration(time.Second)
	}
	w.Triggers = cmp.Or(w.Triggers, "triggers/")
	return w
}

// slotRE is PostgreSQL's own rule for replication slot names.
var slotRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate reports every invalid field of w.
func (w Watcher) Validate() error { p := &problems{}; w.check(p); return p.err() }

func (w Watcher) check(p *problems) {
	switch {
	case w.Tenant == "" && len(w.Tenants) == 0:
		p.add("watcher.tenant", nil, "must be set (in the file or as $%s), or watcher.tenants", EnvName("watcher.tenant"))
	case w.Tenant != "" && len(w.Tenants) > 0:
		p.add("watcher.tenants", w.Tenants, "contradicts watcher.tenant; set only one")
	case w.Tenant != "":
		if reason := trigger.TenantProblem(w.Tenant, trigger.DefaultLimits().MaxTenantLength); reason != "" {
			p.add("watcher.tenant", w.Tenant, "is not a tenant name: %s", reason)
		}
	}
	for i, t := range w.Tenants {
		if t == trigger.AllTenants {
			if len(w.Tenants) > 1 {
				p.add(indexPath("watcher.tenants", i), t, `means every tenant; it cannot be combined with names`)
			}
			continue
		}
		if reason := trigger.TenantProblem(t, trigger.DefaultLimits().MaxTenantLength); reason != "" {
			p.add(indexPath("watcher.tenants", i), t, "is not a tenant name: %s", reason)
		}
	}
	if w.MaxTenantLabels < -1 {
		p.add("watcher.maxTenantLabels", w.MaxTenantLabels, "must be -1 (no limit), 0 (the default) or positive")
	}
	oneOf(p, "watcher.source", w.Source, SourceSQLite, SourcePostgres)
	switch w.Source {
	case SourceSQLite:
		p.required("watcher.sqlite.path", w.SQLite.Path)
	case SourcePostgres:
		p.required("watcher.postgres.dsn", w.Postgres.DSN)
		if w.Postgres.Publication == "" {
			p.required("watcher.postgres.publication", w.Postgres.Publication)
		} else if len(w.Postgres.Publication) > 63 {
			p.add("watcher.postgres.publication", w.Postgres.Publication, "is longer than PostgreSQL's 63-byte identifier limit")
		}
		if w.Postgres.Slot != "" && !slotRE.MatchString(w.Postgres.Slot) {
			p.add("watcher.postgres.slot", w.Postgres.Slot, "is not a replication slot name: use 1 to 63 lower-case letters, digits or '_'")
		}
		nonEmptyItems(p, "watcher.postgres.tables", w.Postgres.Tables)
		if w.Postgres.TenantFrom != "" {
			oneOf(p, "watcher.postgres.tenantFrom", w.Postgres.TenantFrom, "column", "schema")
		}
		switch {
		case w.Postgres.TenantFrom == "schema" && w.Postgres.TenantColumn != "":
			p.add("watcher.postgres.tenantColumn", w.Postgres.TenantColumn, "contradicts watcher.postgres.tenantFrom: schema; set only one")
		case w.Tenant == "" && len(w.Tenants) > 0 && w.Postgres.TenantColumn == "" && w.Postgres.TenantFrom != "schema":
			p.add("watcher.postgres.tenantColumn", w.Postgres.TenantColumn, "is required with watcher.tenants (or set watcher.postgres.tenantFrom: schema): it says whose each row is")
		}
	}
	nonEmptyItems(p, "watcher.include", w.Include)
	nonEmptyItems(p, "watcher.exclude", w.Exclude)
	if w.StartFromNow && w.ResumeToken != "" {
		p.add("watcher.startFromNow", true, "contradicts watcher.resumeToken; set only one")
	}
	p.atLeast("watcher.checkpointEvery", w.CheckpointEvery, 1)
	p.positive("watcher.checkpointInterval", w.CheckpointInterval)
	p.required("watcher.triggers", w.Triggers)
}

func nonEmptyItems(p *problems, field string, items []string) {
	for i, s := range items {
		if strings.TrimSpace(s) == "" {
			p.add(indexPath(field, i), s, "is empty")
		}
	}
}

// Backoff is an exponential backoff that doubles from Initial up to Max.
type Backoff struct {
	// Initial is the first wait.
	Initial trigger.Duration `yaml:"initial"`
	// Max caps the wait.
	Max trigger.Duration `yaml:"max"`
}

func (b Backoff) check(p *problems, prefix string) {
	p.positive(prefix+".initial", b.Initial)
	if b.Max < b.Initial {
		p.add(prefix+".max", b.Max, "must be at least %s.initial (%s)", prefix, b.Initial)
	}
}

// maxNATSPayload is the largest max_payload a NATS server accepts.
const maxNATSPayload = 64 << 20

// Publisher configures how the watcher puts delivery tasks on JetStream.
type Publisher struct {
	// HashGuard keeps every subject within 1024 bytes: when the base64url
	// docKey would make it longer, the docKey token becomes a 32-character
	// SHA-256 hex prefix and the task is flagged subjectHashed. With it off,
	// such a change is dead-lettered instead. Defaults to true; it is a
	// pointer so that false can be told from unset (see HashGuardOn).
	HashGuard *bool `yaml:"hashGuard"`
	// MaxPayload is the largest task in bytes; a bigger one goes to the
	// dead-letter subject with its reason and is counted, never blocking
	// the stream or vanishing. It must not exceed the server's
	// max_payload. Defaults to 262144 (256 KiB).
	MaxPayload int `yaml:"maxPayload"`
	// MaxPending is how many publishes may await their JetStream ack at
	// once. Defaults to 1024.
	MaxPending int `yaml:"maxPending"`
	// AckTimeout is how long one publish may wait for its ack before it is
	// retried. Defaults to 5s.
	AckTimeout trigger.Duration `yaml:"ackTimeout"`
	// RetryBackoff spaces retries of a failed publish. Defaults to
	// initial 100ms, max 5s.
	RetryBackoff Backoff `yaml:"retryBackoff"`
	// SigningKeyFile, when set, signs every task with the Ed25519 key in
	// this file (one line "id=<base64 seed>", see `triggerflow tasks
	// keygen`), so ingest and the worker can refuse tasks nobody signed.
	// Defaults to "" (tasks go unsigned).
	SigningKeyFile string `yaml:"signingKeyFile"`
	// ImageThreshold is the size in bytes above which a document image
	// is stored in the image bucket (nats.stream + "_IMAGES") and the
	// task carries a reference and digest instead: a claim check, so
	// neither NATS messages nor Temporal history hold large documents.
	// "always" stores every image, "inline" none (tasks then carry
	// images up to maxPayload). Defaults to 4096.
	ImageThreshold string `yaml:"imageThreshold"`
}

// Image threshold words, besides a size in bytes.
const (
	ImagesAlways = "always"
	ImagesInline = "inline"
)

// imageThreshold is ImageThreshold as the publisher package reads it; 0
// for unset or unreadable (Validate reports the latter).
func (p Publisher) imageThreshold() int {
	switch p.ImageThreshold {
	case "":
		return 0
	case ImagesAlways:
		return publisher.StoreEveryImage
	case ImagesInline:
		return publisher.KeepImagesInline
	}
	n, err := strconv.Atoi(p.ImageThreshold)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// HashGuardOn reports whether the hash guard is on; unset means on.
func (p Publisher) HashGuardOn() bool { return p.HashGuard == nil || *p.HashGuard }

// ForStream is the publisher package's view of p, publishing to the task
// stream named stream; the caller adds the dead-letter sink, logger and
// registerer.
func (p Publisher) ForStream(stream string) publisher.Config {
	return publisher.Config{
		Stream: stream, HashGuard: p.HashGuard, MaxPayload: p.MaxPayload, MaxPending: p.MaxPending,
		AckTimeout: p.AckTimeout.D(), RetryInitial: p.RetryBackoff.Initial.D(), RetryMax: p.RetryBackoff.Max.D(),
		ImageThreshold: p.imageThreshold(),
	}
}

// WithDefaults returns p with zero fields set to the publisher package's
// defaults.
func (p Publisher) WithDefaults() Publisher {
	d := p.ForStream("").WithDefaults()
	p.HashGuard, p.MaxPayload, p.MaxPending = d.HashGuard, d.MaxPayload, d.MaxPending
	p.AckTimeout = trigger.Duration(d.AckTimeout)
	p.RetryBackoff = Backoff{Initial: trigger.Duration(d.RetryInitial), Max: trigger.Duration(d.RetryMax)}
	if p.ImageThreshold == "" {
		p.ImageThreshold = strconv.Itoa(d.ImageThreshold)
	}
	return p
}

// Validate reports every invalid field of p.
func (p Publisher) Validate() error { ps := &problems{}; p.check(ps); return ps.err() }

func (p Publisher) check(ps *problems) {
	ps.between("publisher.maxPayload", p.MaxPayload, 1, maxNATSPayload)
	ps.atLeast("publisher.maxPending", p.MaxPending, 1)
	ps.positive("publisher.ackTimeout", p.AckTimeout)
	p.RetryBackoff.check(ps, "publisher.retryBackoff")
	if p.ImageThreshold != "" && p.imageThreshold() == 0 {
		ps.add("publisher.imageThreshold", p.ImageThreshold, "must be a size in bytes (at least 1), %q or %q", ImagesAlways, ImagesInline)
	}
}

// CollisionPolicy is what ingest does when one hashed subject token is seen
// with two different docKeys; see ingest.CollisionPolicy.
type CollisionPolicy = ingest.CollisionPolicy

// Collision policies.
const (
	CollisionSerialize = ingest.CollisionSerialize
	CollisionAlert     = ingest.CollisionAlert
	CollisionFail      = ingest.CollisionFail
)

// Ingest configures how ingest turns delivery tasks into Temporal
// workflows.
type Ingest struct {
	// Lanes is how many tasks are handed to Temporal in parallel; tasks
	// for one document always share a lane, which keeps them in order.
	// Defaults to 16.
	Lanes int `yaml:"lanes"`
	// AckWait is how long JetStream waits for ingest to ack a task before
	// redelivering it: after a crash, how soon the tasks the replica held
	// come back (ingest keeps resetting the timer of the tasks it holds).
	// Defaults to 15s.
	AckWait trigger.Duration `yaml:"ackWait"`
	// MaxAckPending caps tasks delivered but not yet acked. Defaults to
	// 1024.
	MaxAckPending int `yaml:"maxAckPending"`
	// MaxDeliver caps deliveries of one task before it is dead-lettered;
	// -1 means unlimited. Defaults to -1 (0 also means the default).
	MaxDeliver int `yaml:"maxDeliver"`
	// DrainTimeout is how long, after fetching stops at shutdown, in-flight
	// hand-offs may finish; the rest are handed back (NAK) to another
	// replica. Defaults to 5s.
	DrainTimeout trigger.Duration `yaml:"drainTimeout"`
	// ShutdownTimeout bounds the whole shutdown; it must be at least
	// DrainTimeout. Defaults to 10s.
	ShutdownTimeout trigger.Duration `yaml:"shutdownTimeout"`
	// CollisionPolicy is "serialize", "alert" or "fail"; see the
	// Collision constants. Defaults to "serialize".
	CollisionPolicy CollisionPolicy `yaml:"collisionPolicy"`
	// FetchBatch is how many tasks one pull requests; at most
	// MaxAckPending. Defaults to 64.
	FetchBatch int `yaml:"fetchBatch"`
	// Sharing says how replicas share the durable consumer: "pinned"
	// (one replica at a time receives, so per-key order holds across
	// graceful hand-overs) or "shared" (every replica pulls; more
	// throughput, per-key order only within one replica). Defaults to
	// "pinned".
	Sharing string `yaml:"sharing"`
	// PinnedTTL, with sharing "pinned", is how long JetStream waits for the
	// pinned replica's next pull before it pins another: the failover time
	// after a crash (a graceful stop hands over at once). At least twice
	// ackWait keeps a key's order across a crash: the crashed replica's
	// tasks are then due for redelivery, which JetStream serves first,
	// before the pin moves. At least 3s and more than shutdownTimeout.
	// Defaults to the largest of 30s, twice shutdownTimeout and twice
	// ackWait.
	PinnedTTL trigger.Duration `yaml:"pinnedTTL"`
	// MaxSignalBatch is the most tasks of one document handed to Temporal
	// in one signal (those queued behind a hand-off in flight go
	// together); 1 turns batching off, as workers older than this option
	// need during an upgrade. Defaults to 100.
	MaxSignalBatch int `yaml:"maxSignalBatch"`
	// TakeoverMaxReplay, with sharing "pinned", bounds a takeover: a
	// replica that finds the pinned replica dead (its NATS connection
	// gone) while tasks wait resets the consumer to its ack floor and
	// takes the pin at once, instead of waiting for pinnedTTL and ackWait.
	// Tasks acked above the ack floor are delivered again (duplicates the
	// workflow drops); past this many stream messages between the ack
	// floor and the last delivered one the replica waits for pinnedTTL
	// instead. -1 turns takeovers off. Defaults to 10000.
	TakeoverMaxReplay int `yaml:"takeoverMaxReplay"`
	// SignalWindow is how long after handing off a document's task ingest
	// signals its workflow (Signal-With-Start) rather than starting a new
	// run with the task as input, which costs Temporal a history event and
	// a signal less; a start Temporal refuses because the run is open
	// falls back to the signal. "-1s" always signals, as workers older
	// than this option need during an upgrade. Defaults to 1m.
	SignalWindow trigger.Duration `yaml:"signalWindow"`
	// VerifyKeysFile, when set, holds the public keys ("id=<base64>" per
	// line) of the watchers' task signing keys; a task without a valid
	// signature by one of them is dead-lettered as unauthenticated and
	// never reaches Temporal. Defaults to "" (every task is trusted).
	VerifyKeysFile string `yaml:"verifyKeysFile"`
}

// ForIngester is the ingest package's view of the file's sections: the
// stream and consumer of n, the task queue of t, and i.
func (i Ingest) ForIngester(n NATS, t Temporal) ingest.Config {
	return ingest.Config{
		Stream: n.Stream, Consumer: n.Consumer, Provisioning: n.Provisioning, TaskQueue: t.TaskQueue,
		Lanes: i.Lanes, AckWait: i.AckWait.D(), MaxAckPending: i.MaxAckPending, MaxDeliver: i.MaxDeliver,
		DrainTimeout: i.DrainTimeout.D(), ShutdownTimeout: i.ShutdownTimeout.D(), CollisionPolicy: i.CollisionPolicy,
		FetchBatch: i.FetchBatch, Sharing: ingest.Sharing(i.Sharing), PinnedTTL: i.PinnedTTL.D(),
		MaxSignalBatch: i.MaxSignalBatch, TakeoverMaxReplay: i.TakeoverMaxReplay, SignalWindow: i.SignalWindow.D(),
	}
}

// Ingester is the ingest package's view of the ingest file.
func (f IngestFile) Ingester() ingest.Config { return f.Ingest.ForIngester(f.NATS, f.Temporal) }

// WithDefaults returns i with zero fields set to the ingest package's
// defaults.
func (i Ingest) WithDefaults() Ingest {
	d := i.ForIngester(NATS{}, Temporal{}).WithDefaults()
	i.Lanes, i.MaxAckPending, i.MaxDeliver, i.FetchBatch = d.Lanes, d.MaxAckPending, d.MaxDeliver, d.FetchBatch
	i.AckWait, i.DrainTimeout, i.ShutdownTimeout = trigger.Duration(d.AckWait), trigger.Duration(d.DrainTimeout), trigger.Duration(d.ShutdownTimeout)
	i.CollisionPolicy, i.Sharing, i.PinnedTTL = d.CollisionPolicy, string(d.Sharing), trigger.Duration(d.PinnedTTL)
	i.MaxSignalBatch, i.TakeoverMaxReplay, i.SignalWindow = d.MaxSignalBatch, d.TakeoverMaxReplay, trigger.Duration(d.SignalWindow)
	return i
}

// Validate reports every invalid field of i.
func (i Ingest) Validate() error { p := &problems{}; i.check(p); return p.err() }

func (i Ingest) check(p *problems) {
	p.atLeast("ingest.lanes", i.Lanes, 1)
	p.positive("ingest.ackWait", i.AckWait)
	p.atLeast("ingest.maxAckPending", i.MaxAckPending, 1)
	if i.MaxDeliver != -1 && i.MaxDeliver < 1 {
		p.add("ingest.maxDeliver", i.MaxDeliver, "must be -1 (unlimited) or at least 1")
	}
	p.positive("ingest.drainTimeout", i.DrainTimeout)
	p.positive("ingest.shutdownTimeout", i.ShutdownTimeout)
	if i.ShutdownTimeout < i.DrainTimeout {
		p.add("ingest.shutdownTimeout", i.ShutdownTimeout, "must be at least ingest.drainTimeout (%s)", i.DrainTimeout)
	}
	oneOf(p, "ingest.collisionPolicy", i.CollisionPolicy, CollisionSerialize, CollisionAlert, CollisionFail)
	oneOf(p, "ingest.sharing", i.Sharing, "pinned", "shared")
	p.atLeast("ingest.maxSignalBatch", i.MaxSignalBatch, 1)
	if i.PinnedTTL != 0 {
		if i.PinnedTTL < trigger.Duration(3*time.Second) {
			p.add("ingest.pinnedTTL", i.PinnedTTL, "must be at least 3s")
		} else if i.PinnedTTL <= i.ShutdownTimeout {
			p.add("ingest.pinnedTTL", i.PinnedTTL, "must exceed ingest.shutdownTimeout (%s)", i.ShutdownTimeout)
		}
	}
	p.atLeast("ingest.fetchBatch", i.FetchBatch, 1)
	if i.TakeoverMaxReplay < -1 {
		p.add("ingest.takeoverMaxReplay", i.TakeoverMaxReplay, "must be -1 (no takeovers) or positive")
	}
	if i.MaxAckPending >= 1 && i.FetchBatch > i.MaxAckPending {
		// A pull larger than the pending cap can never be filled.
		p.add("ingest.fetchBatch", i.FetchBatch, "must not exceed ingest.maxAckPending (%d)", i.MaxAckPending)
	}
}

// SecretsBackend is where the worker reads webhook signing secrets; see
// secrets.Backend.
type SecretsBackend = secrets.Backend

// Secrets backends.
const (
	SecretsFile   = secrets.BackendFile
	SecretsEnv    = secrets.BackendEnv
	SecretsNATSKV = secrets.BackendNATSKV
)

// Secrets configures where webhook signing secrets come from.
type Secrets struct {
	// Backend is "file", "env" or "nats-kv"; see the Secrets constants.
	// Defaults to "file".
	Backend SecretsBackend `yaml:"backend"`
	// Dir is the root of the file backend. Defaults to "secrets/".
	Dir string `yaml:"dir"`
	// EnvPrefix starts the variable names of the env backend. Defaults to
	// "TRIGGERFLOW_SECRET_".
	EnvPrefix string `yaml:"envPrefix"`
	// Bucket is the key-value bucket of the nats-kv backend. Defaults to
	// "triggerflow-secrets".
	Bucket string `yaml:"bucket"`
}

// ForSecrets is the secrets package's view of s.
func (s Secrets) ForSecrets() secrets.Config {
	return secrets.Config{Backend: s.Backend, Dir: s.Dir, EnvPrefix: s.EnvPrefix, Bucket: s.Bucket}
}

// Worker configures how the worker delivers webhooks.
type Worker struct {
	// HTTPTimeout bounds one delivery attempt when the trigger sets no
	// timeout. Defaults to 30s.
	HTTPTimeout trigger.Duration `yaml:"httpTimeout"`
	// MaxConnsPerHost caps connections to one receiver, so one busy
	// tenant cannot exhaust a receiver or our sockets. Defaults to 64.
	MaxConnsPerHost int `yaml:"maxConnsPerHost"`
	// MaxBodyBytes caps the request body sent; a bigger one fails without
	// retry and is dead-lettered as "oversize". An update's body carries
	// the before and the after image. Defaults to 5242880 (5 MiB).
	MaxBodyBytes int `yaml:"maxBodyBytes"`
	// MaxResponseBodyBytes is how much of a failed response's body is kept
	// in the failure record. Defaults to 4096.
	MaxResponseBodyBytes int `yaml:"maxResponseBodyBytes"`
	// RetryableStatuses are the 4xx statuses retried like 5xx responses
	// and network errors; other 4xx fail at once. An explicit empty list
	// retries none. Defaults to [408, 429].
	RetryableStatuses []int `yaml:"retryableStatuses"`
	// AllowLoopback permits webhook URLs that resolve to loopback
	// addresses. Off in production so that a trigger cannot reach the
	// worker's own host. Defaults to false; `triggerflow dev` turns it on.
	// A pointer so that false can be told from unset (see
	// LoopbackAllowed).
	AllowLoopback *bool `yaml:"allowLoopback"`
	// VerifyKeysFile, when set, holds the public keys ("id=<base64>" per
	// line) of the watchers' task signing keys; the worker resolves no
	// secret, mints no token and sends nothing for a task without a valid
	// signature by one of them (it fails as UNAUTHENTICATED and is
	// dead-lettered). Defaults to "" (every task is trusted).
	VerifyKeysFile string `yaml:"verifyKeysFile"`
	// ImageReleaseDelay is how long a stored document image outlives its
	// successful delivery before the worker deletes it, so a delivery
	// retried after a worker crash still finds it. Defaults to 1m.
	ImageReleaseDelay trigger.Duration `yaml:"imageReleaseDelay"`
	// AllowPrivate permits URLs that resolve to private or unique-local
	// addresses (RFC 1918, 100.64/10, fc00::/7). Link-local and cloud
	// metadata addresses (169.254/16, fd00:ec2::254, …) stay refused
	// whatever this says. Defaults to false.
	AllowPrivate bool `yaml:"allowPrivate"`
	// Retry is the retry policy for triggers that set none. Defaults to 5
	// attempts, 1s initial backoff, 5m max backoff, multiplier 2.
	Retry trigger.RetryPolicy `yaml:"retry"`
	// QuietPeriod is how long a document's workflow that has seen two or
	// more changes waits idle for another before it exits; one that saw a
	// single change exits right after delivering it. Defaults to 1m.
	QuietPeriod trigger.Duration `yaml:"quietPeriod"`
	// Secrets configures where signing secrets come from.
	Secrets Secrets `yaml:"secrets"`
	// Tokens configures the per-tenant system token sent as
	// "Authorization: Bearer".
	Tokens Tokens `yaml:"tokens"`
	// MaxConcurrentActivities caps the activities one worker runs at once:
	// every retry of a webhook, dead-letter records, and first attempts
	// when they are not local activities. It is the Temporal worker's
	// MaxConcurrentActivityExecutionSize. Defaults to 1000, the SDK's
	// default.
	MaxConcurrentActivities int `yaml:"maxConcurrentActivities"`
	// MaxConcurrentWorkflowTasks caps the workflow tasks one worker runs at
	// once (MaxConcurrentWorkflowTaskExecutionSize). A task that makes a
	// first attempt holds its slot until the attempt ends. At least 2: with
	// one slot the SDK would poll only its sticky queue. Defaults to 1000,
	// the SDK's default.
	MaxConcurrentWorkflowTasks int `yaml:"maxConcurrentWorkflowTasks"`
	// MaxConcurrentLocalActivities caps the first attempts (local
	// activities, one per batch) one worker runs at once
	// (MaxConcurrentLocalActivityExecutionSize). Defaults to 1000, the
	// SDK's default.
	MaxConcurrentLocalActivities int `yaml:"maxConcurrentLocalActivities"`
	// WorkflowTaskPollers is how many requests the worker keeps waiting
	// for workflow tasks (MaxConcurrentWorkflowTaskPollers). A cold key's
	// delivery is one workflow task that waits on the webhook, so with
	// the SDK's 2 a worker hands out at most two cold deliveries per round
	// trip. Defaults to 8.
	WorkflowTaskPollers int `yaml:"workflowTaskPollers"`
	// StopTimeout is how long a stopping worker lets the workflow tasks
	// and webhook attempts under way finish (WorkerStopTimeout) before it
	// deletes the images of what it delivered and exits. A workflow task
	// cut short runs again on another worker and posts its deliveries
	// again. Defaults to 20s.
	StopTimeout trigger.Duration `yaml:"stopTimeout"`
	// CodecServer serves Temporal's codec server protocol on the ops port,
	// so that the Temporal UI and CLI show encrypted payloads.
	CodecServer CodecServer `yaml:"codecServer"`
}

// CodecServer configures the codec server that decrypts and encrypts
// payloads for the Temporal UI and CLI with the keys of temporal.codec,
// served by the worker and by `triggerflow codec-server`.
type CodecServer struct {
	// Enabled serves it under /codec/ on the worker's http.addr: point the
	// UI (TEMPORAL_CODEC_ENDPOINT, or the dev server's
	// --ui-codec-endpoint) at http://<that address>/codec. It needs
	// temporal.codec.enabled. Defaults to false: it decrypts any payload
	// for whoever reaches the port, so turn it on only where the port is
	// reachable by operators alone, or set AuthToken.
	Enabled bool `yaml:"enabled"`
	// AllowedOrigins are the browser origins allowed to call it, as the
	// browser sends them ("http://localhost:8233": scheme, host and port,
	// no path): the Temporal UI's. Defaults to [] (no CORS: the UI cannot
	// use it, the CLI can).
	AllowedOrigins []string `yaml:"allowedOrigins,omitempty"`
	// AuthToken, when set, is required as "Authorization: Bearer <token>"
	// (the CLI's --codec-auth). A browser cannot send a fixed token: with
	// it set the UI reaches the codec server only through a proxy that
	// adds it. Defaults to "" (no check).
	AuthToken string `yaml:"authToken" secret:"true"`
}

// Handler is the codec package's view of s.
func (s CodecServer) Handler() codec.HandlerConfig {
	return codec.HandlerConfig{AllowedOrigins: s.AllowedOrigins, AuthToken: s.AuthToken}
}

func (s CodecServer) check(p *problems) {
	for i, o := range s.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			p.add(indexPath("worker.codecServer.allowedOrigins", i), o, `is not an origin like "https://temporal-ui.example.com" or "http://localhost:8233"`)
		}
	}
}

// Tokens configures the short-lived per-tenant JWTs the worker sends with
// every delivery, and whose public keys it serves as JWKS on its ops port
// at /.well-known/jwks.json.
type Tokens struct {
	// KeyFile is the Ed25519 signing key (PKCS#8 PEM). A missing file is
	// created (0600); replicas must share one file so receivers can verify
	// every replica's tokens. Defaults to "keys/token-signing.pem".
	KeyFile string `yaml:"keyFile"`
	// Issuer is the iss claim. Defaults to "triggerflow".
	Issuer string `yaml:"issuer"`
	// Audience is the aud claim. Defaults to "webhook".
	Audience string `yaml:"audience"`
	// TTL is how long a token is valid; tokens are reused until near
	// expiry. Defaults to 5m.
	TTL trigger.Duration `yaml:"ttl"`
}

// LoopbackAllowed reports whether loopback URLs are permitted; unset means
// not.
func (w Worker) LoopbackAllowed() bool { return w.AllowLoopback != nil && *w.AllowLoopback }

// Activities is the activities package's view of w (the egress policy and
// the delivery limits).
func (w Worker) Activities() activities.Config {
	return activities.Config{
		Timeout:              w.HTTPTimeout.D(),
		MaxConnsPerHost:      w.MaxConnsPerHost,
		MaxBodyBytes:         w.MaxBodyBytes,
		MaxResponseBodyBytes: w.MaxResponseBodyBytes,
		RetryableStatuses:    w.RetryableStatuses,
		Egress:               egress.Policy{AllowLoopback: w.LoopbackAllowed(), AllowPrivate: w.AllowPrivate},
		DefaultMaxAttempts:   w.Retry.MaxAttempts,
	}
}

// Images is the images package's view of w; the caller adds the streams.
func (w Worker) Images() images.Config {
	return images.Config{ReleaseDelay: w.ImageReleaseDelay.D()}
}

// Workflows is the workflows package's view of w.
func (w Worker) Workflows() workflows.Options {
	return workflows.Options{QuietPeriod: w.QuietPeriod.D(), Retry: w.Retry, HTTPTimeout: w.HTTPTimeout.D()}
}

// WithDefaults returns w with zero fields set to their defaults.
func (w Worker) WithDefaults() Worker {
	// The delivery settings take the activities' and workflows' defaults.
	a := w.Activities().WithDefaults()
	w.HTTPTimeout = trigger.Duration(a.Timeout)
	w.MaxConnsPerHost, w.MaxBodyBytes, w.MaxResponseBodyBytes = a.MaxConnsPerHost, a.MaxBodyBytes, a.MaxResponseBodyBytes
	w.RetryableStatuses = a.RetryableStatuses
	if w.AllowLoopback == nil {
		w.AllowLoopback = new(false)
	}
	if w.ImageReleaseDelay == 0 {
		w.ImageReleaseDelay = trigger.Duration(images.DefaultReleaseDelay)
	}
	o := w.Workflows().WithDefaults()
	w.Retry = o.Retry
	if w.QuietPeriod == 0 { // a negative one stays, for Validate to report
		w.QuietPeriod = trigger.Duration(o.QuietPeriod)
	}
	sd := w.Secrets.ForSecrets().WithDefaults()
	w.Secrets = Secrets{Backend: sd.Backend, Dir: sd.Dir, EnvPrefix: sd.EnvPrefix, Bucket: sd.Bucket}
	if w.Tokens.KeyFile == "" {
		w.Tokens.KeyFile = filepath.Join("keys", "token-signing.pem")
	}
	w.Tokens.Issuer = cmp.Or(w.Tokens.Issuer, "triggerflow")
	w.Tokens.Audience = cmp.Or(w.Tokens.Audience, "webhook")
	if w.Tokens.TTL == 0 {
		w.Tokens.TTL = trigger.Duration(5 * time.Minute)
	}
	// The Temporal SDK's own defaults, written out so the effective value
	// is visible in the dump and the docs.
	w.MaxConcurrentActivities = cmp.Or(w.MaxConcurrentActivities, 1000)
	w.MaxConcurrentWorkflowTasks = cmp.Or(w.MaxConcurrentWorkflowTasks, 1000)
	w.MaxConcurrentLocalActivities = cmp.Or(w.MaxConcurrentLocalActivities, 1000)
	w.WorkflowTaskPollers = cmp.Or(w.WorkflowTaskPollers, 8)
	w.StopTimeout = cmp.Or(w.StopTimeout, trigger.Duration(20*time.Second))
	return w
}

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	bucketRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Validate reports every invalid field of w.
func (w Worker) Validate() error { p := &problems{}; w.check(p); return p.err() }

func (w Worker) check(p *problems) {
	p.positive("worker.httpTimeout", w.HTTPTimeout)
	p.atLeast("worker.maxConnsPerHost", w.MaxConnsPerHost, 1)
	p.between("worker.maxBodyBytes", w.MaxBodyBytes, 1, 1<<30)
	p.atLeast("worker.maxResponseBodyBytes", w.MaxResponseBodyBytes, 1)
	for i, s := range w.RetryableStatuses {
		if s < 400 || s > 499 {
			p.add(indexPath("worker.retryableStatuses", i), s, "is not a 4xx status; 5xx responses are always retried")
		}
	}
	p.atLeast("worker.retry.maxAttempts", w.Retry.MaxAttempts, 1)
	p.positive("worker.retry.initialBackoff", w.Retry.InitialBackoff)
	if w.Retry.MaxBackoff < w.Retry.InitialBackoff {
		p.add("worker.retry.maxBackoff", w.Retry.MaxBackoff, "must be at least worker.retry.initialBackoff (%s)", w.Retry.InitialBackoff)
	}
	if w.Retry.Multiplier < 1 {
		p.add("worker.retry.multiplier", w.Retry.Multiplier, "must be at least 1")
	}
	if w.QuietPeriod < trigger.Duration(time.Second) {
		// The workflow's quiet timer is at least a second (a shorter one
		// could be no timer at all, which replay would notice).
		p.add("worker.quietPeriod", w.QuietPeriod, "must be at least 1s")
	}
	p.atLeast("worker.maxConcurrentActivities", w.MaxConcurrentActivities, 1)
	// The SDK panics on 1: it limits its pollers to this many, and one
	// poller would only ever poll the sticky queue.
	p.atLeast("worker.maxConcurrentWorkflowTasks", w.MaxConcurrentWorkflowTasks, 2)
	p.atLeast("worker.maxConcurrentLocalActivities", w.MaxConcurrentLocalActivities, 1)
	// As for maxConcurrentWorkflowTasks: one poller would poll only the
	// sticky queue.
	p.atLeast("worker.workflowTaskPollers", w.WorkflowTaskPollers, 2)
	p.positive("worker.stopTimeout", w.StopTimeout)
	w.CodecServer.check(p)
	if w.Tokens.TTL < trigger.Duration(2*time.Minute) {
		p.add("worker.tokens.ttl", w.Tokens.TTL, "must be at least 2m: tokens are renewed a minute before they expire")
	}
	oneOf(p, "worker.secrets.backend", w.Secrets.Backend, SecretsFile, SecretsEnv, SecretsNATSKV)
	switch w.Secrets.Backend {
	case SecretsFile:
		p.required("worker.secrets.dir", w.Secrets.Dir)
	case SecretsEnv:
		if !envNameRE.MatchString(w.Secrets.EnvPrefix) {
			p.add("worker.secrets.envPrefix", w.Secrets.EnvPrefix, "is not the start of an environment variable name: use letters, digits and '_'")
		}
	case SecretsNATSKV:
		if !bucketRE.MatchString(w.Secrets.Bucket) {
			p.add("worker.secrets.bucket", w.Secrets.Bucket, "is not a key-value bucket name: use letters, digits, '-' and '_'")
		}
	}
}

// Validation bounds what the watcher accepts in trigger files. Defaults
// are trigger.DefaultLimits.
type Validation = trigger.Limits

func checkLimits(p *problems, l Validation) {
	p.between("validation.maxTenantLength", l.MaxTenantLength, 1, 128)
	p.atLeast("validation.maxCollectionLength", l.MaxCollectionLength, 1)
	p.atLeast("validation.maxHeaderBytes", l.MaxHeaderBytes, 1)
	p.positive("validation.minTimeout", l.MinTimeout)
	if l.MaxTimeout < l.MinTimeout {
		p.add("validation.maxTimeout", l.MaxTimeout, "must be at least validation.minTimeout (%s)", l.MinTimeout)
	}
}
