package codec_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/triggerflow/triggerflow/codec"
)

// key returns a deterministic test key.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, codec.KeySize) }

func newCodec(t testing.TB, active string, keys map[string][]byte) *codec.Codec {
	t.Helper()
	c, err := codec.New(codec.Config{Keys: keys, ActiveKey: active})
	require.NoError(t, err)
	return c
}

const marker = "MARKER-7f3a-secret-document-body"

func jsonPayload(t testing.TB, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	require.NoError(t, err)
	return p
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	c := newCodec(t, "k1", map[string][]byte{"k1": key(1)})
	in := []*commonpb.Payload{
		jsonPayload(t, map[string]string{"body": marker}),
		{Metadata: map[string][]byte{"encoding": []byte("binary/null")}},
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "extra": []byte("x")}, Data: []byte{0, 1, 2}},
		nil,
	}
	orig := make([]*commonpb.Payload, len(in))
	for i, p := range in {
		if p != nil {
			orig[i] = proto.Clone(p).(*commonpb.Payload)
		}
	}
	enc, err := c.Encode(in)
	require.NoError(t, err)
	require.Len(t, enc, len(in))
	for i, p := range enc {
		if in[i] == nil {
			require.Nil(t, p)
			continue
		}
		require.Equal(t, codec.EncodingEncrypted, string(p.Metadata[codec.MetadataEncoding]))
		require.Equal(t, "k1", string(p.Metadata[codec.MetadataKeyID]))
		require.Equal(t, codec.Cipher, string(p.Metadata[codec.MetadataCipher]))
		require.Len(t, p.Metadata, 3, "the original metadata is inside the ciphertext")
		require.NotContains(t, string(p.Data), marker)
		require.NotContains(t, string(p.Data), "json/plain")
		require.True(t, proto.Equal(orig[i], in[i]), "Encode does not change its argument")
	}
	// A fresh nonce each time: the same payload never encrypts the same.
	again, err := c.Encode(in[:1])
	require.NoError(t, err)
	require.NotEqual(t, enc[0].Data, again[0].Data)

	dec, err := c.Decode(enc)
	require.NoError(t, err)
	for i := range in {
		require.True(t, proto.Equal(orig[i], dec[i]), "payload %d round-trips", i)
	}

	// Through a data converter, as the services use it.
	dc := codec.DataConverter(c)
	p, err := dc.ToPayload(map[string]string{"body": marker})
	require.NoError(t, err)
	require.NotContains(t, string(p.Data), marker)
	var got map[string]string
	require.NoError(t, dc.FromPayload(p, &got))
	require.Equal(t, marker, got["body"])
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old := newCodec(t, "2025-a", map[string][]byte{"2025-a": key(1)})
	written, err := old.Encode([]*commonpb.Payload{jsonPayload(t, "from before the rotation")})
	require.NoError(t, err)

	// The new key is added and made active; the old one stays to decrypt.
	rotated := newCodec(t, "2026-b", map[string][]byte{"2025-a": key(1), "2026-b": key(2)})
	require.Equal(t, []string{"2025-a", "2026-b"}, rotated.KeyIDs())
	dec, err := rotated.Decode(written)
	require.NoError(t, err)
	var s string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(dec[0], &s))
	require.Equal(t, "from before the rotation", s)

	fresh, err := rotated.Encode([]*commonpb.Payload{jsonPayload(t, "after")})
	require.NoError(t, err)
	require.Equal(t, "2026-b", string(fresh[0].Metadata[codec.MetadataKeyID]), "the active key encrypts")

	// A replica still on the old ring cannot read the new key's payloads,
	// and says which key it lacks.
	_, err = old.Decode(fresh)
	var uk *codec.UnknownKeyError
	require.ErrorAs(t, err, &uk)
	require.Equal(t, "2026-b", uk.KeyID)
	require.Equal(t, []string{"2025-a"}, uk.Known)
}

