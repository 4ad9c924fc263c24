package chaos_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries built once per test binary run (TestMain).
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

// buildBinaries compiles the three services and nats-server into binDir
// with one go build, so the package graph is loaded once.
func buildBinaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"github.com/triggerflow/triggerflow/cmd/watcher",
			"github.com/triggerflow/triggerflow/cmd/ingest",
			"github.com/triggerflow/triggerflow/cmd/worker",
			"github.com/nats-io/nats-server/v2",
		)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// proc is one child process that the test kills and starts again with the
// same arguments. Only the test goroutine calls its methods.
type proc struct {
	t    testing.TB
	name string
	bin  string
	args []string
	log  string // output of every incarnation, appended

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	// unexpected counts exits the test did not cause; each is restarted.
	unexpected int
	starts     int
}

func newProc(t testing.TB, name, bin string, args ...string) *proc {
	p := &proc{t: t, name: name, bin: bin, args: args, log: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				if len(b) > 8<<10 {
					b = b[len(b)-8<<10:]
				}
				t.Logf("%s output (tail):\n%s", p.name, b)
			}
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== start %d at %s\n", p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.starts++
}

// stop signals the process and waits for it to exit (SIGKILL after 30 s).
// It returns how the process ended, nil if it was not running.
func (p *proc) stop(sig syscall.Signal) *os.ProcessState {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	st := p.cmd.ProcessState
	p.cmd = nil
	return st
}

// exited reports whether the current incarnation is gone.
func (p *proc) exited() bool {
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// revive starts the process again if it exited on its own, as a process
// supervisor would, and counts it: a service may give up while one of its
// servers is down.
func (p *proc) revive() {
	p.t.Helper()
	if p.cmd != nil && p.exited() {
		p.unexpected++
		if p.unexpected > 20 {
			p.t.Fatalf("%s keeps exiting on its own (%v); see its output", p.name, p.cmd.ProcessState)
		}
		p.t.Logf("chaos: %s exited on its own (%v); restarting", p.name, p.cmd.ProcessState)
		p.cmd = nil
		p.start()
	}
}

// incarnation is one start of a process and what it printed.
type incarnation struct {
	start  time.Time
	output string
}

// incarnations splits the process's output by start.
func (p *proc) incarnations(t testing.TB) []incarnation {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []incarnation
	for _, part := range strings.Split(string(b), "=== start ")[1:] {
		head, body, _ := strings.Cut(part, "\n")
		_, at, _ := strings.Cut(head, " at ")
		ts, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			t.Fatalf("%s output: start line %q: %v", p.name, head, err)
		}
		out = append(out, incarnation{start: ts, output: body})
	}
	return out
}

// freePort returns a 127.0.0.1 port for a child process to bind.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
