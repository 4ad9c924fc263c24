package codec

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/triggerflow/triggerflow/internal/keyfile"
)

// ErrInvalidKeys is wrapped by the errors of ParseKeys and LoadKeys. They
// name the line, entry and key id, never key material.
var ErrInvalidKeys = errors.New("codec: invalid key list")

// Key is one key of a ring.
type Key struct {
	// ID names the key in the payloads it encrypts.
	ID string
	// Secret is the 32-byte AES-256 key.
	Secret []byte
}

// GenerateKey returns a new random 32-byte key.
func GenerateKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("codec: generate key: %w", err)
	}
	return k, nil
}

// NewKeyID returns a fresh key id made of the date and a random suffix,
// like "k20260102-3f9a": sortable, and unlikely to repeat.
func NewKeyID(now time.Time) (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("codec: generate key id: %w", err)
	}
	return "k" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(b[:]), nil
}

// FormatKey is the entry of a key list for key id: "id=<base64>".
func FormatKey(id string, key []byte) string { return keyfile.Format(id, key) }

// ParseKeys parses a key list: entries "id=<base64 of 32 bytes>" separated
// by newlines, spaces or commas; '#' starts a comment that runs to the end
// of the line. Standard and URL-safe base64 are accepted, with or without
// padding. Order is kept; an entry repeated is kept once, but one id with
// two different keys is an error.
func ParseKeys(data []byte) ([]Key, error) {
	entries, err := keyfile.Parse(data, KeySize, fmt.Sprintf("AES-256 needs %d (generate one with 'triggerflow codec keygen')", KeySize))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeys, err)
	}
	out := make([]Key, len(entries))
	for i, e := range entries {
		out[i] = Key{ID: e.ID, Secret: e.Key}
	}
	return out, nil
}

// LoadKeys builds a key ring from a key file in the ParseKeys format (""
// for none) and entries, each a ParseKeys list too (configuration values
// such as temporal.codec.keys). A key id found in both must hold the same
// key.
func LoadKeys(file string, entries []string) (map[string][]byte, error) {
	var all []keyfile.Entry
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("codec: key file: %w", err)
		}
		keys, err := ParseKeys(data)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", file, err)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("%w: key file %s holds no key", ErrInvalidKeys, file)
		}
		for _, k := range keys {
			all = append(all, keyfile.Entry{ID: k.ID, Key: k.Secret})
		}
	}
	for i, e := range entries {
		keys, err := ParseKeys([]byte(e))
		if err != nil {
			return nil, fmt.Errorf("keys entry %d: %w", i+1, err)
		}
		for _, k := range keys {
			if all, err = keyfile.Add(all, keyfile.Entry{ID: k.ID, Key: k.Secret}); err != nil {
				return nil, fmt.Errorf("%w: keys entry %d: %w", ErrInvalidKeys, i+1, err)
			}
		}
	}
	ring := make(map[string][]byte, len(all))
	for _, k := range all {
		ring[k.ID] = k.Key
	}
	return ring, nil
}

// AppendKey adds the entry of key id to the key file at path, creating the
// file (0600) and its directory (0700) when missing. When the file already
// holds id it is left unchanged and added is false, so that a deployment
// may run the same command at every start.
func AppendKey(path, id string, key []byte) (added bool, err error) {
	if err := CheckKeyID(id); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidKeys, err)
	}
	if len(key) != KeySize {
		return false, fmt.Errorf("%w: key %q is %d bytes long; AES-256 needs %d", ErrInvalidKeys, id, len(key), KeySize)
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return false, fmt.Errorf("codec: key file: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("codec: key file: %w", err)
	default:
		keys, err := ParseKeys(data)
		if err != nil {
			return false, fmt.Errorf("key file %s: %w", path, err)
		}
		for _, k := range keys {
			if k.ID == id {
				return false, nil
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("codec: key file: %w", err)
	}
	line := FormatKey(id, key) + "\n"
	if len(data) > 0 && data[len(data)-1] != '\n' {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return false, fmt.Errorf("codec: key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("codec: key file: %w", err)
	}
	return true, nil
}

// EnsureKeyFile returns the id of the last key in the key file at path,
// first creating the file with one new key when it does not exist: what a
// development stack needs to run with encryption on and nothing to set up.
func EnsureKeyFile(path string) (activeKey string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		id, err := NewKeyID(time.Now())
		if err != nil {
			return "", err
		}
		key, err := GenerateKey()
		if err != nil {
			return "", err
		}
		if _, err := AppendKey(path, id, key); err != nil {
			return "", err
		}
		return id, nil
	}
	if err != nil {
		return "", fmt.Errorf("codec: key file: %w", err)
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("%w: key file %s holds no key", ErrInvalidKeys, path)
	}
	return keys[len(keys)-1].ID, nil
}