func TestUnknownKeyID(t *testing.T) {
	t.Parallel()
	a := newCodec(t, "alpha", map[string][]byte{"alpha": key(1)})
	b := newCodec(t, "beta", map[string][]byte{"beta": key(2), "gamma": key(3)})
	enc, err := a.Encode([]*commonpb.Payload{jsonPayload(t, 1)})
	require.NoError(t, err)
	_, err = b.Decode(enc)
	require.ErrorIs(t, err, codec.ErrUnknownKey)
	require.Contains(t, err.Error(), `"alpha"`)
	require.Contains(t, err.Error(), "beta, gamma")
}

func TestTamperedPayloadsFail(t *testing.T) {
	t.Parallel()
	c := newCodec(t, "k1", map[string][]byte{"k1": key(1), "k2": key(2)})
	enc, err := c.Encode([]*commonpb.Payload{jsonPayload(t, marker)})
	require.NoError(t, err)
	clone := func() *commonpb.Payload { return proto.Clone(enc[0]).(*commonpb.Payload) }

	for name, tc := range map[string]struct {
		mutate func(p *commonpb.Payload)
		want   error
	}{
		"a flipped ciphertext bit": {func(p *commonpb.Payload) { p.Data[len(p.Data)/2] ^= 1 }, codec.ErrDecrypt},
		"a flipped nonce bit":      {func(p *commonpb.Payload) { p.Data[0] ^= 0x80 }, codec.ErrDecrypt},
		"a flipped tag bit":        {func(p *commonpb.Payload) { p.Data[len(p.Data)-1] ^= 1 }, codec.ErrDecrypt},
		"truncated":                {func(p *commonpb.Payload) { p.Data = p.Data[:len(p.Data)-1] }, codec.ErrDecrypt},
		// The key id is bound as additional data: relabelling fails
		// even when the ring holds the named key.
		"relabelled with another key id": {func(p *commonpb.Payload) { p.Metadata[codec.MetadataKeyID] = []byte("k2") }, codec.ErrDecrypt},
		"no key id":                      {func(p *commonpb.Payload) { delete(p.Metadata, codec.MetadataKeyID) }, codec.ErrMalformed},
		"another cipher":                 {func(p *commonpb.Payload) { p.Metadata[codec.MetadataCipher] = []byte("ROT13") }, codec.ErrMalformed},
		"shorter than a nonce and tag":   {func(p *commonpb.Payload) { p.Data = p.Data[:20] }, codec.ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := clone()
			tc.mutate(p)
			out, err := c.Decode([]*commonpb.Payload{p})
			require.ErrorIs(t, err, tc.want)
			require.NotContains(t, err.Error(), marker)
			require.Same(t, p, out[0], "on failure the input comes back")
		})
	}

	// A different key under the same id does not authenticate either.
	other := newCodec(t, "k1", map[string][]byte{"k1": key(9)})
	_, err = other.Decode(enc)
	require.ErrorIs(t, err, codec.ErrDecrypt)
}

func TestPlaintextPassesThrough(t *testing.T) {
	t.Parallel()
	c := newCodec(t, "k1", map[string][]byte{"k1": key(1)})
	in := []*commonpb.Payload{
		jsonPayload(t, map[string]string{"recorded": "before the codec was on"}),
		{Metadata: map[string][]byte{"encoding": []byte("binary/zlib")}, Data: []byte("not ours")},
		{},
		nil,
	}
	out, err := c.Decode(in)
	require.NoError(t, err)
	for i := range in {
		require.Same(t, in[i], out[i])
	}
	// And through the data converter, as a replay of an old history does.
	var v map[string]string
	require.NoError(t, codec.DataConverter(c).FromPayload(in[0], &v))
	require.Equal(t, "before the codec was on", v["recorded"])
}

