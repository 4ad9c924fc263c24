package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/pgsource"
	"github.com/triggerflow/triggerflow/streams"
)

// The tenants row: one watcher process serving every tenant from one
// change stream (watcher → evaluator → publisher into JetStream; no ingest,
// no Temporal). The changes are committed before the watcher starts, and
// it starts with a resume token from before the first one, so the row
// measures the pipeline catching up a backlog, not the writer.

const (
	// tenantTriggers is how many triggers each tenant has (tenantTriggerFile).
	tenantTriggers = 5
	// tenantTxChanges is how many changes the bench commits per
	// transaction on PostgreSQL, where the walsender decodes transaction
	// by transaction.
	tenantTxChanges = 10
	// tenantSeed fixes the workload, so every run evaluates the same
	// changes.
	tenantSeed = 7
	// tenantsDB is the PostgreSQL database of the row, so its one slot is
	// the only one there.
	tenantsDB = "bench_tenants"
)

// TenantsResult is the tenants row on one source.
type TenantsResult struct {
	Name     string `json:"name"`
	Tenants  int    `json:"tenants"`
	Triggers int    `json:"triggers"`
	Changes  int    `json:"changes"`
	// Tasks is how many delivery tasks JetStream stored: the workload's
	// expected count, or the row has an error.
	Tasks int `json:"tasks"`
	// Seconds is from the first task stored to the last (JetStream's own
	// timestamps of the two messages); ChangesPerSec and TasksPerSec are
	// Changes and Tasks over it.
	Seconds       float64 `json:"seconds"`
	ChangesPerSec float64 `json:"changesPerSec"`
	TasksPerSec   float64 `json:"tasksPerSec"`
	// StartupSeconds is from the watcher process's start to its /readyz
	// answering 200 (the triggers loaded, the source open, the start
	// position resolved); ReadyToFirstMs from then to the first task
	// stored (the /readyz poll runs every 10 ms).
	StartupSeconds float64 `json:"startupSeconds"`
	ReadyToFirstMs float64 `json:"readyToFirstMs"`
	// PeakRSSMB is the watcher's VmHWM after the last task, RSSMB its
	// VmRSS then.
	PeakRSSMB float64 `json:"peakRssMB"`
	RSSMB     float64 `json:"rssMB"`
	// CPUPerChangeUs is each process's CPU time from the watcher's
	// readiness to the last task over Changes, in µs: watcher, bench (the
	// embedded NATS server and the bench's polling), postgres (the
	// postmaster and its backends, the walsender included).
	CPUPerChangeUs map[string]float64 `json:"cpuPerChangeUs"`
	// Slots is SELECT count(*) FROM pg_replication_slots while the watcher
	// runs (PostgreSQL; -1 on SQLite).
	Slots int     `json:"slots"`
	Load  float64 `json:"load"`
	Notes string  `json:"notes,omitempty"`
	Err   string  `json:"error,omitempty"`
}

// TenantChange is one change of the tenants workload: a create or an
// update of an order or a user, with its documents and the tasks the
// tenant's triggers make of it.
type TenantChange struct {
	Tenant, Collection, ID string
	// Before is nil for a create.
	Before, After map[string]any
	Tasks         int
}

// tenantName is the i-th tenant of the row.
func tenantName(i int) string { return fmt.Sprintf("t%04d", i) }

// orderStatus is the life of an order: each update moves it one step.
var orderStatus = []string{"new", "paid", "shipped", "delivered"}

