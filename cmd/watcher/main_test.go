package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
)

// buildWatcher compiles this command into a temp dir.
func buildWatcher(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "watcher")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// dockerLinkVars are the -X assignments of the Dockerfile's go build:
// variable path → build argument.
var dockerLinkVars = regexp.MustCompile(`-X (\S+)=\$\{(\w+)\}`)

// TestVersionFromLinkerFlags builds the watcher with the Dockerfile's
// linker flags and checks that the build arguments name the build, and
// that the real binary refuses a stray argument with status 2.
func TestVersionFromLinkerFlags(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	args := map[string]string{"VERSION": "v1.2.3-test", "REVISION": "feedface"}
	var ldflags []string
	for _, m := range dockerLinkVars.FindAllStringSubmatch(string(df), -1) {
		v, ok := args[m[2]]
		require.True(t, ok, "the Dockerfile sets %s from an unknown build argument %s", m[1], m[2])
		ldflags = append(ldflags, "-X", m[1]+"="+v)
	}
	require.Len(t, ldflags, 4, "the Dockerfile sets the version and the revision")

	bin := filepath.Join(t.TempDir(), "watcher")
	out, err := exec.Command("go", "build", "-ldflags", strings.Join(ldflags, " "), "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	require.Equal(t, "watcher v1.2.3-test (revision feedface, "+runtime.Version()+")\n", string(out))

	cmd := exec.Command(bin, "watcher.yaml")
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	require.Equal(t, 2, exit.ExitCode())
	require.Contains(t, string(out), `unexpected argument "watcher.yaml"`)
}

type watcherProc struct {
	cmd  *exec.Cmd
	logs *strings.Builder
}

func startWatcher(t *testing.T, bin, cfgPath string) *watcherProc {
	t.Helper()
	logs := &strings.Builder{}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	p := &watcherProc{cmd: cmd, logs: logs}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("watcher output:\n%s", logs.String())
		}
	})
	return p
}

// streamCount returns how many messages the task stream holds.
func streamCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "TRIGGERS")
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

// waitCount waits for the task stream to reach at least n messages.
func waitCount(t *testing.T, js jetstream.JetStream, n uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for streamCount(t, js) < n {
		require.True(t, time.Now().Before(deadline), "stream stuck at %d of %d", streamCount(t, js), n)
		time.Sleep(10 * time.Millisecond) // polling an external process's effect
	}
}

