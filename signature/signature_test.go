package signature_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/signature"
)

// The vector published with the Standard Webhooks reference libraries.
const (
	refSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	refID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	refTS     = 1614265330
	refBody   = `{"test": 2432232314}`
	refSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t testing.TB, s string) signature.Secret {
	t.Helper()
	sec, err := signature.ParseSecret(s)
	require.NoError(t, err)
	return sec
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(signature.HeaderID, id)
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(signature.HeaderSignature, sig)
	return h
}

func TestSignReferenceVector(t *testing.T) {
	t.Parallel()
	sec := mustSecret(t, refSecret)
	got, err := signature.Sign(refID, time.Unix(refTS, 0), []byte(refBody), sec)
	require.NoError(t, err)
	require.Equal(t, refSig, got)
	require.NoError(t, signature.Verify(headers(refID, refTS, refSig), []byte(refBody),
		[]signature.Secret{sec}, 0, time.Unix(refTS+10, 0)))
}

// An independent computation straight from the spec's definition, so the
// test does not share code paths with the implementation.
func TestSignIndependentVector(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0x42}, 32)
	encoded := "whsec_" + base64.StdEncoding.EncodeToString(key)
	body := []byte(`{"type":"doc.changed","data":{"k":1}}`)
	ts := time.Unix(1700000000, 999) // sub-second part must not matter

	m := hmac.New(sha256.New, key)
	m.Write([]byte("evt_123.1700000000." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))

	got, err := signature.Sign("evt_123", ts, body, mustSecret(t, encoded))
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestSignMultipleSecrets(t *testing.T) {
	t.Parallel()
	oldKey, err := signature.NewSecret()
	require.NoError(t, err)
	newKey, err := signature.NewSecret()
	require.NoError(t, err)
	now := time.Unix(1700000000, 0)
	body := []byte("payload")

	sig, err := signature.Sign("msg_1", now, body, newKey, oldKey)
	require.NoError(t, err)
	parts := strings.Split(sig, " ")
	require.Len(t, parts, 2)
	for _, p := range parts {
		require.True(t, strings.HasPrefix(p, "v1,"))
	}

	h := headers("msg_1", now.Unix(), sig)
	// A receiver that only knows either key accepts the message.
	require.NoError(t, signature.Verify(h, body, []signature.Secret{oldKey}, 0, now))
	require.NoError(t, signature.Verify(h, body, []signature.Secret{newKey}, 0, now))
	other, err := signature.NewSecret()
	require.NoError(t, err)
	require.ErrorIs(t, signature.Verify(h, body, []signature.Secret{other}, 0, now), signature.ErrNoMatch)
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	sec := mustSecret(t, refSecret)
	_, err := signature.Sign("msg", time.Now(), nil)
	require.ErrorIs(t, err, signature.ErrNoSecrets)
	_, err = signature.Sign("msg.1", time.Now(), nil, sec)
	require.ErrorIs(t, err, signature.ErrInvalidID)
	_, err = signature.Sign("", time.Now(), nil, sec)
	require.ErrorIs(t, err, signature.ErrInvalidID)
	_, err = signature.Sign("msg", time.Now(), nil, sec, nil)
	require.ErrorIs(t, err, signature.ErrInvalidSecret)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	sec := mustSecret(t, refSecret)
	secs := []signature.Secret{sec}
	body := []byte(refBody)
	now := time.Unix(refTS, 0)

	tests := []struct {
		name      string
		h         http.Header
		body      []byte
		tolerance time.Duration
		now       time.Time
		want      error
	}{
		{name: "ok", h: headers(refID, refTS, refSig), now: now},
		{name: "ok among unknown versions and junk",
			h: headers(refID, refTS, "v1a,AAAA v2,zzz garbage v1,!!! "+refSig), now: now},
		{name: "ok at edge of default tolerance", h: headers(refID, refTS, refSig), now: now.Add(5 * time.Minute)},
		{name: "late beyond default tolerance", h: headers(refID, refTS, refSig),
			now: now.Add(5*time.Minute + time.Second), want: signature.ErrTimestamp},
		{name: "early beyond default tolerance", h: headers(refID, refTS, refSig),
			now: now.Add(-5*time.Minute - time.Second), want: signature.ErrTimestamp},
		{name: "custom tolerance", h: headers(refID, refTS, refSig), tolerance: time.Minute,
			now: now.Add(2 * time.Minute), want: signature.ErrTimestamp},
		{name: "tampered body", h: headers(refID, refTS, refSig), body: []byte(`{"test": 1}`),
			now: now, want: signature.ErrNoMatch},
		{name: "other id", h: headers("msg_other", refTS, refSig), now: now, want: signature.ErrNoMatch},
		{name: "id with dot", h: headers("a.b", refTS, refSig), now: now, want: signature.ErrMissingHeaders},
		{name: "missing id", h: headers("", refTS, refSig), now: now, want: signature.ErrMissingHeaders},
		{name: "missing signature", h: headers(refID, refTS, ""), now: now, want: signature.ErrMissingHeaders},
		{name: "missing timestamp", h: http.Header{"Webhook-Id": {refID}, "Webhook-Signature": {refSig}},
			now: now, want: signature.ErrMissingHeaders},
		{name: "bad timestamp", h: http.Header{"Webhook-Id": {refID}, "Webhook-Timestamp": {"soon"},
			"Webhook-Signature": {refSig}}, now: now, want: signature.ErrTimestamp},
		{name: "extreme timestamp", h: headers(refID, -1<<63, refSig), now: now, want: signature.ErrTimestamp},
		{name: "signature without version", h: headers(refID, refTS, strings.TrimPrefix(refSig, "v1,")),
			now: now, want: signature.ErrNoMatch},
		{name: "truncated signature", h: headers(refID, refTS, refSig[:len(refSig)-4]),
			now: now, want: signature.ErrNoMatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := body
			if tc.body != nil {
				b = tc.body
			}
			err := signature.Verify(tc.h, b, secs, tc.tolerance, tc.now)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}

	require.ErrorIs(t, signature.Verify(headers(refID, refTS, refSig), body, nil, 0, now), signature.ErrNoSecrets)
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, 24)
	ok := "whsec_" + base64.StdEncoding.EncodeToString(key)
	sec, err := signature.ParseSecret("  " + ok + "\n")
	require.NoError(t, err)
	require.Equal(t, signature.Secret(key), sec)
	require.Equal(t, ok, sec.Encode())

	// Unpadded base64 is accepted too.
	sec, err = signature.ParseSecret("whsec_" + base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 25)))
	require.NoError(t, err)
	require.Len(t, sec, 25)

	for name, in := range map[string]string{
		"empty":      "",
		"no prefix":  base64.StdEncoding.EncodeToString(key),
		"bad base64": "whsec_not*base64*at*all!!",
		"too short":  "whsec_" + base64.StdEncoding.EncodeToString(key[:23]),
		"too long":   "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 65)),
		"url base64": "whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 30)),
	} {
		_, err := signature.ParseSecret(in)
		require.ErrorIs(t, err, signature.ErrInvalidSecret, name)
		if len(in) > len("whsec_") {
			require.NotContains(t, err.Error(), in[len("whsec_"):], name)
		}
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	a, err := signature.NewSecret()
	require.NoError(t, err)
	b, err := signature.NewSecret()
	require.NoError(t, err)
	require.Len(t, a, 32)
	require.NotEqual(t, a, b)
	round, err := signature.ParseSecret(a.Encode())
	require.NoError(t, err)
	require.Equal(t, a, round)
}