// TenantWorkload returns n changes spread uniformly at random over
// tenants tenants (fixed seed), and how many tasks they make in all:
// 45% new orders (30% of them paid, 10% with total ≥ 900), 20% order
// status updates, 25% new users (20% gold), 10% user e-mail updates. An
// update picks one of the tenant's own documents (a create when it has
// none yet).
func TenantWorkload(tenants, n int) ([]TenantChange, int) {
	rng := rand.New(rand.NewPCG(tenantSeed, 0))
	orders := make([][]map[string]any, tenants)
	users := make([][]map[string]any, tenants)
	out := make([]TenantChange, 0, n)
	total := 0
	for i := range n {
		ti := rng.IntN(tenants)
		t := tenantName(ti)
		var c TenantChange
		switch p := rng.IntN(100); {
		case p < 45 || p < 65 && len(orders[ti]) == 0:
			status := "new"
			if rng.IntN(10) < 3 {
				status = "paid"
			}
			doc := map[string]any{"id": fmt.Sprintf("o%d", i), "tenant": t, "status": status, "total": rng.IntN(1000), "customer": fmt.Sprintf("c%d", rng.IntN(500))}
			orders[ti] = append(orders[ti], doc)
			c = TenantChange{Collection: "orders", After: doc}
		case p < 65:
			j := rng.IntN(len(orders[ti]))
			before := orders[ti][j]
			after := maps.Clone(before)
			after["status"] = orderStatus[min(slices.Index(orderStatus, before["status"].(string))+1, len(orderStatus)-1)]
			orders[ti][j] = after
			c = TenantChange{Collection: "orders", Before: before, After: after}
		case p < 90 || len(users[ti]) == 0:
			tier := "silver"
			if rng.IntN(5) == 0 {
				tier = "gold"
			}
			id := fmt.Sprintf("u%d", i)
			doc := map[string]any{"id": id, "tenant": t, "email": id + "@example.com", "tier": tier}
			users[ti] = append(users[ti], doc)
			c = TenantChange{Collection: "users", After: doc}
		default:
			j := rng.IntN(len(users[ti]))
			before := users[ti][j]
			after := maps.Clone(before)
			after["email"] = fmt.Sprintf("%s+%d@example.com", before["id"], i)
			users[ti][j] = after
			c = TenantChange{Collection: "users", Before: before, After: after}
		}
		c.Tenant, c.ID = t, c.After["id"].(string)
		c.Tasks = expectedTasks(c)
		total += c.Tasks
		out = append(out, c)
	}
	return out, total
}

// expectedTasks is what tenantTriggerFile's five triggers make of c.
func expectedTasks(c TenantChange) int {
	n := 0
	count := func(ok bool) {
		if ok {
			n++
		}
	}
	after, create := c.After, c.Before == nil
	switch c.Collection {
	case "orders":
		count(create)                                                                // order-created
		count(after["status"] == "paid" && (create || c.Before["status"] != "paid")) // order-paid
		count(after["total"].(int) >= 900)                                           // order-large
	case "users":
		count(after["tier"] == "gold")                        // user-gold
		count(!create && c.Before["email"] != after["email"]) // user-email
	}
	return n
}

// tenantTriggerFile is tenant's trigger file: three triggers on orders
// (every new order; an order becoming paid; a large order), two on users
// (a gold user; a changed e-mail address).
func tenantTriggerFile(tenant string) string {
	url := "https://hooks.example.com/" + tenant
	return fmt.Sprintf(`tenant: %[1]s
triggers:
  - triggerId: order-created
    collection: orders
    events: [create]
    url: %[2]s/order-created
  - triggerId: order-paid
    collection: orders
    events: [create, update]
    condition: >-
      event.document.status == "paid" &&
      (!has(event.before.status) || event.before.status != "paid")
    url: %[2]s/order-paid
  - triggerId: order-large
    collection: orders
    condition: event.document.total >= 900
    url: %[2]s/order-large
  - triggerId: user-gold
    collection: users
    events: [create, update]
    condition: event.document.tier == "gold"
    url: %[2]s/user-gold
  - triggerId: user-email
    collection: users
    events: [update]
    condition: event.before.email != event.document.email
    url: %[2]s/user-email
`, tenant, url)
}

