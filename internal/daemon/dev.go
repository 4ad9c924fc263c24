package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.temporal.io/sdk/testsuite"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/receiver"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
)

// The dev stack's defaults, which `triggerflow dev` shows as its flags'
// defaults. There is no default tenant: the stack serves every tenant
// named by the trigger files, unless DevConfig.Tenant narrows it to one.
const (
	DevDataDir      = "data"
	DevTriggers     = "examples/triggers"
	DevReceiverAddr = "127.0.0.1:8090"
)

// devReloadQuiet is how long the trigger files must be left alone after a
// change before the dev stack reloads them: an editor's save, a `cp -r` or
// a `git checkout` is a burst of events that should be one reload.
const devReloadQuiet = 250 * time.Millisecond

// DevConfig configures the all-in-one dev stack. Zero fields take the
// documented defaults.
type DevConfig struct {
	// DataDir keeps everything between runs: NATS's store, Temporal's
	// SQLite file, the document store, secrets and keys. Defaults to
	// DevDataDir.
	DataDir string
	// Tenant narrows the watcher to one tenant (watcher.tenant); every
	// trigger in the files must then belong to it. Empty serves every
	// tenant that has triggers in the files (watcher.tenants: ["*"]).
	Tenant string
	// Triggers is the trigger file or directory. Defaults to DevTriggers.
	// The stack watches it and reloads the triggers when a file changes.
	Triggers string
	// NATSURL points at an external NATS; empty embeds one on NATSPort
	// (default 4222; -1 picks a free port).
	NATSURL  string
	NATSPort int
	// TemporalHostPort points at an external Temporal (with Triggerflow's
	// search attributes registered); empty starts the dev server on
	// TemporalPort (default 7233) with its UI on TemporalUIPort (default
	// 8233; -1 disables it), using the Temporal CLI at TemporalCLI.
	TemporalHostPort string
	TemporalPort     int
	TemporalUIPort   int
	TemporalCLI      string
	// PostgresDSN watches a PostgreSQL database instead of the embedded
	// SQLite store.
	PostgresDSN string
	// PostgresTenantColumn names the column holding a row's tenant, which
	// a PostgreSQL watcher serving several tenants needs. Without it and
	// without Tenant, the trigger files must name exactly one tenant,
	// which the watcher then serves.
	PostgresTenantColumn string
	// ReceiverAddr is where the demo webhook receiver listens. Defaults to
	// DevReceiverAddr, where the example triggers deliver.
	ReceiverAddr string
	// WatcherAddr, IngestAddr and WorkerAddr are the services' ops
	// addresses. Default to 127.0.0.1:9464, :9465 and :9466.
	WatcherAddr, IngestAddr, WorkerAddr string
	// Out receives the banner, the receiver's lines and a line for every
	// reload of the trigger files. Defaults to stdout.
	Out io.Writer
	// Log configures the services' logs (on stderr). Defaults to text at
	// info, Temporal SDK at warn.
	Log config.Log
}

func (c DevConfig) withDefaults() DevConfig {
	c.DataDir = cmp.Or(c.DataDir, DevDataDir)
	c.Triggers = cmp.Or(c.Triggers, DevTriggers)
	c.ReceiverAddr = cmp.Or(c.ReceiverAddr, DevReceiverAddr)
	c.WatcherAddr = cmp.Or(c.WatcherAddr, "127.0.0.1:9464")
	c.IngestAddr = cmp.Or(c.IngestAddr, "127.0.0.1:9465")
	c.WorkerAddr = cmp.Or(c.WorkerAddr, "127.0.0.1:9466")
	c.NATSPort = cmp.Or(c.NATSPort, 4222)
	c.TemporalPort = cmp.Or(c.TemporalPort, 7233)
	c.TemporalUIPort = cmp.Or(c.TemporalUIPort, 8233)
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Log.Format == "" {
		c.Log = config.Log{Format: config.LogText}
	}
	c.Log = c.Log.WithDefaults()
	return c
}

