package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	postgresHow          = "apt-get install postgresql"
	postgresSuperuser    = "postgres"
	postgresStartTimeout = 60 * time.Second
	postgresStopTimeout  = 30 * time.Second
)

// PostgreSQL settings for CDC tests. Durability is traded for speed (no
// fsync, no full-page writes): a cluster lives as long as one test, and
// an OS crash is not one of the failures we simulate.
const postgresConf = `
listen_addresses = '127.0.0.1'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
synchronous_commit = off
full_page_writes = off
`

// Trust everything local, including replication connections, which
// pg_hba matches only through the special "replication" database keyword.
const postgresHBA = `
local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
`

// PostgresServer is a throwaway PostgreSQL cluster configured for logical
// replication, owned by one test (Postgres) or one program (StartPostgres).
type PostgresServer struct {
	port    int
	dir     string // owned by the server's OS user; holds data, socket, log
	binDir  string
	runAsPG bool // initdb and postgres refuse to run as root

	mu      sync.Mutex
	running bool
}

// MissingToolError reports an external tool StartPostgres cannot run
// without; How says how to install it.
type MissingToolError struct {
	Name, Reason, How string
}

func (e *MissingToolError) Error() string {
	return fmt.Sprintf("required tool %s is missing (%s); install it: %s", e.Name, e.Reason, e.How)
}

// Postgres initialises and starts a fresh cluster listening on 127.0.0.1 at
// a free port, stopping and deleting it on cleanup. Connect as the
// superuser "postgres" with no password. Skips (fails under CI) when
// PostgreSQL is not installed. The server's log is printed if the test
// fails.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*postgresStartTimeout)
	defer cancel()
	// The writer's cleanup must be registered before Close's, so it runs
	// after it: stopping the server logs.
	log := slog.New(slog.NewTextHandler(newTBWriter(t), nil))
	p, err := StartPostgres(ctx, log)
	if mt, ok := errors.AsType[*MissingToolError](err); ok {
		MissingTool(t, mt.Name, mt.Reason, mt.How)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(p.logFile()); err == nil {
				t.Logf("testenv: postgres server log:\n%s", log)
			}
		}
		if err := p.Close(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return p
}

// StartPostgres is Postgres for programs without a testing.TB (the
// benchmark): the caller owns the cluster and must Close it. An error
// wrapping *MissingToolError means PostgreSQL (or, as root, runuser or the
// postgres OS user) is not installed. Progress is logged to log at info.
func StartPostgres(ctx context.Context, log *slog.Logger) (_ *PostgresServer, err error) {
	begin := time.Now()
	binDir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	p := &PostgresServer{binDir: binDir, runAsPG: os.Geteuid() == 0}

	var uid, gid int
	if p.runAsPG {
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, &MissingToolError{Name: "runuser", Reason: "not found on PATH", How: "apt-get install util-linux"}
		}
		if uid, gid, err = postgresOSUser(); err != nil {
			return nil, err
		}
	}

	// Not a test's TempDir: that is root-only (0700) and the server runs
	// as the postgres user, which must own its data directory and every
	// parent up to it must be traversable.
	dir, err := os.MkdirTemp("", "testenv-pg-")
	if err != nil {
		return nil, fmt.Errorf("creating postgres dir: %w", err)
	}
	p.dir = dir
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	if err := os.Mkdir(p.socketDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating postgres socket dir: %w", err)
	}
	if p.runAsPG {
		for _, d := range []string{dir, p.socketDir()} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, fmt.Errorf("handing %s to the postgres user: %w", d, err)
			}
		}
	}
	if p.port, err = freePort(); err != nil {
		return nil, err
	}

	// --no-sync: initdb otherwise fsyncs every catalog file, which is most
	// of its run time.
	if out, err := p.command(ctx, "initdb", "-D", p.dataDir(), "-U", postgresSuperuser,
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := p.configure(); err != nil {
		return nil, fmt.Errorf("configuring postgres: %w", err)
	}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	log.Info("testenv: postgres ready", "addr", fmt.Sprintf("127.0.0.1:%d", p.port), "took", time.Since(begin).Round(time.Millisecond))
	return p, nil
}

// Close stops the server and deletes its directory. Closing twice is a
// no-op.
func (p *PostgresServer) Close() error {
	err := p.Stop()
	if p.dir == "" {
		return err
	}
	if rerr := os.RemoveAll(p.dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("removing postgres dir: %w", rerr))
	}
	return err
}

// LogFile is the path of the server's log, for a program to point at when
// something goes wrong; it is deleted by Close.
func (p *PostgresServer) LogFile() string { return p.logFile() }

// PID is the postmaster's process id (every backend, walsender included,
// is its child), read from the running cluster's postmaster.pid.
func (p *PostgresServer) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("postgres pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("postgres pid: %w", err)
	}
	return pid, nil
}

// configure appends to the files initdb wrote rather than replacing them, so
// they keep the ownership the server needs.
func (p *PostgresServer) configure() error {
	conf := postgresConf + fmt.Sprintf("port = %d\nunix_socket_directories = '%s'\n", p.port, p.socketDir())
	if err := appendFile(filepath.Join(p.dataDir(), "postgresql.conf"), conf); err != nil {
		return err
	}
	hba := filepath.Join(p.dataDir(), "pg_hba.conf")
	if err := os.Truncate(hba, 0); err != nil {
		return err
	}
	return appendFile(hba, postgresHBA)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *PostgresServer) dataDir() string   { return filepath.Join(p.dir, "data") }
func (p *PostgresServer) socketDir() string { return filepath.Join(p.dir, "sock") }
func (p *PostgresServer) logFile() string   { return filepath.Join(p.dir, "postgres.log") }