// writeTenantTriggers writes one trigger file per tenant into dir.
func writeTenantTriggers(dir string, tenants int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range tenants {
		t := tenantName(i)
		if err := os.WriteFile(filepath.Join(dir, t+".yaml"), []byte(tenantTriggerFile(t)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// tenantsRows measures the tenants row on SQLite and, with pg, on
// PostgreSQL, each on a fresh embedded NATS server.
func (r *run) tenantsRows(pg *testenv.PostgresServer) error {
	changes, tasks := TenantWorkload(r.o.Tenants, r.o.TenantChanges)
	for _, source := range []string{"SQLite", "PostgreSQL"} {
		if source == "PostgreSQL" && pg == nil {
			continue
		}
		r.step(fmt.Sprintf("row tenants (%s): %d tenants × %d triggers, %d changes, %d tasks expected", source, r.o.Tenants, tenantTriggers, len(changes), tasks))
		res, err := r.tenantsRow(source, pg, changes, tasks)
		if err != nil {
			return err
		}
		r.rep.Tenants = append(r.rep.Tenants, res)
		r.step(fmt.Sprintf("  %.0f changes/s, %.0f tasks/s over %.2f s; watcher peak RSS %.0f MiB; slots %d %s",
			res.ChangesPerSec, res.TasksPerSec, res.Seconds, res.PeakRSSMB, res.Slots, res.Err))
	}
	return nil
}

// tenantsRow is one source's run. An error is a set-up failure; a
// measurement that goes wrong is recorded in the result.
func (r *run) tenantsRow(source string, pg *testenv.PostgresServer, changes []TenantChange, tasks int) (TenantsResult, error) {
	res := TenantsResult{
		Name: fmt.Sprintf("tenants (%s)", source), Tenants: r.o.Tenants, Triggers: r.o.Tenants * tenantTriggers,
		Changes: len(changes), Slots: -1,
	}
	dir := filepath.Join(r.dir, "tenants-"+strings.ToLower(source))
	trig := filepath.Join(dir, "triggers")
	if err := writeTenantTriggers(trig, r.o.Tenants); err != nil {
		return res, err
	}
	ns, err := daemon.StartNATS(filepath.Join(dir, "nats"), -1)
	if err != nil {
		return res, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	var sourceCfg, resume string
	var pgPID string
	var slots func(context.Context) (int, error)
	if source == "SQLite" {
		db := filepath.Join(dir, "documents.db")
		if resume, err = writeTenantsSQLite(r.ctx, db, changes); err != nil {
			return res, err
		}
		sourceCfg = fmt.Sprintf("source: sqlite, sqlite: {path: %q}", db)
		res.Notes = fmt.Sprintf("one watcher process, SQLite all-tenant source; %d changes committed beforehand, 1,000 per transaction; resumeToken before the first.", len(changes))
	} else {
		dsn, cleanup, err := r.tenantsDatabase(pg)
		if err != nil {
			return res, err
		}
		defer cleanup()
		if resume, err = writeTenantsPostgres(r.ctx, dsn, changes); err != nil {
			return res, err
		}
		pid, err := pg.PID()
		if err != nil {
			return res, err
		}
		pgPID = strconv.Itoa(pid)
		sourceCfg = fmt.Sprintf("source: postgres, postgres: {dsn: %q, tenantColumn: tenant}", dsn)
		slots = func(ctx context.Context) (int, error) {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return 0, err
			}
			defer conn.Close(ctx)
			var n int
			err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&n)
			return n, err
		}
		res.Notes = fmt.Sprintf("one watcher process, PostgreSQL source (tables orders and users shared by every tenant, column tenant, REPLICA IDENTITY FULL; one slot); %d changes committed beforehand, %d per transaction; resumeToken before the first.", len(changes), tenantTxChanges)
	}

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}

	port, err := FreePort()
	if err != nil {
		return res, err
	}
	profile := r.o.ProfileDir != ""
	cfgPath := filepath.Join(dir, "watcher.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil,
		"log: {format: text, level: warn}\nhttp: {addr: \"127.0.0.1:%d\", pprof: %t}\nnats: {url: %q}\nwatcher: {tenants: [\"*\"], %s, triggers: %q, resumeToken: %q}\n",
		port, profile, ns.ClientURL(), sourceCfg, trig, resume), 0o600); err != nil {
		return res, err
	}
	logPath := filepath.Join(dir, "watcher.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	cmd := exec.Command(filepath.Join(r.binDir, "watcher"), "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	started := time.Now()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return res, fmt.Errorf("start watcher: %w", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopProcess(cmd)
		}
	}
	defer stop()
	pid := strconv.Itoa(cmd.Process.Pid)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	fail := func(format string, args ...any) (TenantsResult, error) {
		res.Err = fmt.Sprintf(format, args...) + " (log in " + logPath + ")"
		res.Load = Load1()
		return res, nil
	}
	ready, err := awaitReady(r.ctx, base+"/readyz", time.Minute)
	if err != nil {
		return fail("watcher: %v", err)
	}
	res.StartupSeconds = round2(ready.Sub(started).Seconds())
	cpu := func() map[string]float64 {
		out := map[string]float64{"watcher": CPUSeconds(pid), "bench": CPUSeconds("self")}
		if pgPID != "" {
			out["postgres"] = TreeCPUSeconds(pgPID)
		}
		return out
	}
	cpu0 := cpu()
	profiled := make(chan error, 1)
	if profile {
		if err := os.MkdirAll(r.o.ProfileDir, 0o755); err != nil {
			return res, err
		}
		go func() {
			profiled <- fetchTo(r.ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, r.o.ProfileSeconds),
				filepath.Join(r.o.ProfileDir, fmt.Sprintf("cpu-tenants-%s-watcher.pprof", strings.ToLower(source))))
		}()
	}

	stream, err := js.Stream(r.ctx, streams.DefaultStream)
	for err != nil && time.Since(ready) < 10*time.Second {
		time.Sleep(10 * time.Millisecond) // the watcher creates the stream before it is ready; this is a safety net
		stream, err = js.Stream(r.ctx, streams.DefaultStream)
	}
	if err != nil {
		return fail("stream %s: %v", streams.DefaultStream, err)
	}
	stored, err := awaitMsgs(r.ctx, stream, uint64(tasks), r.o.Timeout)
	if err != nil {
		return fail("%d of %d tasks stored: %v", stored, tasks, err)
	}
	cpu1 := cpu()
	res.PeakRSSMB, res.RSSMB = round1(PeakRSSMB(pid)), round1(RSSMB(pid))
	if slots != nil {
		if res.Slots, err = slots(r.ctx); err != nil {
			return fail("counting slots: %v", err)
		}
	}
	if profile {
		if err := <-profiled; err != nil {
			return fail("CPU profile: %v", err)
		}
		if err := fetchTo(r.ctx, base+"/debug/pprof/heap?gc=1", filepath.Join(r.o.ProfileDir, fmt.Sprintf("heap-tenants-%s-watcher.pprof", strings.ToLower(source)))); err != nil {
			return fail("heap profile: %v", err)
		}
	}
	stop()
	res.Load = Load1()

	first, err := stream.GetMsg(r.ctx, 1)
	if err != nil {
		return fail("first task: %v", err)
	}
	last, err := stream.GetMsg(r.ctx, uint64(tasks))
	if err != nil {
		return fail("last task: %v", err)
	}
	info, err := stream.Info(r.ctx)
	if err != nil {
		return fail("stream info: %v", err)
	}
	res.Tasks = int(info.State.Msgs)
	secs := last.Time.Sub(first.Time).Seconds()
	res.Seconds = round2(secs)
	res.ReadyToFirstMs = round1(float64(first.Time.Sub(ready)) / float64(time.Millisecond))
	if secs > 0 {
		res.ChangesPerSec = round1(float64(len(changes)) / secs)
		res.TasksPerSec = round1(float64(tasks) / secs)
	}
	res.CPUPerChangeUs = map[string]float64{}
	for name, c := range cpu1 {
		res.CPUPerChangeUs[name] = round1((c - cpu0[name]) * 1e6 / float64(len(changes)))
	}
	if res.Tasks != tasks {
		res.Err = fmt.Sprintf("JetStream holds %d tasks, the workload makes %d", res.Tasks, tasks)
	}
	return res, nil
}