// DevStack is a running dev stack.
type DevStack struct {
	// Receiver is the demo receiver; tests read its deliveries.
	Receiver *receiver.Receiver
	// TemporalHostPort and NATSURL are where the stack's servers listen.
	TemporalHostPort, NATSURL string
	// ReceiverURL is the demo receiver's base URL.
	ReceiverURL string
}

// Dev runs the whole system in one process until ctx ends: NATS with
// JetStream, the Temporal dev server (UI included), the document store, the
// watcher, ingest and worker, and a demo receiver that verifies and prints
// every delivery. The watcher serves every tenant of the trigger files (or
// cfg.Tenant), each tenant's deliveries are signed with a secret of its
// own, and edits to the trigger files are reloaded without a restart.
// started, when set, is called once everything is ready.
func Dev(ctx context.Context, cfg DevConfig, started func(*DevStack)) error {
	cfg = cfg.withDefaults()
	log := service.NewLogger(cfg.Log, os.Stderr)
	trig, err := checkDevTriggers(cfg)
	if err != nil {
		return err
	}
	cfg = trig.cfg
	if err := trig.ensureSecrets(trig.initial); err != nil {
		return err
	}
	stack, stop, err := startDevStack(ctx, cfg, trig, log)
	if err != nil {
		return err
	}
	defer stop()
	svcs, err := devServices(cfg, stack)
	if err != nil {
		return err
	}

	// Watch the files before the services start, so that an edit made
	// while they come up is not missed: the request waits in reload.
	reload := make(chan struct{}, 1)
	stopWatch, watchErr := trig.watch(ctx, log, reload)
	if watchErr != nil {
		log.Warn("trigger files are not watched; restart the dev stack to pick up edits", "path", cfg.Triggers, "error", watchErr)
	} else {
		defer stopWatch()
	}
	run := startServices(ctx, log, svcs, reload)
	defer run.stop()
	if err := run.ready(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	printBanner(cfg, stack, trig, watchErr)
	if started != nil {
		started(stack)
	}
	if err := run.wait(ctx); err != nil {
		return err
	}
	fmt.Fprintln(cfg.Out, "stopping: draining services and saving checkpoints…")
	return nil
}

// devTriggers is what the dev stack knows of its trigger files. It checks
// them, keeps a signing secret in place for every tenant and reference they
// use, tells the demo receiver which reference each trigger signs with, and
// follows edits to the files.
type devTriggers struct {
	cfg DevConfig
	v   *trigger.Validator
	// dir says whether cfg.Triggers is a directory (else one file).
	dir bool
	// initial is the load at start-up.
	initial *trigger.TenantSets

	mu   sync.Mutex
	refs map[string]map[string]string // tenant → trigger id → secretsRef
}

// checkDevTriggers loads the trigger files before anything starts, so a
// bad file fails in a moment rather than after the servers came up. Unlike
// a watcher serving several tenants, which starts the tenants whose files
// are good, it fails on any problem: a developer wants to hear at once.
// The returned cfg (in devTriggers) has the tenant scope settled.
func checkDevTriggers(cfg DevConfig) (*devTriggers, error) {
	d := &devTriggers{cfg: cfg, refs: make(map[string]map[string]string)}
	st, err := os.Stat(cfg.Triggers)
	if err != nil {
		return nil, fmt.Errorf("load triggers from %s: %w", cfg.Triggers, err)
	}
	d.dir = st.IsDir()
	if d.v, err = trigger.NewScopeValidator(devScope(cfg), trigger.Limits{}, nil); err != nil {
		return nil, err
	}
	res, err := d.load()
	if err != nil {
		return nil, fmt.Errorf("load triggers from %s: %w", cfg.Triggers, err)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("load triggers from %s: %w%s", cfg.Triggers, err, scopeHint(cfg, err))
	}
	if len(res.Triggers) == 0 {
		return nil, fmt.Errorf("load triggers from %s: no triggers", cfg.Triggers)
	}
	if cfg.Tenant == "" && cfg.PostgresDSN != "" && cfg.PostgresTenantColumn == "" {
		// Rows of a PostgreSQL table name no tenant unless a column does:
		// without one the watcher can serve one tenant only.
		tenants := slices.Sorted(maps.Keys(res.Triggers))
		if len(tenants) > 1 {
			return nil, fmt.Errorf("%s names %d tenants (%s), but with --postgres the watcher tells rows' tenants apart only by a column: "+
				"set --postgres-tenant-column, or serve one tenant: --tenant, with --triggers holding only its files", cfg.Triggers, len(tenants), strings.Join(tenants, ", "))
		}
		d.cfg.Tenant = tenants[0]
		if d.v, err = trigger.NewScopeValidator(devScope(d.cfg), trigger.Limits{}, nil); err != nil {
			return nil, err
		}
	}
	d.initial = res
	return d, nil
}

// devScope is the watcher's tenant scope: the one tenant, or all of them.
func devScope(cfg DevConfig) []string {
	if cfg.Tenant != "" {
		return []string{cfg.Tenant}
	}
	return []string{trigger.AllTenants}
}

// scopeHint explains a load that failed only because --tenant leaves out
// tenants the files name.
func scopeHint(cfg DevConfig, err error) string {
	var ve *trigger.ValidationError
	if cfg.Tenant == "" || !errors.As(err, &ve) {
		return ""
	}
	for _, p := range ve.Problems {
		if p.Field == "tenant" && p.Value != cfg.Tenant {
			return fmt.Sprintf("\n--tenant %s serves that tenant only: leave --tenant empty to serve every tenant in %s, or point --triggers at %s's files",
				cfg.Tenant, cfg.Triggers, cfg.Tenant)
		}
	}
	return ""
}

// load reads the trigger files as the watcher does, tenant by tenant.
func (d *devTriggers) load() (*trigger.TenantSets, error) {
	return trigger.LoadByTenant(d.cfg.Triggers, d.v)
}

// ensureSecrets makes sure every tenant with triggers in res has its
// "default" secret and a secret for every secretsRef its triggers name,
// creating those missing (in the worker's secrets directory, where the
// receiver reads them too), and records which reference each trigger signs
// with. A tenant with problems keeps what was recorded for it before, as
// the watcher keeps its triggers.
func (d *devTriggers) ensureSecrets(res *trigger.TenantSets) error {
	dir := devSecretsDir(d.cfg)
	var errs []error
	for tenant, ts := range res.Triggers {
		refs := make(map[string]string, len(ts))
		need := map[string]bool{"default": true}
		for _, t := range ts {
			if t.SecretsRef != "" {
				refs[t.ID] = t.SecretsRef
				need[t.SecretsRef] = true
			}
		}
		for _, ref := range slices.Sorted(maps.Keys(need)) {
			if _, err := secrets.Ensure(dir, tenant, ref); err != nil {
				errs = append(errs, fmt.Errorf("dev secret %q of tenant %q: %w", ref, tenant, err))
			}
		}
		d.mu.Lock()
		d.refs[tenant] = refs
		d.mu.Unlock()
	}
	return errors.Join(errs...)
}

// secretsRef is the reference a trigger signs with, for the receiver; ""
// for one the files do not (or no longer) name.
func (d *devTriggers) secretsRef(tenant, triggerID string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refs[tenant][triggerID]
}

// watch follows the trigger files: once they have been left alone for
// devReloadQuiet after a change, it loads them, creates the secrets of new
// tenants and references, says on Out what it reloads (and any problem),
// and asks the watcher to reload through reload. The watcher then reloads
// tenant by tenant: a tenant with a problem keeps its previous triggers.
// stop ends the watch and waits until it has.
//
// It uses inotify (or the platform's equivalent) rather than polling, so
// an edit shows within the quiet period and an idle stack does no work.
func (d *devTriggers) watch(ctx context.Context, log *slog.Logger, reload chan<- struct{}) (stop func(), err error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if d.dir {
		err = watchDirs(fw, d.cfg.Triggers)
	} else {
		// The directory, not the file: editors save by writing a new
		// file and renaming it over the old one.
		err = fw.Add(filepath.Dir(d.cfg.Triggers))
	}
	if err != nil {
		_ = fw.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	changes := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { d.forward(ctx, fw, log, changes) })
	wg.Go(func() {
		debounce(ctx, changes, func() <-chan time.Time { return time.After(devReloadQuiet) }, func() { d.reload(reload) })
	})
	return func() {
		cancel()
		wg.Wait()
		_ = fw.Close()
	}, nil
}

// watchDirs watches dir and every directory below it that the loader
// reads (it skips names starting with '.').
func watchDirs(fw *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(e.Name(), ".") {
			return filepath.SkipDir
		}
		return fw.Add(p)
	})
}

