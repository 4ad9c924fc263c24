package config

import "github.com/triggerflow/triggerflow/trigger"

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
	serviceDefaults(&f.Log, &f.HTTP, &f.NATS, defaultWatcherAddr)
	f.Watcher = f.Watcher.WithDefaults()
	f.Publisher = f.Publisher.WithDefaults()
	f.Validation = f.Validation.WithDefaults()
	return f
}

// serviceDefaults sets the defaults of the sections every binary's file
// has; opsAddr is the binary's default ops address.
func serviceDefaults(l *Log, h *HTTP, n *NATS, opsAddr string) {
	*l = l.WithDefaults()
	*h = h.withDefaults(opsAddr)
	*n = n.WithDefaults()
}

// section is one section of a binary's file.
type section interface{ check(p *problems) }

// checkSections checks each section of a file into a fresh problems.
func checkSections(sections ...section) *problems {
	p := &problems{}
	for _, s := range sections {
		s.check(p)
	}
	return p
}

// Validate reports every invalid field of f.
func (f WatcherFile) Validate() error {
	p := checkSections(f.Log, f.HTTP, f.NATS, f.Watcher, f.Publisher)
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
	serviceDefaults(&f.Log, &f.HTTP, &f.NATS, defaultIngestAddr)
	f.Temporal = f.Temporal.WithDefaults()
	f.Ingest = f.Ingest.WithDefaults()
	return f
}

// Validate reports every invalid field of f.
func (f IngestFile) Validate() error {
	return checkSections(f.Log, f.HTTP, f.NATS, f.Temporal, f.Ingest).err()
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
	serviceDefaults(&f.Log, &f.HTTP, &f.NATS, defaultWorkerAddr)
	f.Temporal = f.Temporal.WithDefaults()
	f.Worker = f.Worker.WithDefaults()
	return f
}

// Validate reports every invalid field of f.
func (f WorkerFile) Validate() error {
	p := checkSections(f.Log, f.HTTP, f.NATS, f.Temporal, f.Worker)
	if f.Worker.CodecServer.Enabled && !f.Temporal.Codec.Enabled {
		p.add("worker.codecServer.enabled", true, "needs temporal.codec.enabled: without encryption there is nothing to decode")
	}
	return p.err()
}