// writeTenantsSQLite creates the store at path and commits changes with
// the upsert docstore.Put runs (its triggers log each change), 1,000 per
// transaction. It returns the position before the first change.
func writeTenantsSQLite(ctx context.Context, path string, changes []TenantChange) (string, error) {
	st, err := docstore.Open(ctx, docstore.Config{Path: path})
	if err != nil {
		return "", err
	}
	src, err := st.Source(docstore.AllTenants)
	if err != nil {
		st.Close()
		return "", err
	}
	head, err := src.Head(ctx)
	st.Close()
	if err != nil {
		return "", err
	}
	if head == "" {
		head = docstore.FormatPosition(0)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return "", err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	const perTx = 1000
	for i := 0; i < len(changes); i += perTx {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return "", err
		}
		stmt, err := tx.PrepareContext(ctx, `
INSERT INTO documents (tenant, collection, id, data, version, updated_at)
VALUES (?, ?, ?, ?, 1, ?)
ON CONFLICT (tenant, collection, id) DO UPDATE
SET data = excluded.data, version = documents.version + 1, updated_at = excluded.updated_at`)
		if err != nil {
			_ = tx.Rollback()
			return "", err
		}
		now := time.Now().UTC().Format(time.RFC3339Nano)
		for _, c := range changes[i:min(i+perTx, len(changes))] {
			doc, _ := json.Marshal(c.After)
			if _, err := stmt.ExecContext(ctx, c.Tenant, c.Collection, c.ID, string(doc), now); err != nil {
				_ = tx.Rollback()
				return "", err
			}
		}
		if err := tx.Commit(); err != nil {
			return "", err
		}
	}
	return head, nil
}

// tenantsDatabase creates the row's database with its two tables, shared
// by every tenant, and returns its DSN and a cleanup that drops the slot
// and the database.
func (r *run) tenantsDatabase(pg *testenv.PostgresServer) (string, func(), error) {
	admin, err := pgx.Connect(r.ctx, pg.DSN())
	if err != nil {
		return "", nil, err
	}
	defer admin.Close(r.ctx)
	if _, err := admin.Exec(r.ctx, "CREATE DATABASE "+tenantsDB); err != nil {
		return "", nil, err
	}
	dsn := pg.DatabaseDSN(tenantsDB)
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.DSN())
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", tenantsDB)
		_, _ = conn.Exec(ctx, "DROP DATABASE "+tenantsDB+" WITH (FORCE)")
	}
	conn, err := pgx.Connect(r.ctx, dsn)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	defer conn.Close(r.ctx)
	if _, err := conn.Exec(r.ctx, `
CREATE TABLE orders (id text PRIMARY KEY, tenant text NOT NULL, status text NOT NULL, total int NOT NULL, customer text NOT NULL);
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE TABLE users (id text PRIMARY KEY, tenant text NOT NULL, email text NOT NULL, tier text NOT NULL);
ALTER TABLE users REPLICA IDENTITY FULL`); err != nil {
		cleanup()
		return "", nil, err
	}
	return dsn, cleanup, nil
}