// forward passes on the file events that may change what the loader
// reads.
func (d *devTriggers) forward(ctx context.Context, fw *fsnotify.Watcher, log *slog.Logger, changes chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-fw.Errors:
			if !ok {
				return
			}
			log.Warn("watching trigger files", "path", d.cfg.Triggers, "error", err)
		case ev, ok := <-fw.Events:
			if !ok {
				return
			}
			if !d.relevant(fw, log, ev) {
				continue
			}
			select {
			case changes <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// relevant says whether ev may change the triggers, and watches a new
// directory below a watched one. Some events it passes change nothing
// (an editor's scratch file going away); a reload of the same files is
// harmless.
func (d *devTriggers) relevant(fw *fsnotify.Watcher, log *slog.Logger, ev fsnotify.Event) bool {
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return false // Chmod alone
	}
	if !d.dir {
		return filepath.Clean(ev.Name) == filepath.Clean(d.cfg.Triggers)
	}
	base := filepath.Base(ev.Name)
	if strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") {
		return false // skipped by the loader, or an editor's backup
	}
	if ev.Has(fsnotify.Create) {
		if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
			if err := watchDirs(fw, ev.Name); err != nil {
				log.Warn("watching new trigger directory", "path", ev.Name, "error", err)
			}
			return true
		}
	}
	switch strings.ToLower(filepath.Ext(base)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	// A directory removed or renamed away may have held trigger files.
	return ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
}

