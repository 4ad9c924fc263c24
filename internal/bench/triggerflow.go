package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/watcher"
)

const (
	tfTenant  = "bench"
	tfTrigger = "bench"
)

// Pipeline is Triggerflow's three binaries running as separate processes
// on one document source: SQLite, or PostgreSQL when
// PipelineConfig.PostgresDSN is set.
type Pipeline struct {
	procs  map[string]*exec.Cmd
	ports  map[string]int
	source string // "SQLite" or "PostgreSQL", for notes
	// Exactly one of store and pool is set.
	store   *docstore.Store
	mu      sync.Mutex // one SQLite writer: SQLite serialises commits anyway
	pool    *pgxpool.Pool
	senders int
	pgPID   int
}

// PipelineConfig says where the binaries are, what they connect to and
// which source the watcher reads.
type PipelineConfig struct {
	// BinDir holds the watcher, ingest and worker binaries; Dir receives
	// their config files, logs and (SQLite) the document store.
	BinDir, Dir                            string
	NATSURL, TemporalHostPort, ReceiverURL string
	// Quiet is the worker's quietPeriod.
	Quiet time.Duration
	// PostgresDSN, when set, makes the watcher stream PostgreSQL logical
	// replication from this database (wal_level=logical, a role with
	// REPLICATION) instead of reading the SQLite store, and the bench
	// commit rows there with Senders connections.
	PostgresDSN string
	Senders     int
	// PostgresPID, when set, is the PostgreSQL server's postmaster; its
	// CPU and its backends' is reported as "postgres".
	PostgresPID int
	// Pprof turns on http.pprof in all three binaries (see Profile).
	Pprof bool
	// Publisher, when set, is the watcher's publisher section as a YAML
	// flow mapping, e.g. "{imageThreshold: inline}".
	Publisher string
	// Worker, when set, adds entries to the worker's worker section, as
	// YAML flow-mapping entries, e.g. "imageReleaseDelay: 1ms".
	Worker string
	// Seed, when set, writes documents to the SQLite store before the
	// binaries start. The watcher skips them: its checkpoint starts at
	// their head, and their change log is pruned, so later writes to the
	// same documents are updates carrying a before image. SQLite only.
	Seed func(ctx context.Context, st *docstore.Store) error
}

// BuildBinaries builds watcher, ingest and worker from the module at repo
// into dir.
func BuildBinaries(ctx context.Context, repo, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/watcher", "./cmd/ingest", "./cmd/worker")
	cmd.Dir = repo
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build the binaries: %w", err)
	}
	return nil
}

