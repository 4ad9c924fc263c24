package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/triggerflow/triggerflow/config"
)

// Binary is one daemon binary: its command line, the file it reads and the
// service it runs. The three binaries differ only in these, so cmd/ holds
// no more than a call to Main.
type Binary[T config.File[T]] struct {
	// Name is the program name, used in --help, --version and errors.
	Name string
	// About is --help's description, paragraphs separated by blank lines.
	About string
	// Flags, when set, adds the binary's own flags and returns what applies
	// them to the loaded file: a flag wins over the file and the
	// environment.
	Flags func(*flag.FlagSet) (apply func(*T))
	// Run runs the service until ctx ends.
	Run func(ctx context.Context, cfg *T, opts Options) error
}

// Main runs the binary with args (without the program name) until SIGTERM
// or SIGINT, and returns its exit status: 0 after a clean stop, ExitUsage
// for a bad command line or configuration, ExitFailure when the service
// fails.
func (b Binary[T]) Main(args []string, stdout, stderr io.Writer) int {
	cl := NewCommandLine(b.Name, b.About)
	apply := func(*T) {}
	if b.Flags != nil {
		apply = b.Flags(cl.Flags())
	}
	if status, done := cl.Parse(args, stdout, stderr); done {
		return status
	}
	cfg, err := config.Load[T](cl.Config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitUsage
	}
	apply(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := b.Run(ctx, cfg, Options{}); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", b.Name, err)
		return ExitFailure
	}
	return 0
}

// WatcherBinary is cmd/watcher.
var WatcherBinary = Binary[config.WatcherFile]{
	Name: "watcher",
	About: `watcher reads one tenant's document change stream (the embedded SQLite
store, or PostgreSQL logical replication) from its checkpoint, matches every
change against the trigger files with CEL, and publishes a delivery task per
match to the NATS JetStream task stream. The checkpoint only advances over
changes whose tasks JetStream acknowledged. Run exactly one per tenant.

SIGHUP reloads the trigger files (a bad set is refused and the previous one
stays active); SIGTERM or SIGINT drains and saves the checkpoint. The ops
port (http.addr, default :9464) serves /metrics, /healthz and /readyz.`,
	Flags: triggersFlag,
	Run: func(ctx context.Context, cfg *config.WatcherFile, opts Options) error {
		opts.Reload = ReloadOnSIGHUP(ctx)
		return Watcher(ctx, cfg, opts)
	},
}

// triggersFlag adds the watcher's --triggers, which wins over
// watcher.triggers.
func triggersFlag(fs *flag.FlagSet) func(*config.WatcherFile) {
	triggers := fs.String("triggers", "", "trigger file or directory (overrides watcher.triggers)")
	return func(cfg *config.WatcherFile) {
		if *triggers != "" {
			cfg.Watcher.Triggers = *triggers
		}
	}
}

// IngestBinary is cmd/ingest.
var IngestBinary = Binary[config.IngestFile]{
	Name: "ingest",
	About: `ingest consumes Triggerflow's delivery tasks from the NATS JetStream task
stream and hands each to its document's Temporal workflow
(SignalWithStartWorkflow), acknowledging a task only once Temporal holds it.
Replicas share one durable consumer; with ingest.sharing: pinned one receives
at a time and the others stand by.

SIGTERM or SIGINT stops fetching, finishes the hand-offs in flight and hands
the rest back, in order, to another replica. The ops port (http.addr,
default :9465) serves /metrics, /healthz and /readyz.`,
	Run: Ingest,
}

// WorkerBinary is cmd/worker.
var WorkerBinary = Binary[config.WorkerFile]{
	Name: "worker",
	About: `worker runs Triggerflow's delivery workflows — one per document and
trigger, delivering its changes in order — and their webhook activities,
which POST each task signed (Standard Webhooks) with a per-tenant token under
the trigger's retry policy, and dead-letter what fails for good. Add replicas
freely: they poll the same Temporal task queue (temporal.taskQueue).

SIGTERM or SIGINT stops it; Temporal hands what it was running to another
replica. The ops port (http.addr, default :9466) serves /metrics (the
Temporal SDK's included), /healthz, /readyz and the token keys at
/.well-known/jwks.json, and with worker.codecServer.enabled the codec
server for the Temporal UI under /codec.`,
	Run: Worker,
}