func TestFailureConverterEncryptsMessages(t *testing.T) {
	t.Parallel()
	c := newCodec(t, "k1", map[string][]byte{"k1": key(1)})
	fc := codec.FailureConverter(codec.DataConverter(c))
	f := fc.ErrorToFailure(temporal.NewApplicationError("POST https://hooks.example.com/"+marker+" failed", "HTTP_500", map[string]string{"body": marker}))
	raw, err := proto.Marshal(f)
	require.NoError(t, err)
	require.NotContains(t, string(raw), marker)
	require.NotContains(t, string(raw), base64.StdEncoding.EncodeToString([]byte(marker)))
	require.Equal(t, "HTTP_500", f.GetApplicationFailureInfo().GetType(), "the failure type stays readable")

	back := fc.FailureToError(f)
	var app *temporal.ApplicationError
	require.True(t, errors.As(back, &app))
	require.Contains(t, app.Message(), marker)
	var details map[string]string
	require.NoError(t, app.Details(&details))
	require.Equal(t, marker, details["body"])
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  codec.Config
		want string
	}{
		"empty ring":         {codec.Config{ActiveKey: "k"}, "key ring is empty"},
		"short key":          {codec.Config{Keys: map[string][]byte{"k": make([]byte, 16)}, ActiveKey: "k"}, `key "k": is 16 bytes long; AES-256 needs 32`},
		"no active key":      {codec.Config{Keys: map[string][]byte{"a": key(1), "b": key(2)}}, "no active key: name the key that encrypts (one of a, b)"},
		"active not in ring": {codec.Config{Keys: map[string][]byte{"a": key(1)}, ActiveKey: "z"}, `the active key "z" is not in the key ring (it holds a)`},
		"bad key id":         {codec.Config{Keys: map[string][]byte{"a b": key(1)}, ActiveKey: "a b"}, `key id "a b" contains ' '`},
		"long key id":        {codec.Config{Keys: map[string][]byte{strings.Repeat("k", 65): key(1)}, ActiveKey: "k"}, "the limit is 64"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := codec.New(tc.cfg)
			require.ErrorIs(t, err, codec.ErrInvalidConfig)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	c := newCodec(t, "a", map[string][]byte{"a": key(1)})
	require.Equal(t, "a", c.ActiveKey())
}

func TestRandomFailureIsReported(t *testing.T) {
	t.Parallel()
	c, err := codec.New(codec.Config{Keys: map[string][]byte{"k": key(1)}, ActiveKey: "k", Rand: failingReader{}})
	require.NoError(t, err)
	_, err = c.Encode([]*commonpb.Payload{jsonPayload(t, 1)})
	require.ErrorContains(t, err, "nonce: no entropy")
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, fmt.Errorf("no entropy") }

// FuzzDecode feeds Decode arbitrary payloads: it must never panic, must
// pass through what is not marked encrypted, and must fail on anything
// marked encrypted that this ring did not produce.
func FuzzDecode(f *testing.F) {
	// Fixed nonces: every fuzzing process must produce the same seed.
	c, err := codec.New(codec.Config{Keys: map[string][]byte{"k1": key(1)}, ActiveKey: "k1", Rand: zeroReader{}})
	require.NoError(f, err)
	enc, err := c.Encode([]*commonpb.Payload{jsonPayload(f, marker)})
	require.NoError(f, err)
	f.Add([]byte(codec.EncodingEncrypted), []byte("k1"), []byte(codec.Cipher), enc[0].Data, false)
	f.Add([]byte("json/plain"), []byte(""), []byte(""), []byte(`"x"`), true)
	f.Add([]byte(codec.EncodingEncrypted), []byte("nope"), []byte(""), []byte("short"), true)
	f.Fuzz(func(t *testing.T, encoding, keyID, cph, data []byte, omitCipher bool) {
		md := map[string][]byte{codec.MetadataEncoding: encoding, codec.MetadataKeyID: keyID}
		if !omitCipher {
			md[codec.MetadataCipher] = cph
		}
		p := &commonpb.Payload{Metadata: md, Data: data}
		out, err := c.Decode([]*commonpb.Payload{p})
		if string(encoding) != codec.EncodingEncrypted {
			require.NoError(t, err)
			require.Same(t, p, out[0])
			return
		}
		if err == nil {
			// Only a genuine ciphertext of this ring decrypts.
			require.Equal(t, enc[0].Data, data)
			require.NotNil(t, out[0])
		}
	})
}
