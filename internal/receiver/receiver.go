// Package receiver is the demo webhook receiver of the dev stack: it
// verifies each delivery the way a real receiver should — the Standard
// Webhooks signature with the secrets of the delivery's tenant
// (constant-time, ±5 min timestamp tolerance) and the bearer token against
// the worker's JWKS — prints one line per delivery, naming its tenant, and
// remembers the deliveries it accepted.
package receiver

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/signature"
)

// SecretResolver returns a tenant's active secrets for a reference.
type SecretResolver interface {
	Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error)
}

// Config configures a Receiver.
type Config struct {
	// Secrets resolves the signing secrets. Required.
	Secrets SecretResolver
	// SecretsRef is the reference the demo triggers sign with. Defaults to
	// "default".
	SecretsRef string
	// SecretsRefFor, when set, names the reference a tenant's trigger signs
	// with (its secretsRef); "" falls back to SecretsRef. The dev stack
	// answers it from the trigger files.
	SecretsRefFor func(tenant, triggerID string) string
	// JWKSURL is where the worker serves its token keys; empty skips token
	// checks.
	JWKSURL string
	// Out receives one line per delivery. Defaults to io.Discard.
	Out io.Writer
	// MaxBody bounds a request body. Defaults to 1 MiB.
	MaxBody int64
}

// Delivery is one accepted request.
type Delivery struct {
	ID, Type, Tenant, TriggerID, Collection, DocKey string
	Path                                            string
	// Header holds the request's headers (signature headers included).
	Header http.Header
	Body   []byte
}

// Receiver is an http.Handler.
type Receiver struct {
	cfg Config

	mu         sync.Mutex
	deliveries []Delivery
	changed    chan struct{}
	verifier   *authn.Verifier // cached key set; refetched when a token fails
}

// New returns a receiver.
func New(cfg Config) *Receiver {
	cfg.SecretsRef = cmp.Or(cfg.SecretsRef, "default")
	cfg.Out = cmp.Or(cfg.Out, io.Discard)
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 1<<20)
	return &Receiver{cfg: cfg, changed: make(chan struct{})}
}

type envelope struct {
	Type string `json:"type"`
	Data struct {
		Tenant     string `json:"tenant"`
		TriggerID  string `json:"triggerId"`
		Collection string `json:"collection"`
		DocKey     string `json:"docKey"`
	} `json:"data"`
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rc.cfg.MaxBody))
	if err != nil {
		rc.reject(w, "", http.StatusRequestEntityTooLarge, "body: %v", err)
		return
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Data.Tenant == "" {
		rc.reject(w, "", http.StatusBadRequest, "not a Triggerflow delivery")
		return
	}
	who := env.Data.Tenant + "/" + env.Data.TriggerID
	// The tenant named in the body picks the secrets; the signature then
	// proves the body (tenant included) came from the worker.
	ref := rc.cfg.SecretsRef
	if rc.cfg.SecretsRefFor != nil {
		ref = cmp.Or(rc.cfg.SecretsRefFor(env.Data.Tenant, env.Data.TriggerID), ref)
	}
	secs, err := rc.cfg.Secrets.Resolve(r.Context(), env.Data.Tenant, ref)
	if err != nil {
		rc.reject(w, who, http.StatusUnauthorized, "no secret %q for tenant %q: %v", ref, env.Data.Tenant, err)
		return
	}
	if err := signature.Verify(r.Header, body, secs, 0, time.Now()); err != nil {
		rc.reject(w, who, http.StatusUnauthorized, "signature (tenant %q's secret %q): %v", env.Data.Tenant, ref, err)
		return
	}
	tokenNote := "token not checked"
	if rc.cfg.JWKSURL != "" {
		if err := rc.checkToken(r, env.Data.Tenant); err != nil {
			rc.reject(w, who, http.StatusUnauthorized, "token: %v", err)
			return
		}
		tokenNote = "token ok"
	}
	d := Delivery{ID: r.Header.Get(signature.HeaderID), Type: env.Type, Tenant: env.Data.Tenant, TriggerID: env.Data.TriggerID,
		Collection: env.Data.Collection, DocKey: env.Data.DocKey, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	// The line is out before Wait sees the delivery.
	fmt.Fprintf(rc.cfg.Out, "✓ %s %s %s %s/%s (signature ok, %s) %s\n", time.Now().Format("15:04:05"), who, d.Type, d.Collection, d.DocKey, tokenNote, d.ID)
	rc.mu.Lock()
	rc.deliveries = append(rc.deliveries, d)
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *Receiver) checkToken(r *http.Request, tenant string) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return fmt.Errorf("no bearer token")
	}
	rc.mu.Lock()
	v := rc.verifier
	rc.mu.Unlock()
	if v != nil {
		if _, err := v.Verify(tok, tenant); err == nil {
			return nil
		}
	}
	// No key set yet, or the token fails against the cached one (the
	// worker may have rotated its key): fetch the key set again.
	v, err := rc.fetchVerifier(r.Context())
	if err != nil {
		return err
	}
	rc.mu.Lock()
	rc.verifier = v
	rc.mu.Unlock()
	_, err = v.Verify(tok, tenant)
	return err
}

func (rc *Receiver) fetchVerifier(ctx context.Context) (*authn.Verifier, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rc.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	jwks, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return authn.NewVerifier(jwks, authn.VerifierConfig{})
}

// reject answers code and prints why, after who (tenant/trigger) when the
// body named them.
func (rc *Receiver) reject(w http.ResponseWriter, who string, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(rc.cfg.Out, "✗ %s %s rejected (%d): %s\n", time.Now().Format("15:04:05"), cmp.Or(who, "(no tenant)"), code, msg)
	http.Error(w, msg, code)
}

// Deliveries returns the accepted deliveries so far.
func (rc *Receiver) Deliveries() []Delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Delivery(nil), rc.deliveries...)
}

// Wait blocks until at least n deliveries were accepted or ctx ends.
func (rc *Receiver) Wait(ctx context.Context, n int) ([]Delivery, error) {
	for {
		rc.mu.Lock()
		if len(rc.deliveries) >= n {
			out := append([]Delivery(nil), rc.deliveries...)
			rc.mu.Unlock()
			return out, nil
		}
		ch := rc.changed
		rc.mu.Unlock()
		select {
		case <-ctx.Done():
			return rc.Deliveries(), ctx.Err()
		case <-ch:
		}
	}
}
