package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/triggerflow/triggerflow/internal/daemon"
)

// Servers are the NATS and Temporal servers every row shares.
type Servers struct {
	NATS     *server.Server
	Temporal *testsuite.DevServer
	Client   client.Client

	cli, dir string
	port     int
	runs     int // Temporal dev servers started
}

// StartServers embeds a file-backed JetStream server and starts the
// Temporal dev server as `make dev` runs them, with the CLI at cli,
// keeping their state under dir.
func StartServers(ctx context.Context, dir, cli string) (*Servers, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	ns, err := daemon.StartNATS(filepath.Join(dir, "nats"), -1)
	if err != nil {
		return nil, err
	}
	s := &Servers{NATS: ns, cli: cli, dir: dir, port: port}
	if err := s.startTemporal(ctx); err != nil {
		ns.Shutdown()
		return nil, err
	}
	return s, nil
}

// startTemporal starts a Temporal dev server on s.port with an empty
// database of its own.
func (s *Servers) startTemporal(ctx context.Context) error {
	s.runs++
	dir := filepath.Join(s.dir, fmt.Sprintf("temporal-%d", s.runs))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dev, err := daemon.TemporalDevServer{CLI: s.cli, CLIHint: "run `make tools` or set TRIGGERFLOW_TEMPORAL_CLI", Dir: dir, Port: s.port}.Start(ctx)
	if err != nil {
		return err
	}
	s.Temporal, s.Client = dev, dev.Client()
	return nil
}

// FreshTemporal replaces the Temporal dev server by one on an empty
// database, on the same port, so a row does not pay for the workflows of
// the rows before it: the dev server's SQLite database and its indexes
// grow with every run, and a row measured later would run slower for
// that alone. Start the row's clients (binaries, workers) after it.
func (s *Servers) FreshTemporal(ctx context.Context) error {
	s.Client.Close()
	if err := s.Temporal.Stop(); err != nil {
		return fmt.Errorf("stop the Temporal dev server: %w", err)
	}
	return s.startTemporal(ctx)
}

// Close stops both servers.
func (s *Servers) Close() {
	s.Client.Close()
	_ = s.Temporal.Stop()
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PeakRSSMB reads VmHWM of pid ("self" for this process) in MiB.
func PeakRSSMB(pid string) float64 { return procStatusMB(pid, "VmHWM:") }

// RSSMB reads VmRSS, the current resident set, of pid in MiB.
func RSSMB(pid string) float64 { return procStatusMB(pid, "VmRSS:") }

// procStatusMB reads a kB field of /proc/<pid>/status in MiB; -1 if absent.
func procStatusMB(pid, field string) float64 {
	f, err := os.Open(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return -1
			}
			return kb / 1024
		}
	}
	return -1
}

// Load1 is the 1-minute load average.
func Load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		return -1
	}
	return f
}

// Machine describes the host: CPUs, model, memory, kernel.
func Machine() string {
	model, cpus := "", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "processor") {
				cpus++
			}
			if v, ok := strings.CutPrefix(line, "model name"); ok && model == "" {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			if kb, err := strconv.ParseFloat(strings.Fields(line)[1], 64); err == nil {
				mem = fmt.Sprintf("%.0f GiB", kb/1024/1024)
			}
		}
	}
	return fmt.Sprintf("%d CPU %s, %s RAM", cpus, model, mem)
}

// CPUSeconds is a process's user+system CPU time so far (pid or "self").
func CPUSeconds(pid string) float64 {
	st, ok := readStat(pid)
	if !ok {
		return -1
	}
	return st.utime + st.stime
}

// TreeCPUSeconds is the CPU time of pid and its children: its own, that
// of its live children, and that of the children it has reaped. It is a
// PostgreSQL server's cost, which is spread over the postmaster and one
// process per connection (the walsender that decodes for the watcher is
// one).
func TreeCPUSeconds(pid string) float64 {
	root, ok := readStat(pid)
	if !ok {
		return -1
	}
	sum := root.utime + root.stime + root.cutime + root.cstime
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if st, ok := readStat(d.Name()); ok && st.ppid == pid {
			sum += st.utime + st.stime + st.cutime + st.cstime
		}
	}
	return sum
}

// procStat is the part of /proc/<pid>/stat the bench reads; times in
// seconds.
type procStat struct {
	ppid                         string
	utime, stime, cutime, cstime float64
}

func readStat(pid string) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return procStat{}, false
	}
	// Fields after the parenthesised command name: state is the 3rd field
	// of the whole line, ppid the 4th, utime, stime, cutime and cstime the
	// 14th to 17th.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return procStat{}, false
	}
	f := strings.Fields(rest)
	if len(f) < 15 {
		return procStat{}, false
	}
	var t [4]float64
	for i := range t {
		v, err := strconv.ParseFloat(f[11+i], 64)
		if err != nil {
			return procStat{}, false
		}
		t[i] = v / 100 // USER_HZ is 100 on Linux
	}
	return procStat{ppid: f[1], utime: t[0], stime: t[1], cutime: t[2], cstime: t[3]}, true
}

// ChildPID finds a direct child of this process by command name (the
// Temporal dev server the SDK started), "" when there is none.
func ChildPID(comm string) string {
	self := strconv.Itoa(os.Getpid())
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		name, rest, ok := strings.Cut(string(b), ") ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == self && strings.HasSuffix(name, "("+comm) {
			return d.Name()
		}
	}
	return ""
}
