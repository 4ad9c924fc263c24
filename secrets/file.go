package secrets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/triggerflow/triggerflow/signature"
)

// Dir is the file backend for development: the secrets of (tenant, ref)
// are the file <dir>/<tenant>/<ref>, in the ParseList format. Files should
// be mode 0600 and tenant directories 0700.
type Dir struct {
	dir string
}

var _ Manager = (*Dir)(nil)

// NewDir returns the file backend rooted at dir.
func NewDir(dir string) *Dir { return &Dir{dir: dir} }

// Resolve reads <dir>/<tenant>/<ref>. The file is opened through an
// os.Root at the tenant directory, so neither the name nor a symlink can
// reach outside the tenant's namespace.
func (d *Dir) Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error) {
	if err := validate(tenant, ref); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	where := "file " + filepath.Join(d.dir, tenant, ref)
	root, err := os.OpenRoot(filepath.Join(d.dir, tenant))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(tenant, ref, where)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: tenant %q ref %q: opening tenant directory: %w", tenant, ref, err)
	}
	defer root.Close()
	data, err := readRegular(root, ref)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(tenant, ref, where)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: tenant %q ref %q: %w", tenant, ref, err)
	}
	return parseFor(data, tenant, ref, where)
}

func readRegular(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	// Read one byte past the limit so parseFor can report oversize.
	return io.ReadAll(io.LimitReader(f, maxListBytes+1))
}

// Ensure makes sure <dir>/<tenant>/<ref> exists, creating it with one new
// random secret (mode 0600, tenant directory 0700) if it does not, and
// returns the secrets it holds. It is for the dev stack, which needs a
// secret shared by the worker and the demo receiver without setup.
// Concurrent callers agree on one secret: the file appears atomically.
func Ensure(dir, tenant, ref string) ([]signature.Secret, error) {
	if err := validate(tenant, ref); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, tenant), 0o700); err != nil {
		return nil, fmt.Errorf("secrets: creating directory for tenant %q: %w", tenant, err)
	}
	resolve := func() ([]signature.Secret, error) {
		return NewDir(dir).Resolve(context.Background(), tenant, ref)
	}
	list, err := resolve()
	if !errors.Is(err, ErrNotFound) {
		return list, err
	}
	if err := create(dir, tenant, ref); err != nil {
		return nil, err
	}
	return resolve()
}

func create(dir, tenant, ref string) error {
	sec, err := signature.NewSecret()
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(filepath.Join(dir, tenant))
	if err != nil {
		return fmt.Errorf("secrets: tenant %q: %w", tenant, err)
	}
	defer root.Close()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	// A leading '.' keeps the temporary name outside the ref namespace.
	tmp := "." + ref + ".tmp-" + hex.EncodeToString(nonce[:])
	content := fmt.Sprintf("# Standard Webhooks signing secret for tenant %s, ref %s; generated %s.\n"+
		"# To rotate, put a new secret on the first line and keep this one until receivers have switched.\n%s\n",
		tenant, ref, time.Now().UTC().Format(time.RFC3339), sec.Encode())
	if err := root.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("secrets: tenant %q ref %q: writing secret file: %w", tenant, ref, err)
	}
	defer func() { _ = root.Remove(tmp) }()
	// Link refuses to replace an existing file, so a concurrent Ensure that
	// won the race keeps its secret and this one is discarded.
	if err := root.Link(tmp, ref); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("secrets: tenant %q ref %q: installing secret file: %w", tenant, ref, err)
	}
	return nil
}