// debounce calls fire once events have stopped for the quiet period that
// after starts (time.After in the stack), so a burst of events makes one
// call. It returns when ctx ends.
func debounce(ctx context.Context, events <-chan struct{}, after func() <-chan time.Time, fire func()) {
	var quiet <-chan time.Time // nil, blocking forever, while nothing is pending
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			quiet = after()
		case <-quiet:
			quiet = nil
			fire()
		}
	}
}

// reload loads the changed files, prepares their secrets, reports on Out
// and asks the watcher to reload. It asks even when the files cannot be
// read, so that the watcher reports the failure (its load-failed metric)
// as it would on SIGHUP; a request already waiting covers this one.
func (d *devTriggers) reload(reload chan<- struct{}) {
	now := time.Now().Format("15:04:05")
	out := d.cfg.Out
	res, err := d.load()
	if err != nil {
		fmt.Fprintf(out, "✗ %s trigger files changed but cannot be loaded; every tenant keeps its triggers: %v\n", now, err)
	} else {
		if err := d.ensureSecrets(res); err != nil {
			fmt.Fprintf(out, "✗ %s %v\n", now, err)
		}
		fmt.Fprintf(out, "↻ %s trigger files changed: reloading %s\n", now, describeSets(res))
		if err := res.Err(); err != nil {
			fmt.Fprintf(out, "✗ %s tenants with problems keep their previous triggers: %v\n", now, err)
		}
	}
	select {
	case reload <- struct{}{}:
	default:
	}
}

