package codec

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/sdk/converter"
)

// DefaultMaxBodyBytes bounds a codec server request unless
// HandlerConfig.MaxBodyBytes says otherwise.
const DefaultMaxBodyBytes = 16 << 20

// corsHeaders are the request headers the Temporal UI sends to a codec
// server: the JSON body's type, the namespace, and, with
// TEMPORAL_CODEC_PASS_ACCESS_TOKEN, the user's access token.
const corsHeaders = "Authorization, Content-Type, X-Namespace"

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	// AllowedOrigins are the browser origins allowed to call the handler,
	// each "scheme://host[:port]" as the browser sends it in Origin (the
	// Temporal UI's, such as "http://localhost:8233"). Defaults to none:
	// no CORS headers are sent, so a browser page elsewhere cannot read an
	// answer, while clients that are not browsers (the Temporal CLI's
	// --codec-endpoint) are unaffected.
	AllowedOrigins []string
	// AuthToken, when set, must be sent as "Authorization: Bearer <token>"
	// with every encode and decode request; CORS preflight requests never
	// carry it and are answered without. Defaults to "" (no check).
	AuthToken string
	// MaxBodyBytes bounds a request body. Defaults to DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// NewHandler serves Temporal's codec server protocol with c: POST
// .../encode and .../decode, each with a JSON body {"payloads": [...]}
// (payloads in protobuf JSON: base64 metadata values and data) answered
// with the payloads encoded or decoded. Any path ending in /encode or
// /decode is accepted, so it can be mounted under a prefix and the CLI's
// /{namespace}/decode form works. The X-Namespace header the UI sends is
// allowed and not needed: one key ring serves every namespace.
func NewHandler(c converter.PayloadCodec, cfg HandlerConfig) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &handler{cfg: cfg, next: converter.NewPayloadCodecHTTPHandler(c)}
	return h
}

type handler struct {
	cfg  HandlerConfig
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	allowed := origin != "" && slices.Contains(h.cfg.AllowedOrigins, origin)
	if origin != "" {
		w.Header().Add("Vary", "Origin")
	}
	if allowed {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		// The UI's TEMPORAL_CODEC_INCLUDE_CREDENTIALS sends cookies.
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions {
		if !allowed {
			http.Error(w, "origin not allowed by the codec server's allowed origins", http.StatusForbidden)
			return
		}
		w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", corsHeaders)
		w.Header().Set("Access-Control-Max-Age", strconv.Itoa(600))
		if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
			// Chrome asks before a page on a public origin calls a
			// private address, as a UI in the cloud calling a codec
			// server inside the network does.
			w.Header().Set("Access-Control-Allow-Private-Network", "true")
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, "use POST .../encode or .../decode", http.StatusMethodNotAllowed)
		return
	}
	if h.cfg.AuthToken != "" && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="triggerflow codec"`)
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	h.next.ServeHTTP(w, r)
}

func (h *handler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(h.cfg.AuthToken)) == 1
}
