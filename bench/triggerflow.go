package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

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
// on the SQLite source.
type Pipeline struct {
	procs map[string]*exec.Cmd
	store *docstore.Store
	mu    sync.Mutex // one writer: SQLite serialises commits anyway
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

// StartPipeline writes the three config files and the trigger under dir,
// starts the binaries from binDir and waits until all report ready.
func StartPipeline(ctx context.Context, binDir, dir, natsURL, temporalHostPort, receiverURL string, quiet time.Duration) (*Pipeline, error) {
	db := filepath.Join(dir, "documents.db")
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
`, tfTenant, tfTrigger, receiverURL), 0o600); err != nil {
		return nil, err
	}
	if _, err := secrets.Ensure(secretsDir, tfTenant, "default"); err != nil {
		return nil, err
	}
	store, err := docstore.Open(ctx, docstore.Config{Path: db})
	if err != nil {
		return nil, err
	}
	// Start at the beginning of the empty change log so every write counts.
	if err := store.Checkpoints().Save(ctx, watcher.CheckpointPrefix+tfTenant, docstore.FormatPosition(0)); err != nil {
		store.Close()
		return nil, err
	}
	p := &Pipeline{procs: map[string]*exec.Cmd{}, store: store}
	common := func(port int) string {
		return fmt.Sprintf("log: {format: text, level: warn, temporalLevel: error}\nhttp: {addr: \"127.0.0.1:%d\"}\nnats: {url: %q}\n", port, natsURL)
	}
	files := map[string]string{
		"watcher": fmt.Sprintf("watcher: {tenant: %s, source: sqlite, sqlite: {path: %q}, triggers: %q, checkpointInterval: 200ms}\n", tfTenant, db, trig),
		"ingest":  fmt.Sprintf("temporal: {hostPort: %q}\n", temporalHostPort),
		"worker": fmt.Sprintf("temporal: {hostPort: %q}\nworker: {allowLoopback: true, quietPeriod: %s, secrets: {dir: %q}, tokens: {keyFile: %q}}\n",
			temporalHostPort, quiet, secretsDir, filepath.Join(dir, "keys", "token.pem")),
	}
	ports := map[string]int{}
	for _, name := range []string{"watcher", "ingest", "worker"} {
		port, err := FreePort()
		if err != nil {
			p.Close()
			return nil, err
		}
		ports[name] = port
		cfgPath := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(cfgPath, []byte(common(port)+files[name]), 0o600); err != nil {
			p.Close()
			return nil, err
		}
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			p.Close()
			return nil, err
		}
		cmd := exec.Command(filepath.Join(binDir, name), "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			p.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p.procs[name] = cmd
	}
	deadline := time.Now().Add(60 * time.Second)
	for name, port := range ports {
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				p.Close()
				return nil, fmt.Errorf("%s not ready after 60s (log in %s)", name, filepath.Join(dir, name+".log"))
			}
			time.Sleep(50 * time.Millisecond) // polling an external process's readiness
		}
	}
	return p, nil
}

// RSS reports each binary's peak RSS.
func (p *Pipeline) RSS() map[string]float64 {
	out := map[string]float64{}
	for name, cmd := range p.procs {
		out[name] = round1(PeakRSSMB(strconv.Itoa(cmd.Process.Pid)))
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

// Close stops the binaries (SIGTERM, then SIGKILL after 10 s) and the
// store.
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
	p.store.Close()
}

// Scenario is Triggerflow end to end: the bench commits documents to
// SQLite, the watcher process picks them up. hotKeys 0 means every event
// is a new document (cold).
func (p *Pipeline) Scenario(tc client.Client, name string, hotKeys int) Scenario {
	key := func(_ Phase, i int) string { return fmt.Sprintf("d%d", i) }
	if hotKeys > 0 {
		key = func(_ Phase, i int) string { return fmt.Sprintf("d%d", i%hotKeys) }
	}
	coll := func(ph Phase) string { return fmt.Sprintf("%s-%s", sanitize(name), ph) }
	return Scenario{
		Name: name, Key: key, Senders: 1, RSS: p.RSS, CPU: CPUOf(p.pids()),
		Send: func(ctx context.Context, ph Phase, key string, m Mark) error {
			doc, _ := json.Marshal(m)
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.store.Put(ctx, tfTenant, coll(ph), key, doc)
		},
		History: func(ctx context.Context, keys []string) (int64, error) {
			var ids []string
			for _, k := range unique(keys) {
				ids = append(ids, ingest.WorkflowID(tfTenant, tfTrigger, coll(Closed), k))
			}
			return historyOf(ctx, tc, ids, true, false)
		},
		Notes: "separate watcher/ingest/worker processes, SQLite source; history counted after each workflow's quiet-period exit.",
	}
}

func sanitize(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			out = append(out, c)
		}
	}
	return string(out)
}