// command runs a PostgreSQL binary, as the postgres OS user when we are root.
func (p *PostgresServer) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(p.binDir, name)
	var cmd *exec.Cmd
	if p.runAsPG {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	// The tools complain when the working directory is unreadable to them,
	// as the root-owned one is for the postgres user.
	cmd.Dir = p.dir
	return cmd
}

func (p *PostgresServer) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return nil
	}
	// -w waits until the server accepts connections (pg_ctl polls the
	// postmaster's status); -l keeps the server's output off our pipes, so
	// CombinedOutput returns as soon as pg_ctl does.
	out, err := p.command(ctx, "pg_ctl", "start", "-D", p.dataDir(), "-l", p.logFile(),
		"-w", "-t", strconv.Itoa(int(postgresStartTimeout.Seconds()))).CombinedOutput()
	if err != nil {
		// pg_ctl may have left a postmaster behind (a timeout, a
		// cancelled ctx): then a stop must still be tried.
		if _, serr := os.Stat(filepath.Join(p.dataDir(), "postmaster.pid")); serr == nil {
			p.running = true
		}
		serverLog, _ := os.ReadFile(p.logFile())
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, serverLog)
	}
	p.running = true
	return nil
}

// Stop shuts the server down, disconnecting clients (fast mode), falling
// back to an immediate shutdown if that stalls. Stopping a stopped server is
// a no-op.
func (p *PostgresServer) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil
	}
	wait := strconv.Itoa(int(postgresStopTimeout.Seconds()))
	// Not the start's ctx: a stop must work after it is cancelled.
	ctx := context.Background()
	fastOut, fastErr := p.command(ctx, "pg_ctl", "stop", "-D", p.dataDir(), "-m", "fast", "-w", "-t", wait).CombinedOutput()
	if fastErr == nil {
		p.running = false
		return nil
	}
	out, err := p.command(ctx, "pg_ctl", "stop", "-D", p.dataDir(), "-m", "immediate", "-w", "-t", wait).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: fast: %v: %s; immediate: %v: %s", fastErr, fastOut, err, out)
	}
	p.running = false
	return nil
}

// Restart stops the server if it is running and starts it again on the same
// port and data directory.
func (p *PostgresServer) Restart(t testing.TB) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := p.start(context.Background()); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Port is the TCP port on 127.0.0.1.
func (p *PostgresServer) Port() int { return p.port }

// DSN connects to the "postgres" database as the superuser.
func (p *PostgresServer) DSN() string { return p.DatabaseDSN("postgres") }

// ReplicationDSN is DSN in logical replication mode, for pglogrepl and the
// like.
func (p *PostgresServer) ReplicationDSN() string { return p.ReplicationDatabaseDSN("postgres") }

// DatabaseDSN connects to the named database as the superuser.
func (p *PostgresServer) DatabaseDSN(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(postgresSuperuser),
		Host:     fmt.Sprintf("127.0.0.1:%d", p.port),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// ReplicationDatabaseDSN is DatabaseDSN in logical replication mode.
func (p *PostgresServer) ReplicationDatabaseDSN(name string) string {
	return p.DatabaseDSN(name) + "&replication=database"
}

// Conn opens a connection to the "postgres" database, closed on cleanup.
func (p *PostgresServer) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	return p.ConnFor(t, p.DSN())
}

// ConnFor opens a connection on dsn (e.g. from CreateDatabase), closed on
// cleanup.
func (p *PostgresServer) ConnFor(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("testenv: connecting to postgres: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx) // the test may have stopped the server already
	})
	return conn
}

// Pool opens a pool on the "postgres" database, closed on cleanup.
func (p *PostgresServer) Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return p.PoolFor(t, p.DSN())
}

// PoolFor opens a pool on dsn (e.g. from CreateDatabase), closed on cleanup.
// Connections are made lazily, so a bad DSN surfaces on first use.
func (p *PostgresServer) PoolFor(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("testenv: opening postgres pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// CreateDatabase creates an empty database so a test can isolate its schema
// (and its replication slots' view) from others sharing the cluster, and
// returns its DSN.
func (p *PostgresServer) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatalf("testenv: connecting to postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: creating database %q: %v", name, err)
	}
	return p.DatabaseDSN(name)
}

// postgresBinDir finds a directory holding initdb, pg_ctl and postgres:
// pg_config's answer, else the newest Debian-style versioned install, else
// wherever PATH's initdb really lives.
func postgresBinDir() (string, error) {
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	candidates = append(candidates, debianPostgresBinDirs()...)
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
	}
	for _, dir := range candidates {
		if hasExecutables(dir, "initdb", "pg_ctl", "postgres") {
			return dir, nil
		}
	}
	return "", &MissingToolError{Name: "postgresql", Reason: "no directory with initdb, pg_ctl and postgres found", How: postgresHow}
}

// debianPostgresBinDirs lists /usr/lib/postgresql/<major>/bin, newest first.
func debianPostgresBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	return dirs
}

func hasExecutables(dir string, names ...string) bool {
	for _, n := range names {
		info, err := os.Stat(filepath.Join(dir, n))
		if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// postgresOSUser returns the uid and gid the server runs as when the tests
// run as root. Debian's postgresql package creates the user.
func postgresOSUser() (uid, gid int, err error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, &MissingToolError{Name: "postgres OS user", Reason: err.Error(), How: postgresHow}
	}
	uid, uerr := strconv.Atoi(u.Uid)
	gid, gerr := strconv.Atoi(u.Gid)
	if err := errors.Join(uerr, gerr); err != nil {
		return 0, 0, fmt.Errorf("postgres user has non-numeric ids: %w", err)
	}
	return uid, gid, nil
}
