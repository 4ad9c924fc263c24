package tasksig

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Key files hold one key per line as "id=<base64 key>"; blank lines and
// lines starting with '#' are skipped. A signing key file holds the
// watcher's one private key (its 32-byte Ed25519 seed); a verification key
// file holds the public keys ingest and the worker accept.

// LoadSigner reads a signing key file.
func LoadSigner(path string) (*Signer, error) {
	entries, err := readKeyFile(path, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	if len(entries) != 1 {
		return nil, fmt.Errorf("%w: %s holds %d keys; a signing key file holds one", ErrInvalidKey, path, len(entries))
	}
	for id, seed := range entries {
		return NewSigner(id, ed25519.NewKeyFromSeed(seed))
	}
	panic("unreachable")
}

// LoadVerifier reads a verification key file.
func LoadVerifier(path string) (*Verifier, error) {
	entries, err := readKeyFile(path, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]ed25519.PublicKey, len(entries))
	for id, k := range entries {
		keys[id] = ed25519.PublicKey(k)
	}
	v, err := NewVerifier(keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func readKeyFile(path string, size int) (map[string][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("task signing keys: %w", err)
	}
	out := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, enc, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %s:%d: want id=<base64 key>", ErrInvalidKey, path, n)
		}
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(key) != size {
			return nil, fmt.Errorf("%w: %s:%d: key %q is not %d bytes of base64", ErrInvalidKey, path, n, id, size)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("%w: %s:%d: key %q is listed twice", ErrInvalidKey, path, n, id)
		}
		out[id] = key
	}
	return out, sc.Err()
}

// GenerateKey returns a new key pair as key file lines: the signing line
// for the watcher, the verification line for ingest and the worker. An
// empty id takes the date.
func GenerateKey(id string) (signing, verification string, err error) {
	if id == "" {
		id = "k" + time.Now().UTC().Format("20060102T150405")
	}
	if err := checkID(id); err != nil {
		return "", "", err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return id + "=" + base64.StdEncoding.EncodeToString(priv.Seed()),
		id + "=" + base64.StdEncoding.EncodeToString(pub), nil
}

// EnsureKeyPair creates a signing key file and its verification key file
// (0600) when the signing file does not exist yet, for `triggerflow dev`;
// existing files are left as they are.
func EnsureKeyPair(signingPath, verifyPath string) error {
	if _, err := os.Stat(signingPath); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	signing, verification, err := GenerateKey("")
	if err != nil {
		return err
	}
	for path, line := range map[string]string{signingPath: signing, verifyPath: verification} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}