// describeSets lists the tenants of a load with their trigger counts.
func describeSets(res *trigger.TenantSets) string {
	if len(res.Triggers) == 0 {
		return "no triggers"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(res.Triggers)) {
		n := len(res.Triggers[t])
		parts = append(parts, fmt.Sprintf("%s (%d trigger%s)", t, n, plural(n)))
	}
	return strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// stops undoes a start-up in reverse order.
type stops []func()

func (s stops) run() {
	for i := len(s) - 1; i >= 0; i-- {
		s[i]()
	}
}

// startDevStack starts what the services need: NATS and the Temporal dev
// server unless external ones are configured, and the demo receiver. stop
// stops them again; on an error nothing is left running.
func startDevStack(ctx context.Context, cfg DevConfig, trig *devTriggers, log *slog.Logger) (_ *DevStack, stop func(), err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, nil, err
	}
	var undo stops
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	s := &DevStack{NATSURL: cfg.NATSURL, TemporalHostPort: cfg.TemporalHostPort}
	if s.NATSURL == "" {
		ns, err := StartNATS(filepath.Join(cfg.DataDir, "nats"), cfg.NATSPort)
		if err != nil {
			return nil, nil, fmt.Errorf("%w (is port taken? point at an external one with --nats)", err)
		}
		undo = append(undo, func() { ns.Shutdown(); ns.WaitForShutdown() })
		s.NATSURL = ns.ClientURL()
	}
	if s.TemporalHostPort == "" {
		dev, err := TemporalDevServer{
			CLI: cfg.TemporalCLI, Dir: cfg.DataDir, Port: cfg.TemporalPort, UIPort: cfg.TemporalUIPort,
			// The UI shows decrypted payloads through the worker's codec
			// server (see devServices).
			ExtraArgs: DevUICodecArgs(cfg.WorkerAddr),
			CLIHint:   "run `make tools`, which installs the pinned CLI into ~/.cache/triggerflow/tools, or point at a server with --temporal",
		}.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		undo = append(undo, func() { stopTemporal(dev, log) })
		s.TemporalHostPort = dev.FrontendHostPort()
	}
	closeReceiver, err := s.startReceiver(ctx, cfg, trig)
	if err != nil {
		return nil, nil, err
	}
	return s, append(undo, closeReceiver).run, nil
}

// startReceiver starts the demo receiver. It verifies each delivery with
// the secrets of the delivery's tenant (ensureSecrets created them) under
// the reference its trigger names, and the token with the worker's keys.
func (s *DevStack) startReceiver(ctx context.Context, cfg DevConfig, trig *devTriggers) (stop func(), err error) {
	sm, err := secrets.New(ctx, secrets.Config{Dir: devSecretsDir(cfg)}, nil)
	if err != nil {
		return nil, err
	}
	s.Receiver = receiver.New(receiver.Config{
		Secrets: sm, SecretsRefFor: trig.secretsRef, JWKSURL: "http://" + cfg.WorkerAddr + authn.JWKSPath, Out: cfg.Out,
	})
	l, err := net.Listen("tcp", cfg.ReceiverAddr)
	if err != nil {
		return nil, fmt.Errorf("demo receiver on %s: %w", cfg.ReceiverAddr, err)
	}
	s.ReceiverURL = "http://" + l.Addr().String()
	srv := &http.Server{Handler: s.Receiver, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}

func devSecretsDir(cfg DevConfig) string { return filepath.Join(cfg.DataDir, "secrets") }

// devServices returns the watcher, ingest and worker configured for the
// stack, each file built and checked the way its binary's would be.
func devServices(cfg DevConfig, s *DevStack) ([]Service, error) {
	wf, inf, wkf := devWatcherFile(cfg, s), devIngestFile(cfg, s), devWorkerFile(cfg, s)
	// History is encrypted, as it should be in production, with a key
	// made in the data dir on the first run; the worker serves the codec
	// endpoint the dev server's UI decrypts through.
	c, srv, err := DevCodec(cfg.DataDir, cfg.TemporalUIPort)
	if err != nil {
		return nil, fmt.Errorf("dev codec key: %w", err)
	}
	inf.Temporal.Codec, wkf.Temporal.Codec, wkf.Worker.CodecServer = c, c, srv
	// Tasks are signed by the watcher and verified by ingest and the
	// worker, with a key pair made on the first run.
	signing, verify := filepath.Join(cfg.DataDir, "keys", "task-signing.key"), filepath.Join(cfg.DataDir, "keys", "task-verify.keys")
	if err := tasksig.EnsureKeyPair(signing, verify); err != nil {
		return nil, fmt.Errorf("dev task signing key: %w", err)
	}
	wf.Publisher.SigningKeyFile, inf.Ingest.VerifyKeysFile, wkf.Worker.VerifyKeysFile = signing, verify, verify
	return Services(&wf, &inf, &wkf)
}

// Services validates the three files and returns the watcher, ingest and
// worker that run them, in that order.
func Services(wf *config.WatcherFile, inf *config.IngestFile, wkf *config.WorkerFile) ([]Service, error) {
	for _, err := range []error{wf.Validate(), inf.Validate(), wkf.Validate()} {
		if err != nil {
			return nil, err
		}
	}
	return []Service{
		{"watcher", func(ctx context.Context, o Options) error { return Watcher(ctx, wf, o) }},
		{"ingest", func(ctx context.Context, o Options) error { return Ingest(ctx, inf, o) }},
		{"worker", func(ctx context.Context, o Options) error { return Worker(ctx, wkf, o) }},
	}, nil
}

func devWatcherFile(cfg DevConfig, s *DevStack) config.WatcherFile {
	w := config.Watcher{
		SQLite: config.SQLiteSource{Path: filepath.Join(cfg.DataDir, "documents.db")}, Triggers: cfg.Triggers,
		// A fresh data dir has no checkpoint: start at the head (audited).
		// Later runs resume from the checkpoint and lose nothing.
		StartFromNow: true, CheckpointInterval: trigger.Duration(200 * time.Millisecond),
	}
	if cfg.Tenant != "" {
		w.Tenant = cfg.Tenant
	} else {
		w.Tenants = []string{trigger.AllTenants}
	}
	if cfg.PostgresDSN != "" {
		w.Source = config.SourcePostgres
		w.Postgres.DSN = cfg.PostgresDSN
		w.Postgres.TenantColumn = cfg.PostgresTenantColumn
	}
	return config.WatcherFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.WatcherAddr}, NATS: config.NATS{URL: s.NATSURL}, Watcher: w}.WithDefaults()
}