// StartPipeline writes the three config files and the trigger under
// cfg.Dir, starts the binaries and waits until all report ready.
func StartPipeline(ctx context.Context, cfg PipelineConfig) (_ *Pipeline, err error) {
	dir := cfg.Dir
	trig := filepath.Join(dir, "triggers")
	secretsDir := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(trig, 0o755); err != nil {
		return nil, err
	}
	// One trigger on every top-level collection: each phase of each row
	// writes its own collection, so workflow IDs never repeat across runs.
	if err := os.WriteFile(filepath.Join(trig, "bench.yaml"), fmt.Appendf(nil, `
tenant: %s
triggers:
  - triggerId: %s
    collection: "*"
    url: %s/hook
    secretsRef: default
`, tfTenant, tfTrigger, cfg.ReceiverURL), 0o600); err != nil {
		return nil, err
	}
	if _, err := secrets.Ensure(secretsDir, tfTenant, "default"); err != nil {
		return nil, err
	}
	p := &Pipeline{procs: map[string]*exec.Cmd{}, ports: map[string]int{}, source: "SQLite", senders: 1}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	var source string
	if cfg.PostgresDSN != "" && cfg.Seed != nil {
		return nil, errors.New("bench: seeding documents needs the SQLite source")
	}
	if cfg.PostgresDSN != "" {
		pcfg, err := pgxpool.ParseConfig(cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("postgres DSN: %w", err)
		}
		p.senders = max(cfg.Senders, 1)
		// The open loop sends from one goroutine per event; a few spare
		// connections keep it from queueing on the pool at half capacity.
		pcfg.MaxConns = int32(p.senders + 4)
		// The throwaway cluster defaults to synchronous_commit=off for
		// tests' speed; then a commit reaches the walsender only at the
		// WAL writer's next flush (up to wal_writer_delay, 200 ms later).
		// Production commits flush, so the bench's do too (fsync stays
		// off: the flush is cheap and the row measures Triggerflow).
		pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
		if p.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
			return nil, fmt.Errorf("postgres pool: %w", err)
		}
		p.source, p.pgPID = "PostgreSQL", cfg.PostgresPID
		// No checkpoint yet: the watcher starts at the WAL head (audited),
		// before the bench's first commit, and creates the publication
		// (FOR ALL TABLES, so the rows' tables made later are in it) and
		// its slot.
		source = fmt.Sprintf("source: postgres, postgres: {dsn: %q}, startFromNow: true", cfg.PostgresDSN)
	} else {
		db := filepath.Join(dir, "documents.db")
		if p.store, err = docstore.Open(ctx, docstore.Config{Path: db}); err != nil {
			return nil, err
		}
		// Start at the beginning of the empty change log so every write
		// counts, or right after the seeded documents.
		start := docstore.FormatPosition(0)
		if cfg.Seed != nil {
			if start, err = seed(ctx, p.store, cfg.Seed); err != nil {
				return nil, err
			}
		}
		if err := p.store.Checkpoints().Save(ctx, watcher.CheckpointPrefix+tfTenant, start); err != nil {
			return nil, err
		}
		source = fmt.Sprintf("source: sqlite, sqlite: {path: %q}", db)
	}
	common := func(port int) string {
		return fmt.Sprintf("log: {format: text, level: warn, temporalLevel: error}\nhttp: {addr: \"127.0.0.1:%d\", pprof: %t}\nnats: {url: %q}\n", port, cfg.Pprof, cfg.NATSURL)
	}
	publisher := ""
	if cfg.Publisher != "" {
		publisher = "publisher: " + cfg.Publisher + "\n"
	}
	workerExtra := ""
	if cfg.Worker != "" {
		workerExtra = ", " + cfg.Worker
	}
	files := map[string]string{
		"watcher": fmt.Sprintf("watcher: {tenant: %s, %s, triggers: %q, checkpointInterval: 200ms}\n%s", tfTenant, source, trig, publisher),
		"ingest":  fmt.Sprintf("temporal: {hostPort: %q}\n", cfg.TemporalHostPort),
		"worker": fmt.Sprintf("temporal: {hostPort: %q}\nworker: {allowLoopback: true, quietPeriod: %s, secrets: {dir: %q}, tokens: {keyFile: %q}%s}\n",
			cfg.TemporalHostPort, cfg.Quiet, secretsDir, filepath.Join(dir, "keys", "token.pem"), workerExtra),
	}
	for _, name := range []string{"watcher", "ingest", "worker"} {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		p.ports[name] = port
		cfgPath := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(cfgPath, []byte(common(port)+files[name]), 0o600); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(filepath.Join(cfg.BinDir, name), "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close() // the child has its own descriptor
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p.procs[name] = cmd
	}
	deadline := time.Now().Add(60 * time.Second)
	for name, port := range p.ports {
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s not ready after 60s (log in %s)", name, filepath.Join(dir, name+".log"))
			}
			time.Sleep(50 * time.Millisecond) // polling an external process's readiness
		}
	}
	if p.pool != nil {
		if err := p.awaitStartFromNow(ctx, deadline); err != nil {
			return nil, fmt.Errorf("%w (log in %s)", err, filepath.Join(dir, "watcher.log"))
		}
	}
	return p, nil
}

// seed runs write on st and returns the position after the documents it
// wrote, with the change log up to there pruned: the watcher starting
// there neither delivers them nor spends its own time pruning them.
func seed(ctx context.Context, st *docstore.Store, write func(context.Context, *docstore.Store) error) (string, error) {
	if err := write(ctx, st); err != nil {
		return "", fmt.Errorf("seeding documents: %w", err)
	}
	src, err := st.Source(tfTenant)
	if err != nil {
		return "", err
	}
	defer src.Close()
	head, err := src.Head(ctx)
	if err != nil || head == "" {
		return docstore.FormatPosition(0), err
	}
	if err := src.Confirm(ctx, head); err != nil {
		return "", fmt.Errorf("pruning the seeded changes: %w", err)
	}
	return head, nil
}

// awaitStartFromNow waits for the watcher's start-from-now checkpoint in
// the watched database (pgsource's triggerflow_checkpoints table): a row
// committed before the watcher has its slot and its head is never
// delivered. Once the checkpoint is there, the slot exists and every later
// commit is after the head.
func (p *Pipeline) awaitStartFromNow(ctx context.Context, deadline time.Time) error {
	for {
		var n int
		err := p.pool.QueryRow(ctx, "SELECT count(*) FROM triggerflow_checkpoints WHERE key = $1", watcher.CheckpointPrefix+tfTenant).Scan(&n)
		if err == nil && n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the watcher saved no start-from-now checkpoint in 60s (last error: %v)", err)
		}
		time.Sleep(50 * time.Millisecond) // polling another process's progress
	}
}

// RSS reports each binary's peak RSS.
func (p *Pipeline) RSS() map[string]float64 {
	out := map[string]float64{}
	for name, cmd := range p.procs {
		out[name] = round1(PeakRSSMB(strconv.Itoa(cmd.Process.Pid)))
	}
	return out
}

// CurrentRSS reports each binary's current RSS.
func (p *Pipeline) CurrentRSS() map[string]float64 {
	out := map[string]float64{}
	for name, cmd := range p.procs {
		out[name] = round1(RSSMB(strconv.Itoa(cmd.Process.Pid)))
	}
	return out
}

