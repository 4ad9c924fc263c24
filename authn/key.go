package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const pemType = "PRIVATE KEY"

// LoadKey reads an Ed25519 private key from a PKCS #8 PEM file, as written
// by LoadOrCreateKey or `openssl genpkey -algorithm ed25519`.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authn: reading key: %w", err)
	}
	return ParseKey(data, path)
}

// ParseKey decodes a PKCS #8 PEM Ed25519 private key; source names it in
// errors.
func ParseKey(data []byte, source string) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("authn: %s: no %q PEM block", source, pemType)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authn: %s: %w", source, err)
	}
	ed, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("authn: %s: key is %T, want Ed25519", source, key)
	}
	return ed, nil
}

// MarshalKey encodes key as PKCS #8 PEM.
func MarshalKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("authn: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// LoadOrCreateKey loads the key at path, first generating one there (mode
// 0600) if the file does not exist: the dev stack keeps one key across
// restarts so receivers' cached key sets stay valid. Concurrent callers
// agree on one key, since the file appears atomically.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := LoadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	_, gen, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authn: generating key: %w", err)
	}
	data, err := MarshalKey(gen)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("authn: creating key directory: %w", err)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	tmp := path + ".tmp-" + hex.EncodeToString(nonce[:])
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, fmt.Errorf("authn: writing key: %w", err)
	}
	defer func() { _ = os.Remove(tmp) }()
	// Link never replaces an existing file: if another process created
	// the key meanwhile, its key wins and ours is discarded.
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("authn: installing key: %w", err)
	}
	return LoadKey(path)
}
