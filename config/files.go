package config

import (
	"path/filepath"

	"github.com/triggerflow/triggerflow/trigger"
)

// WatcherFile is the configuration file of the watcher binary.
type WatcherFile struct {
	Log        Log        `yaml:"log"`
	HTTP       HTTP       `yaml:"http"`
	NATS       NATS       `yaml:"nats"`
	Watcher    Watcher    `yaml:"watcher"`
	Publisher  Publisher  `yaml:"publisher"`
	Validation Validation `yaml:"validation"`
}

// WithDefaults returns f with every zero field set to its default.
func (f WatcherFile) WithDefaults() WatcherFile {
	f.Log = f.Log.WithDefaults()
	f.HTTP = f.HTTP.withDefaults(defaultWatcherAddr)
	f.NATS = f.NATS.WithDefaults()
	f.Watcher = f.Watcher.WithDefaults()
	f.Publisher = f.Publisher.WithDefaults()
	f.Validation = f.Validation.WithDefaults()
	return f
}

// Validate reports every invalid field of f.
func (f WatcherFile) Validate() error {
	p := &problems{}
	f.Log.check(p)
	f.HTTP.check(p)
	f.NATS.check(p)
	f.Watcher.check(p)
	f.Publisher.check(p)
	checkLimits(p, f.Validation)
	checkTenantLimit(p, f.Watcher, f.Validation)
	return p.err()
}

// checkTenantLimit catches a limit that would reject every trigger: each
// must name the watcher's tenant.
func checkTenantLimit(p *problems, w Watcher, l Validation) {
	if trigger.TenantProblem(w.Tenant, trigger.DefaultLimits().MaxTenantLength) == "" && l.MaxTenantLength > 0 && len(w.Tenant) > l.MaxTenantLength {
		p.add("watcher.tenant", w.Tenant, "is longer than validation.maxTenantLength (%d)", l.MaxTenantLength)
	}
}

// IngestFile is the configuration file of the ingest binary.
type IngestFile struct {
	Log      Log      `yaml:"log"`
	HTTP     HTTP     `yaml:"http"`
	NATS     NATS     `yaml:"nats"`
	Temporal Temporal `yaml:"temporal"`
	Ingest   Ingest   `yaml:"ingest"`
}

// WithDefaults returns f with every zero field set to its default.
func (f IngestFile) WithDefaults() IngestFile {
	f.Log = f.Log.WithDefaults()
	f.HTTP = f.HTTP.withDefaults(defaultIngestAddr)
	f.NATS = f.NATS.WithDefaults()
	f.Temporal = f.Temporal.WithDefaults()
	f.Ingest = f.Ingest.WithDefaults()
	return f
}

// Validate reports every invalid field of f.
func (f IngestFile) Validate() error {
	p := &problems{}
	f.Log.check(p)
	f.HTTP.check(p)
	f.NATS.check(p)
	f.Temporal.check(p)
	f.Ingest.check(p)
	return p.err()
}

// WorkerFile is the configuration file of the worker binary.
type WorkerFile struct {
	Log      Log      `yaml:"log"`
	HTTP     HTTP     `yaml:"http"`
	NATS     NATS     `yaml:"nats"`
	Temporal Temporal `yaml:"temporal"`
	Worker   Worker   `yaml:"worker"`
}

// WithDefaults returns f with every zero field set to its default.
func (f WorkerFile) WithDefaults() WorkerFile {
	f.Log = f.Log.WithDefaults()
	f.HTTP = f.HTTP.withDefaults(defaultWorkerAddr)
	f.NATS = f.NATS.WithDefaults()
	f.Temporal = f.Temporal.WithDefaults()
	f.Worker = f.Worker.WithDefaults()
	return f
}

// Validate reports every invalid field of f.
func (f WorkerFile) Validate() error {
	p := &problems{}
	f.Log.check(p)
	f.HTTP.check(p)
	f.NATS.check(p)
	f.Temporal.check(p)
	f.Worker.check(p)
	return p.err()
}

// DevFile is the configuration file of `triggerflow dev`, which runs the
// watcher, ingest and worker in one process. Its defaults suit a laptop:
// text logs, tenant "dev", the document store under dev.dataDir, and
// webhooks to localhost allowed.
type DevFile struct {
	Log        Log        `yaml:"log"`
	HTTP       HTTP       `yaml:"http"`
	Dev        Dev        `yaml:"dev"`
	NATS       NATS       `yaml:"nats"`
	Temporal   Temporal   `yaml:"temporal"`
	Watcher    Watcher    `yaml:"watcher"`
	Publisher  Publisher  `yaml:"publisher"`
	Validation Validation `yaml:"validation"`
	Ingest     Ingest     `yaml:"ingest"`
	Worker     Worker     `yaml:"worker"`
}

// WithDefaults returns f with every zero field set to its default.
func (f DevFile) WithDefaults() DevFile {
	// Dev defaults go first; the component defaults then fill the rest.
	if f.Log.Format == "" {
		f.Log.Format = LogText
	}
	f.Dev = f.Dev.WithDefaults()
	if f.Watcher.Tenant == "" {
		f.Watcher.Tenant = "dev"
	}
	if f.Watcher.SQLite.Path == "" {
		f.Watcher.SQLite.Path = filepath.Join(f.Dev.DataDir, "documents.db")
	}
	if f.Worker.AllowLoopback == nil {
		f.Worker.AllowLoopback = new(true)
	}

	f.Log = f.Log.WithDefaults()
	f.HTTP = f.HTTP.withDefaults(defaultDevAddr)
	f.NATS = f.NATS.WithDefaults()
	f.Temporal = f.Temporal.WithDefaults()
	f.Watcher = f.Watcher.WithDefaults()
	f.Publisher = f.Publisher.WithDefaults()
	f.Validation = f.Validation.WithDefaults()
	f.Ingest = f.Ingest.WithDefaults()
	f.Worker = f.Worker.WithDefaults()
	return f
}

// Validate reports every invalid field of f.
func (f DevFile) Validate() error {
	p := &problems{}
	f.Log.check(p)
	f.HTTP.check(p)
	f.Dev.check(p)
	f.NATS.check(p)
	f.Temporal.check(p)
	f.Watcher.check(p)
	f.Publisher.check(p)
	checkLimits(p, f.Validation)
	checkTenantLimit(p, f.Watcher, f.Validation)
	f.Ingest.check(p)
	f.Worker.check(p)
	return p.err()
}

// WatcherFile returns the parts of f the watcher uses, so the dev command can
// start it with the same code as the watcher binary.
func (f DevFile) WatcherFile() WatcherFile {
	return WatcherFile{Log: f.Log, HTTP: f.HTTP, NATS: f.NATS, Watcher: f.Watcher, Publisher: f.Publisher, Validation: f.Validation}
}

// IngestFile returns the parts of f ingest uses.
func (f DevFile) IngestFile() IngestFile {
	return IngestFile{Log: f.Log, HTTP: f.HTTP, NATS: f.NATS, Temporal: f.Temporal, Ingest: f.Ingest}
}

// WorkerFile returns the parts of f the worker uses.
func (f DevFile) WorkerFile() WorkerFile {
	return WorkerFile{Log: f.Log, HTTP: f.HTTP, NATS: f.NATS, Temporal: f.Temporal, Worker: f.Worker}
}