func devIngestFile(cfg DevConfig, s *DevStack) config.IngestFile {
	return config.IngestFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.IngestAddr},
		NATS: config.NATS{URL: s.NATSURL}, Temporal: config.Temporal{HostPort: s.TemporalHostPort},
		Ingest: config.Ingest{Sharing: "shared"}}.WithDefaults()
}

func devWorkerFile(cfg DevConfig, s *DevStack) config.WorkerFile {
	return config.WorkerFile{Log: cfg.Log, HTTP: config.HTTP{Addr: cfg.WorkerAddr},
		NATS: config.NATS{URL: s.NATSURL}, Temporal: config.Temporal{HostPort: s.TemporalHostPort},
		Worker: config.Worker{
			AllowLoopback: new(true), QuietPeriod: trigger.Duration(30 * time.Second),
			Secrets: config.Secrets{Dir: devSecretsDir(cfg)}, Tokens: config.Tokens{KeyFile: filepath.Join(cfg.DataDir, "keys", "token-signing.pem")},
		}}.WithDefaults()
}

// Service is one of the daemons, run from its file until ctx ends.
type Service struct {
	Name string
	Run  func(ctx context.Context, opts Options) error
}

// serviceGroup is the dev stack's services running side by side.
type serviceGroup struct {
	n      int
	cancel context.CancelFunc
	wg     sync.WaitGroup
	up     chan struct{}
	errc   chan error
}

// startServices starts svcs under a context of their own, so that stop
// ends them all when one fails as well as when ctx ends. reload (may be
// nil) carries trigger reload requests to the watcher.
func startServices(ctx context.Context, log *slog.Logger, svcs []Service, reload <-chan struct{}) *serviceGroup {
	runCtx, cancel := context.WithCancel(ctx)
	g := &serviceGroup{n: len(svcs), cancel: cancel, up: make(chan struct{}, len(svcs)), errc: make(chan error, len(svcs))}
	for _, s := range svcs {
		opts := Options{Logger: log.With("svc", s.Name), OnReady: func(string) { g.up <- struct{}{} }, Reload: reload}
		g.wg.Go(func() {
			if err := s.Run(runCtx, opts); err != nil {
				g.errc <- fmt.Errorf("%s: %w", s.Name, err)
			}
		})
	}
	return g
}

