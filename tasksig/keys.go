package tasksig

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/triggerflow/triggerflow/internal/keyfile"
)

// Key files hold "id=<base64 key>" entries, one per line, in the format
// of package keyfile (as the history codec's key files). A signing key file holds the
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
	entries, err := keyfile.Parse(data, size, fmt.Sprintf("want %d bytes (make keys with 'triggerflow tasks keygen')", size))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidKey, path, err)
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		out[e.ID] = e.Key
	}
	return out, nil
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
	return keyfile.Format(id, priv.Seed()), keyfile.Format(id, pub), nil
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