func (p *Pipeline) pids() map[string]string {
	out := map[string]string{}
	for name, cmd := range p.procs {
		out[name] = strconv.Itoa(cmd.Process.Pid)
	}
	return out
}

func (p *Pipeline) cpu() func() map[string]float64 {
	cpu := CPUOf(p.pids())
	if p.pgPID == 0 {
		return cpu
	}
	pid := strconv.Itoa(p.pgPID)
	return func() map[string]float64 {
		out := cpu()
		out["postgres"] = TreeCPUSeconds(pid)
		return out
	}
}

// Close stops the binaries (SIGTERM, then SIGKILL after 10 s) and closes
// the bench's side of the source.
func (p *Pipeline) Close() {
	for _, cmd := range p.procs {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	for _, cmd := range p.procs {
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if p.store != nil {
		p.store.Close()
	}
	if p.pool != nil {
		p.pool.Close()
	}
}

// Profile GETs path (a /debug/pprof/ URL path with its query) from the
// three binaries at once and writes each answer to dir/<prefix>-<binary>.pprof;
// the binaries must run with Pprof. It returns the files written.
func (p *Pipeline) Profile(ctx context.Context, path, dir, prefix string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		files []string
		errs  []error
	)
	for name, port := range p.ports {
		wg.Go(func() {
			file := filepath.Join(dir, prefix+"-"+name+".pprof")
			err := fetchTo(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), file)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s profile of %s: %w", prefix, name, err))
				return
			}
			files = append(files, file)
		})
	}
	wg.Wait()
	slices.Sort(files)
	return files, errors.Join(errs...)
}

func fetchTo(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Scenario is Triggerflow end to end: the bench commits documents to the
// pipeline's source and the watcher process picks them up (SQLite by
// polling, PostgreSQL by logical replication). hotKeys 0 means every event
// is a new document (cold). Each phase writes its own collection; on
// PostgreSQL that is a table (k text PRIMARY KEY, id text, t bigint), made
// here, and a write is an upsert on k, so a hot key's later writes are
// updates as they are on SQLite.
func (p *Pipeline) Scenario(ctx context.Context, tc client.Client, name string, hotKeys int) (Scenario, error) {
	return p.scenario(ctx, tc, name, hotKeys, func(m Mark) ([]byte, error) { return json.Marshal(m) })
}

// docKey is the key of a cold scenario's event i in any phase.
func docKey(i int) string { return fmt.Sprintf("d%d", i) }

// collection is the collection scenario name writes in phase ph.
func collection(name string, ph Phase) string { return fmt.Sprintf("%s-%s", sanitize(name), ph) }

// scenario is Scenario with doc making each event's document (SQLite
// only; the PostgreSQL rows write the mark's columns).
func (p *Pipeline) scenario(ctx context.Context, tc client.Client, name string, hotKeys int, doc func(Mark) ([]byte, error)) (Scenario, error) {
	key := func(_ Phase, i int) string { return docKey(i) }
	if hotKeys > 0 {
		key = func(_ Phase, i int) string { return docKey(i % hotKeys) }
	}
	coll := func(ph Phase) string { return collection(name, ph) }
	sc := Scenario{
		Name: name, Key: key, Senders: p.senders, RSS: p.RSS, CPU: p.cpu(),
		History: func(ctx context.Context, keys []string) (Usage, error) {
			var ids []string
			for _, k := range unique(keys) {
				ids = append(ids, ingest.WorkflowID(tfTenant, tfTrigger, coll(Closed), k))
			}
			return historyOf(ctx, tc, ids, true, false)
		},
		Notes: fmt.Sprintf("separate watcher/ingest/worker processes, %s source, %d writer(s); history counted once each run closed.", p.source, p.senders),
	}
	if p.pool == nil {
		sc.Send = func(ctx context.Context, ph Phase, key string, m Mark) error {
			doc, err := doc(m)
			if err != nil {
				return err
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.store.Put(ctx, tfTenant, coll(ph), key, doc)
		}
		return sc, nil
	}
	upsert := map[Phase]string{}
	for _, ph := range append([]Phase{Closed, Open}, SweepPhases...) {
		table := pgx.Identifier{coll(ph)}.Sanitize()
		if _, err := p.pool.Exec(ctx, "CREATE TABLE "+table+" (k text PRIMARY KEY, id text NOT NULL, t bigint NOT NULL)"); err != nil {
			return Scenario{}, fmt.Errorf("create table %s: %w", table, err)
		}
		upsert[ph] = "INSERT INTO " + table + " (k, id, t) VALUES ($1, $2, $3) ON CONFLICT (k) DO UPDATE SET id = excluded.id, t = excluded.t"
	}
	// One autocommit statement per event: the commit is the Exec, and m.T
	// was taken just before it.
	sc.Send = func(ctx context.Context, ph Phase, key string, m Mark) error {
		_, err := p.pool.Exec(ctx, upsert[ph], key, m.ID, m.T)
		return err
	}
	return sc, nil
}
func sanitize(s string) string {
	s = strings.ToLower(s)
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			out = append(out, c)
		}
	}
	return string(out)
}