// ready waits until every service is ready or one fails; it returns nil
// early when ctx ends.
func (g *serviceGroup) ready(ctx context.Context) error {
	for range g.n {
		select {
		case <-g.up:
		case err := <-g.errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// wait waits until a service fails, or for nil when ctx ends.
func (g *serviceGroup) wait(ctx context.Context) error {
	select {
	case err := <-g.errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// stop stops every service and waits until all have.
func (g *serviceGroup) stop() {
	g.cancel()
	g.wg.Wait()
}

// stopTemporal stops the dev server, and the readiness-check client that
// DevServer.Stop leaves open.
func stopTemporal(dev *testsuite.DevServer, log *slog.Logger) {
	dev.Client().Close()
	if err := dev.Stop(); err != nil {
		log.Warn("temporal dev server stop", "error", err)
	}
}

func printBanner(cfg DevConfig, s *DevStack, trig *devTriggers, watchErr error) {
	ui := "(external Temporal)"
	if cfg.TemporalHostPort == "" && cfg.TemporalUIPort > 0 {
		ui = fmt.Sprintf("http://localhost:%d", cfg.TemporalUIPort)
	}
	tenants := slices.Sorted(maps.Keys(trig.initial.Triggers))
	scope := fmt.Sprintf("tenant %s", cfg.Tenant)
	if cfg.Tenant == "" {
		scope = fmt.Sprintf("tenants %s", strings.Join(tenants, ", "))
	}
	db := filepath.Join(cfg.DataDir, "documents.db")
	dbFlag := ""
	if cfg.DataDir != DevDataDir {
		dbFlag = " --db " + db
	}
	var puts strings.Builder
	const showTenants = 3
	for i, t := range tenants {
		if i == showTenants {
			fmt.Fprintf(&puts, "  (and the %d other tenants)\n", len(tenants)-showTenants)
			break
		}
		if coll := plainCollection(trig.initial.Triggers[t]); coll != "" {
			fmt.Fprintf(&puts, "  go run ./cmd/triggerflow doc%s put --tenant %s %s o-1 '{\"status\":\"paid\",\"total\":42}'\n", dbFlag, t, coll)
		}
	}
	edits := fmt.Sprintf("Edits to the trigger files in %s are picked up when saved", cfg.Triggers)
	switch {
	case watchErr != nil:
		edits = fmt.Sprintf("The trigger files are not watched (%v): restart to pick up edits", watchErr)
	case cfg.Tenant == "":
		edits += ", a new tenant's files too"
	}
	fmt.Fprintf(cfg.Out, `
Triggerflow dev stack is up (%s; triggers from %s, data in %s)

  Temporal UI      %s
  Temporal         %s
  NATS             %s
  Demo receiver    %s   (verifies signatures and tokens, prints deliveries below)
  Metrics          http://%s/metrics  http://%s/metrics  http://%s/metrics
  Token keys       http://%s%s
  Signing secrets  %s   (one directory per tenant)
  History key      %s   (history is encrypted; the UI decrypts through
                   http://%s%s; CLI: triggerflow deliveries --codec-key-file %s)

Write a document:
%s  (or sqlite3 %s: INSERT INTO documents ...)

%s.
Ctrl-C stops everything; the next run resumes from the saved checkpoint.

`, scope, cfg.Triggers, cfg.DataDir, ui, s.TemporalHostPort, s.NATSURL, s.ReceiverURL,
		cfg.WatcherAddr, cfg.IngestAddr, cfg.WorkerAddr, cfg.WorkerAddr, authn.JWKSPath, devSecretsDir(cfg),
		DevCodecKeyFile(cfg.DataDir), cfg.WorkerAddr, CodecPath, DevCodecKeyFile(cfg.DataDir),
		puts.String(), db, edits)
}

// plainCollection returns the first collection among ts that names one
// collection rather than a pattern, for the banner's example write.
func plainCollection(ts []*trigger.Trigger) string {
	for _, t := range ts {
		if !strings.Contains(t.Collection, "*") {
			return t.Collection
		}
	}
	return ""
}