// writeTenantsPostgres creates the publication and the one slot as the
// watcher will (pgsource.New, multi-tenant), notes the WAL head, and
// commits changes tenantTxChanges per transaction. It returns that head,
// the position before the first change.
func writeTenantsPostgres(ctx context.Context, dsn string, changes []TenantChange) (string, error) {
	src, err := pgsource.New(ctx, pgsource.Config{DSN: dsn, TenantColumn: "tenant"})
	if err != nil {
		return "", err
	}
	head, err := src.Head(ctx)
	src.Close()
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	for i := 0; i < len(changes); i += tenantTxChanges {
		// A batch runs in one implicit transaction.
		var b pgx.Batch
		for _, c := range changes[i:min(i+tenantTxChanges, len(changes))] {
			a := c.After
			switch {
			case c.Collection == "orders" && c.Before == nil:
				b.Queue("INSERT INTO orders (id, tenant, status, total, customer) VALUES ($1, $2, $3, $4, $5)", a["id"], a["tenant"], a["status"], a["total"], a["customer"])
			case c.Collection == "orders":
				b.Queue("UPDATE orders SET status = $2 WHERE id = $1", a["id"], a["status"])
			case c.Before == nil:
				b.Queue("INSERT INTO users (id, tenant, email, tier) VALUES ($1, $2, $3, $4)", a["id"], a["tenant"], a["email"], a["tier"])
			default:
				b.Queue("UPDATE users SET email = $2 WHERE id = $1", a["id"], a["email"])
			}
		}
		if err := conn.SendBatch(ctx, &b).Close(); err != nil {
			return "", err
		}
	}
	return head, nil
}

// dropSlot drops the replication slot of the database at dsn once its
// walsender has let go of it (the watcher that used it has stopped).
func dropSlot(ctx context.Context, dsn, slot string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("drop replication slot %s: %w", slot, err)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond) // the slot is still active: polling the server
	}
}

// awaitReady polls url every 10 ms until it answers 200, and returns when.
func awaitReady(ctx context.Context, url string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not ready after %s", timeout)
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond) // polling an external process's readiness
	}
}

// awaitMsgs polls the stream every 20 ms until it holds n messages.
func awaitMsgs(ctx context.Context, s jetstream.Stream, n uint64, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		if info.State.Msgs >= n {
			return info.State.Msgs, nil
		}
		if time.Now().After(deadline) {
			return info.State.Msgs, fmt.Errorf("timed out after %s", timeout)
		}
		if ctx.Err() != nil {
			return info.State.Msgs, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond) // polling the server's count
	}
}

// stopProcess sends SIGINT and waits, killing after 10 s.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// writeTenantsTable prints the tenants rows.
func writeTenantsTable(w io.Writer, rows []TenantsResult) error {
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "row\ttenants × triggers\tchanges\ttasks\tchanges/s\ttasks/s\tstartup s\twatcher RSS MiB peak/end\tslots\tload\t")
	for _, r := range rows {
		slots := "-"
		if r.Slots >= 0 {
			slots = strconv.Itoa(r.Slots)
		}
		fmt.Fprintf(tw, "%s\t%d × %d\t%d\t%d\t%.0f\t%.0f\t%.1f\t%.0f / %.0f\t%s\t%.2f\t\n",
			r.Name, r.Tenants, r.Triggers/max(r.Tenants, 1), r.Changes, r.Tasks, r.ChangesPerSec, r.TasksPerSec,
			r.StartupSeconds, r.PeakRSSMB, r.RSSMB, slots, r.Load)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if len(r.CPUPerChangeUs) > 0 {
			fmt.Fprintf(w, "cpu µs/change %s: %s\n", r.Name, formatRSS(r.CPUPerChangeUs))
		}
	}
	for _, r := range rows {
		if r.Notes != "" || r.Err != "" {
			fmt.Fprintf(w, "note %s: %s%s\n", r.Name, r.Notes, errSuffix(r.Err))
		}
	}
	return nil
}
