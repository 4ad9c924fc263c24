package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/service"
)

// codecFlags give an operator command the keys of encrypted histories
// (temporal.codec): a key file, or the variables the binaries read.
type codecFlags struct{ keyFile, activeKey string }

func (f *codecFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.keyFile, "codec-key-file", os.Getenv(config.EnvName("temporal.codec.keyFile")),
		"key file of encrypted histories (temporal.codec.keyFile); keys in $"+config.EnvName("temporal.codec.keys")+" are added")
	fs.StringVar(&f.activeKey, "codec-active-key", os.Getenv(config.EnvName("temporal.codec.activeKey")),
		"key that encrypts what the command sends (temporal.codec.activeKey; default: the only key)")
}

// load returns the codec of the flags and variables, or nil when they name
// no key: the histories are then read as they are.
func (f *codecFlags) load() (*codec.Codec, error) {
	var entries []string
	if v := os.Getenv(config.EnvName("temporal.codec.keys")); v != "" {
		entries = append(entries, v)
	}
	if f.keyFile == "" && len(entries) == 0 {
		return nil, nil
	}
	ring, err := codec.LoadKeys(f.keyFile, entries)
	if err != nil {
		return nil, fmt.Errorf("--codec-key-file, $%s: %w", config.EnvName("temporal.codec.keys"), err)
	}
	active := f.activeKey
	if active == "" && len(ring) == 1 {
		for id := range ring {
			active = id
		}
	}
	c, err := codec.New(codec.Config{Keys: ring, ActiveKey: active})
	if err != nil {
		return nil, fmt.Errorf("--codec-active-key: %w", err)
	}
	return c, nil
}

func newCodecCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "codec", Short: "Keys that encrypt Temporal history (temporal.codec)"}
	var id, out string
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Make a new AES-256 key for temporal.codec (id=base64)",
		Long: `Prints a new random 32-byte key as "id=<base64>", the format of
temporal.codec.keyFile and temporal.codec.keys. With --out the key is added
to that key file instead (created 0600 when missing) and not printed; a file
that already holds the id is left unchanged, so a deployment may run the
same command at every start.

To rotate: add the new key to every ingest and worker replica's ring, then
make it temporal.codec.activeKey; remove the old key only when no history
encrypted with it is read any more (see docs/operations.md).`,
		Example: `  triggerflow codec keygen
  triggerflow codec keygen --id k2026-07 --out /etc/triggerflow/codec.keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				var err error
				if id, err = codec.NewKeyID(time.Now()); err != nil {
					return err
				}
			} else if err := codec.CheckKeyID(id); err != nil {
				return fmt.Errorf("--id: %w", err)
			}
			key, err := codec.GenerateKey()
			if err != nil {
				return err
			}
			if out == "" {
				fmt.Fprintln(cmd.OutOrStdout(), codec.FormatKey(id, key))
				return nil
			}
			added, err := codec.AppendKey(out, id, key)
			if err != nil {
				return err
			}
			if !added {
				fmt.Fprintf(cmd.OutOrStdout(), "%s already holds key %s; left unchanged\n", out, id)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added key %s to %s\n", id, out)
			return nil
		},
	}
	keygen.Flags().StringVar(&id, "id", "", "key id: letters, digits, '.', '_', '-' (default: k<date>-<random>)")
	keygen.Flags().StringVar(&out, "out", "", "add the key to this key file instead of printing it")
	cmd.AddCommand(keygen)
	return cmd
}

func newCodecServerCmd() *cobra.Command {
	var cfgPath, addr string
	var origins []string
	cmd := &cobra.Command{
		Use:   "codec-server",
		Short: "Serve Temporal's codec server protocol, so the Temporal UI and CLI show encrypted payloads",
		Long: `Decrypts and encrypts payloads for the Temporal UI and CLI with the keys of
temporal.codec, on its own port: for deployments where the worker's ops port
(worker.codecServer.enabled) is not where the UI should go. It reads the
worker's config file (temporal.codec, and worker.codecServer's allowedOrigins
and authToken; TRIGGERFLOW_* variables apply) and answers POST .../decode and
.../encode (also under a namespace, /<namespace>/decode) and GET /healthz.

Point the UI at it with TEMPORAL_CODEC_ENDPOINT=http://<addr> (the dev
server: --ui-codec-endpoint) and allow the UI's origin; the CLI with
'temporal workflow show --codec-endpoint http://<addr>' (and --codec-auth
'Bearer <token>' when worker.codecServer.authToken is set). Anyone who
reaches it can decrypt: keep it where operators alone do.`,
		Example: `  triggerflow codec-server --config worker.yaml --allow-origin http://localhost:8080
  triggerflow codec-server --config /etc/triggerflow/worker.yaml --addr :8081`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load[config.WorkerFile](cfgPath)
			if err != nil {
				return err
			}
			if !cfg.Temporal.Codec.Enabled {
				return fmt.Errorf("temporal.codec.enabled is not true (in --config %q or $%s): there are no keys to decode with",
					cfgPath, config.EnvName("temporal.codec.enabled"))
			}
			c, err := service.LoadCodec(cfg.Temporal.Codec)
			if err != nil {
				return err
			}
			hc := cfg.Worker.CodecServer.Handler()
			hc.AllowedOrigins = slices.Concat(hc.AllowedOrigins, origins)
			mux := http.NewServeMux()
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
			})
			mux.Handle("/", codec.NewHandler(c, hc))

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr: %w", err)
			}
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "codec server on http://%s (keys %v, active %s, allowed origins %v, bearer token %t)\n",
				ln.Addr(), c.KeyIDs(), c.ActiveKey(), hc.AllowedOrigins, hc.AuthToken != "")
			return serveUntil(ctx, srv, ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "the worker's config file (temporal.codec, worker.codecServer; TRIGGERFLOW_* variables apply)")
	f.StringVar(&addr, "addr", "127.0.0.1:8081", "listen address")
	f.StringSliceVar(&origins, "allow-origin", nil, "browser origin allowed to call it, such as the Temporal UI's http://localhost:8080 (repeatable; added to worker.codecServer.allowedOrigins)")
	return cmd
}

// serveUntil serves on ln until ctx ends, then shuts down gracefully.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
