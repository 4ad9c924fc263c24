package codec_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/triggerflow/triggerflow/codec"
)

// wirePayload is a payload as the codec server protocol carries it: the
// protobuf JSON of temporal.api.common.v1.Payload, metadata values and
// data in base64.
type wirePayload struct {
	Metadata map[string]string `json:"metadata"`
	Data     string            `json:"data"`
}

type wireBody struct {
	Payloads []wirePayload `json:"payloads"`
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func toWire(p *commonpb.Payload) wirePayload {
	w := wirePayload{Metadata: map[string]string{}, Data: base64.StdEncoding.EncodeToString(p.Data)}
	for k, v := range p.Metadata {
		w.Metadata[k] = base64.StdEncoding.EncodeToString(v)
	}
	return w
}

func fromWire(t *testing.T, w wirePayload) *commonpb.Payload {
	t.Helper()
	p := &commonpb.Payload{Metadata: map[string][]byte{}}
	for k, v := range w.Metadata {
		b, err := base64.StdEncoding.DecodeString(v)
		require.NoError(t, err)
		p.Metadata[k] = b
	}
	var err error
	p.Data, err = base64.StdEncoding.DecodeString(w.Data)
	require.NoError(t, err)
	return p
}

type codecServer struct {
	*httptest.Server
	codec *codec.Codec
}

func newCodecServer(t *testing.T, cfg codec.HandlerConfig) codecServer {
	t.Helper()
	c := newCodec(t, "k1", map[string][]byte{"k1": key(1)})
	mux := http.NewServeMux()
	mux.Handle("/codec/", codec.NewHandler(c, cfg))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return codecServer{Server: srv, codec: c}
}

// post sends body to path with the headers the Temporal UI sends.
func (s codecServer) post(t *testing.T, path string, body any, header http.Header) (*http.Response, []byte) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func decodeBody(t *testing.T, b []byte) wireBody {
	t.Helper()
	var out wireBody
	require.NoError(t, json.Unmarshal(b, &out), "%s", b)
	return out
}

func TestHandlerDecodesWhatEncodeProduced(t *testing.T) {
	t.Parallel()
	s := newCodecServer(t, codec.HandlerConfig{})

	// What the UI sends to /encode: JSON payloads with base64 data.
	ui := wireBody{Payloads: []wirePayload{{Metadata: map[string]string{"encoding": b64("json/plain")}, Data: b64(`{"body":"` + marker + `"}`)}}}
	resp, b := s.post(t, "/codec/encode", ui, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	encoded := decodeBody(t, b)
	require.Len(t, encoded.Payloads, 1)
	require.Equal(t, b64(codec.EncodingEncrypted), encoded.Payloads[0].Metadata["encoding"])
	require.Equal(t, b64("k1"), encoded.Payloads[0].Metadata[codec.MetadataKeyID])
	require.NotContains(t, string(b), marker)
	require.NotContains(t, string(b), b64(`{"body":"`+marker+`"}`))

	// The handler's ciphertext is the codec's: it decrypts in process...
	dec, err := s.codec.Decode([]*commonpb.Payload{fromWire(t, encoded.Payloads[0])})
	require.NoError(t, err)
	require.Equal(t, `{"body":"`+marker+`"}`, string(dec[0].Data))

	// ...and through /decode, under the namespace path the CLI uses too.
	for _, path := range []string{"/codec/decode", "/codec/default/decode"} {
		resp, b = s.post(t, path, encoded, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		require.Equal(t, ui, decodeBody(t, b), path)
	}

	// What the services wrote decodes too, with plaintext passed through.
	written, err := s.codec.Encode([]*commonpb.Payload{jsonPayload(t, map[string]string{"url": "https://hooks.example.com/" + marker})})
	require.NoError(t, err)
	plain := jsonPayload(t, "recorded before encryption")
	resp, b = s.post(t, "/codec/decode", wireBody{Payloads: []wirePayload{toWire(written[0]), toWire(plain)}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	out := decodeBody(t, b)
	require.Len(t, out.Payloads, 2)
	require.Contains(t, string(fromWire(t, out.Payloads[0]).Data), marker)
	require.Equal(t, toWire(plain), out.Payloads[1])

	// A payload of a key the ring lacks is refused with the key's id.
	other := newCodec(t, "gone", map[string][]byte{"gone": key(2)})
	foreign, err := other.Encode([]*commonpb.Payload{plain})
	require.NoError(t, err)
	resp, b = s.post(t, "/codec/decode", wireBody{Payloads: []wirePayload{toWire(foreign[0])}}, nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(b), `"gone"`)

	// Only POST to .../encode and .../decode.
	resp, b = s.post(t, "/codec/other", ui, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s", b)
	get, err := s.Client().Get(s.URL + "/codec/decode")
	require.NoError(t, err)
	get.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, get.StatusCode)
}

func TestHandlerCORS(t *testing.T) {
	t.Parallel()
	const ui = "http://localhost:8233"
	s := newCodecServer(t, codec.HandlerConfig{AllowedOrigins: []string{ui, "http://127.0.0.1:8233"}})

	// preflight sends a CORS preflight from origin with extra headers.
	preflight := func(origin string, extra ...string) *http.Response {
		req, err := http.NewRequest(http.MethodOptions, s.URL+"/codec/decode", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace,authorization")
		for i := 0; i+1 < len(extra); i += 2 {
			req.Header.Set(extra[i], extra[i+1])
		}
		resp, err := s.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	resp := preflight(ui)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, ui, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	for _, h := range []string{"content-type", "x-namespace", "authorization"} {
		require.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), h)
	}
	require.Contains(t, resp.Header.Values("Vary"), "Origin")

	require.Empty(t, resp.Header.Get("Access-Control-Allow-Private-Network"))
	pna := preflight(ui, "Access-Control-Request-Private-Network", "true")
	require.Equal(t, http.StatusNoContent, pna.StatusCode)
	require.Equal(t, "true", pna.Header.Get("Access-Control-Allow-Private-Network"))

	resp = preflight("https://evil.example.com")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	// The actual request carries the headers too, for the allowed origin
	// only.
	body := wireBody{Payloads: []wirePayload{{Metadata: map[string]string{"encoding": b64("json/plain")}, Data: b64(`1`)}}}
	resp, _ = s.post(t, "/codec/decode", body, http.Header{"Origin": {"http://127.0.0.1:8233"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "http://127.0.0.1:8233", resp.Header.Get("Access-Control-Allow-Origin"))
	resp, _ = s.post(t, "/codec/decode", body, http.Header{"Origin": {"https://evil.example.com"}})
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

func TestHandlerBearerToken(t *testing.T) {
	t.Parallel()
	const ui = "http://localhost:8233"
	s := newCodecServer(t, codec.HandlerConfig{AuthToken: "s3cret-token", AllowedOrigins: []string{ui}})
	body := wireBody{Payloads: []wirePayload{{Metadata: map[string]string{"encoding": b64("json/plain")}, Data: b64(`"x"`)}}}

	for name, auth := range map[string]string{
		"missing":      "",
		"wrong":        "Bearer nope",
		"wrong scheme": "Basic s3cret-token",
		"prefix":       "Bearer s3cret",
	} {
		h := http.Header{"Origin": {ui}}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		resp, b := s.post(t, "/codec/decode", body, h)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, name)
		require.NotContains(t, string(b), "s3cret-token")
		require.Equal(t, ui, resp.Header.Get("Access-Control-Allow-Origin"), "%s: the UI can read why", name)
	}
	resp, b := s.post(t, "/codec/encode", body, http.Header{"Authorization": {"Bearer s3cret-token"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)

	// A preflight never carries the token and is answered without it.
	req, err := http.NewRequest(http.MethodOptions, s.URL+"/codec/decode", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", ui)
	req.Header.Set("Access-Control-Request-Method", "POST")
	pre, err := s.Client().Do(req)
	require.NoError(t, err)
	pre.Body.Close()
	require.Equal(t, http.StatusNoContent, pre.StatusCode)
}

func TestHandlerBoundsTheBody(t *testing.T) {
	t.Parallel()
	s := newCodecServer(t, codec.HandlerConfig{MaxBodyBytes: 64})
	big := wireBody{Payloads: []wirePayload{{Metadata: map[string]string{"encoding": b64("json/plain")}, Data: b64(strings.Repeat("x", 200))}}}
	resp, _ := s.post(t, "/codec/encode", big, nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
