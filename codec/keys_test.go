package codec_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/codec"
)

func TestParseKeys(t *testing.T) {
	t.Parallel()
	k1 := base64.StdEncoding.EncodeToString(key(1))
	k2url := base64.RawURLEncoding.EncodeToString(key(0xfb))
	keys, err := codec.ParseKeys([]byte("# the ring\nk1=" + k1 + "  # oldest\n\nk2=" + k2url + ", k1=" + k1 + "\n"))
	require.NoError(t, err)
	require.Equal(t, []codec.Key{{ID: "k1", Secret: key(1)}, {ID: "k2", Secret: key(0xfb)}}, keys)

	empty, err := codec.ParseKeys([]byte("# nothing yet\n"))
	require.NoError(t, err)
	require.Empty(t, empty)

	secret := base64.StdEncoding.EncodeToString(key(7))
	for name, tc := range map[string]struct{ in, want string }{
		"no equals sign": {secret, `line 1, entry 1: is not "id=<base64 key>"`},
		"bad id":         {"a/b=" + secret, `line 1, entry 1: has no valid key id before '='`},
		"not base64":     {"k=!!!!", `the key is not base64`},
		// A key pasted without its id: its padding is no separator.
		"padded key alone":   {base64.StdEncoding.EncodeToString(key(9)[:31]), `is not "id=<base64 key>"`},
		"doubly padded key":  {base64.StdEncoding.EncodeToString(key(9)[:31]) + "+/", `is not "id=<base64 key>"`},
		"short key":          {"k=" + base64.StdEncoding.EncodeToString(make([]byte, 16)), `key "k" is 16 bytes long; AES-256 needs 32`},
		"one id, two keys":   {"k=" + secret + "\nk=" + k1, `line 2, entry 1: key "k" is given twice with different keys`},
		"empty id":           {"=" + secret, "has no valid key id"},
		"second entry wrong": {"a=" + secret + " b=" + secret[:10], `line 1, entry 2: key "b"`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := codec.ParseKeys([]byte(tc.in))
			require.ErrorIs(t, err, codec.ErrInvalidKeys)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), secret, "errors never show key material")
			if len(tc.in) > 20 {
				require.NotContains(t, err.Error(), tc.in[:20], "nor what may be key material")
			}
		})
	}
}

func TestLoadKeysMergesFileAndEntries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "codec.keys")
	require.NoError(t, os.WriteFile(file, []byte(codec.FormatKey("a", key(1))+"\n"), 0o600))

	ring, err := codec.LoadKeys(file, []string{codec.FormatKey("b", key(2)) + "," + codec.FormatKey("a", key(1))})
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"a": key(1), "b": key(2)}, ring)

	_, err = codec.LoadKeys(file, []string{codec.FormatKey("a", key(3))})
	require.ErrorIs(t, err, codec.ErrInvalidKeys)
	require.ErrorContains(t, err, `keys entry 1: key "a" is given twice with different keys`)

	_, err = codec.LoadKeys(filepath.Join(dir, "missing"), nil)
	require.ErrorIs(t, err, os.ErrNotExist)

	require.NoError(t, os.WriteFile(file, []byte("# revoked\n"), 0o600))
	_, err = codec.LoadKeys(file, nil)
	require.ErrorContains(t, err, "holds no key")

	ring, err = codec.LoadKeys("", nil)
	require.NoError(t, err)
	require.Empty(t, ring)
}

func TestAppendAndEnsureKeyFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys", "codec.keys")

	id, err := codec.EnsureKeyFile(file)
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^k\d{8}-[0-9a-f]{4}$`), id)
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	again, err := codec.EnsureKeyFile(file)
	require.NoError(t, err)
	require.Equal(t, id, again, "an existing file is kept")

	added, err := codec.AppendKey(file, "next", key(5))
	require.NoError(t, err)
	require.True(t, added)
	added, err = codec.AppendKey(file, "next", key(6))
	require.NoError(t, err)
	require.False(t, added, "an id already there is left alone")

	active, err := codec.EnsureKeyFile(file)
	require.NoError(t, err)
	require.Equal(t, "next", active, "the newest key is the last")
	ring, err := codec.LoadKeys(file, nil)
	require.NoError(t, err)
	require.Len(t, ring, 2)
	require.Equal(t, key(5), ring["next"])
	_, err = codec.New(codec.Config{Keys: ring, ActiveKey: active})
	require.NoError(t, err)
}

func TestNewKeyID(t *testing.T) {
	t.Parallel()
	id, err := codec.NewKeyID(time.Date(2026, 1, 2, 23, 0, 0, 0, time.FixedZone("x", -5*3600)))
	require.NoError(t, err)
	require.Regexp(t, `^k20260103-[0-9a-f]{4}$`, id, "the date is UTC's")
	require.NoError(t, codec.CheckKeyID(id))
	k, err := codec.GenerateKey()
	require.NoError(t, err)
	require.Len(t, k, codec.KeySize)
}