// TestSIGKILLLosesNothing kills the watcher mid-stream with SIGKILL, starts
// it again, and checks the stream then holds every expected task exactly
// once: changes emitted but not checkpointed are re-published after the
// restart and dropped as duplicates by Nats-Msg-Id.
func TestSIGKILLLosesNothing(t *testing.T) {
	bin := buildWatcher(t)
	ns := testenv.NATS(t)
	js, err := jetstream.New(ns.Conn(t))
	require.NoError(t, err)

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "docs.db")
	trigDir := filepath.Join(dir, "triggers")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(trigDir, "t.yaml"), []byte(
		"tenant: acme\ntriggers:\n  - triggerId: all\n    collection: items\n    url: https://hooks.example.com/x\n"), 0o600))
	cfgPath := filepath.Join(dir, "watcher.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
log: {format: text, level: warn}
http: {addr: "127.0.0.1:0"}
nats: {url: %q}
watcher:
  tenant: acme
  sqlite: {path: %q}
  checkpointEvery: 50
  checkpointInterval: 20ms
  triggers: %q
`, ns.URL(), dbPath, trigDir), 0o600))

	store, err := docstore.Open(context.Background(), docstore.Config{Path: dbPath})
	require.NoError(t, err)
	defer store.Close()

	// Start from the beginning of the (empty) change log, so every write
	// below must arrive, whenever the watcher gets to it.
	require.NoError(t, store.Checkpoints().Save(context.Background(), "sys/checkpoints/trigger_evaluator/acme", docstore.FormatPosition(0)))

	const total = 3000
	w := startWatcher(t, bin, cfgPath)
	writeDone := make(chan error, 1)
	go func() {
		for i := range total {
			if err := store.Put(context.Background(), "acme", "items", fmt.Sprintf("k%04d", i), json.RawMessage(`{}`)); err != nil {
				writeDone <- err
				return
			}
		}
		writeDone <- nil
	}()

	waitCount(t, js, total/3)
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	_ = w.cmd.Wait()
	require.NoError(t, <-writeDone)

	w = startWatcher(t, bin, cfgPath)
	waitCount(t, js, total)
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, w.cmd.Wait(), "SIGTERM drains and exits 0")

	require.EqualValues(t, total, streamCount(t, js), "every change once: none lost, replays deduplicated")
	cons, err := js.OrderedConsumer(context.Background(), "TRIGGERS", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	seen := map[string]bool{}
	for len(seen) < total {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			n++
			task, err := trigger.DecodeTask(m.Data())
			require.NoError(t, err)
			require.False(t, seen[task.DocKey], "duplicate %s", task.DocKey)
			seen[task.DocKey] = true
		}
		require.NotZero(t, n)
	}
}

// metricValue scrapes the watcher's /metrics for one sample line's value.
func metricValue(t *testing.T, addr, name string) (string, bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			return f[len(f)-1], true
		}
	}
	return "", false
}

func waitMetric(t *testing.T, addr, name, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if v, ok := metricValue(t, addr, name); ok && v == want {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s never became %s", name, want)
		time.Sleep(10 * time.Millisecond) // polling an external process's effect
	}
}

// TestSIGHUPReloadsTriggers: a bad reload keeps the previous set and turns
// the load-failed gauge on; a good one replaces the set and turns it off.
func TestSIGHUPReloadsTriggers(t *testing.T) {
	bin := buildWatcher(t)
	ns := testenv.NATS(t)
	dir := t.TempDir()
	trig := filepath.Join(dir, "t.yaml")
	good := "tenant: acme\ntriggers:\n  - {triggerId: a, collection: items, url: 'https://hooks.example.com/a'}\n"
	require.NoError(t, os.WriteFile(trig, []byte(good), 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	cfgPath := filepath.Join(dir, "watcher.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
log: {format: text, level: warn}
http: {addr: %q}
nats: {url: %q}
watcher: {tenant: acme, sqlite: {path: %q}, startFromNow: true, triggers: %q}
`, addr, ns.URL(), filepath.Join(dir, "docs.db"), trig), 0o600))

	w := startWatcher(t, bin, cfgPath)
	waitMetric(t, addr, "triggerflow_triggers_active", "1")

	require.NoError(t, os.WriteFile(trig, []byte("tenant: acme\ntriggers:\n  - {triggerId: b, collection: 'bad..', url: 'ftp://x'}\n"), 0o600))
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGHUP))
	waitMetric(t, addr, "triggerflow_triggers_load_failed", "1")
	v, _ := metricValue(t, addr, "triggerflow_triggers_active")
	require.Equal(t, "1", v, "the previous set stays active")

	two := good + "  - {triggerId: b, collection: items, url: 'https://hooks.example.com/b'}\n"
	require.NoError(t, os.WriteFile(trig, []byte(two), 0o600))
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGHUP))
	waitMetric(t, addr, "triggerflow_triggers_active", "2")
	waitMetric(t, addr, "triggerflow_triggers_load_failed", "0")

	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, w.cmd.Wait())
	require.Contains(t, w.logs.String(), "trigger reload failed")
}

// TestInvalidTriggersExitNonZero: at start-up every problem is printed and
// the process exits non-zero.
func TestInvalidTriggersExitNonZero(t *testing.T) {
	bin := buildWatcher(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "watcher.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, "watcher: {tenant: acme, sqlite: {path: %q}, triggers: %q}\n",
		filepath.Join(dir, "docs.db"), "../../trigger/testdata/invalid"), 0o600))
	out, err := exec.Command(bin, "--config", cfgPath).CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.Contains(t, string(out), "ftp-url.yaml:")
	require.Contains(t, string(out), "bad-tenant-char.yaml:")
}