func TestSecretRedaction(t *testing.T) {
	t.Parallel()
	sec := mustSecret(t, refSecret)
	value := strings.TrimPrefix(refSecret, "whsec_")
	raw := string(sec)

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("oops", "secret", sec, "secrets", []signature.Secret{sec})
	js, err := json.Marshal(struct{ S signature.Secret }{sec})
	require.NoError(t, err)

	outputs := []string{
		sec.String(),
		fmt.Sprint(sec),
		fmt.Sprintf("%v %+v %#v %s %q %x %X %d", sec, sec, sec, sec, sec, sec, sec, sec),
		fmt.Sprintf("%v", []signature.Secret{sec}),
		fmt.Errorf("wrapped: %v", sec).Error(),
		logs.String(),
		string(js),
	}
	for _, out := range outputs {
		require.Contains(t, out, "redacted")
		require.NotContains(t, out, value)
		require.NotContains(t, out, raw)
		require.NotContains(t, out, base64.StdEncoding.EncodeToString(sec))
		require.NotContains(t, out, fmt.Sprintf("%x", []byte(sec)))
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(refID, strconv.Itoa(refTS), refSig, []byte(refBody))
	f.Add("", "", "", []byte{})
	f.Add("a.b", "-9223372036854775808", "v1,", []byte("x"))
	f.Add("id", "9223372036854775807", "v1,==== v1a,x  ,", []byte(nil))
	secs := []signature.Secret{mustSecret(f, refSecret)}
	now := time.Unix(refTS, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(signature.HeaderID, id)
		h.Set(signature.HeaderTimestamp, ts)
		h.Set(signature.HeaderSignature, sig)
		err := signature.Verify(h, body, secs, 0, now)
		if err == nil {
			// Only the genuine message may verify.
			require.Equal(t, refID, id)
			require.Equal(t, refBody, string(body))
		}
	})
}

func BenchmarkSign(b *testing.B) {
	sec := mustSecret(b, refSecret)
	body := bytes.Repeat([]byte("x"), 4<<10)
	ts := time.Unix(refTS, 0)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := signature.Sign(refID, ts, body, sec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	sec := mustSecret(b, refSecret)
	body := bytes.Repeat([]byte("x"), 4<<10)
	ts := time.Unix(refTS, 0)
	sig, err := signature.Sign(refID, ts, body, sec)
	require.NoError(b, err)
	h := headers(refID, refTS, sig)
	secs := []signature.Secret{sec}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := signature.Verify(h, body, secs, 0, ts); err != nil {
			b.Fatal(err)
		}
	}
}
