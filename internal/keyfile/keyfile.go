// Package keyfile parses the key lists Triggerflow's key files and
// configuration values hold: entries "id=<base64 key>" separated by
// newlines, spaces or commas, '#' starting a comment that runs to the end
// of the line. The history codec's AES keys (package codec) and the task
// signing keys (package tasksig) are written this way.
package keyfile

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MaxIDLength bounds a key id; ids travel with what the key signs or
// encrypts.
const MaxIDLength = 64

// Entry is one key of a list.
type Entry struct {
	ID  string
	Key []byte
}

// CheckID reports whether id can name a key: 1 to MaxIDLength letters,
// digits, '.', '_' or '-'.
func CheckID(id string) error {
	if id == "" {
		return errors.New("a key id is empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("key id %q is %d bytes long, the limit is %d", id, len(id), MaxIDLength)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("key id %q contains %q: use letters, digits, '.', '_' and '-'", id, c)
		}
	}
	return nil
}

// Format is the entry of a key: "id=<base64>".
func Format(id string, key []byte) string {
	return id + "=" + base64.StdEncoding.EncodeToString(key)
}

// Parse parses a key list whose keys are size bytes long; wrongSize
// explains, after "key "id" is N bytes long", what a key must be (e.g.
// "AES-256 needs 32"). Standard and URL-safe base64 are accepted, with or
// without padding. Order is kept; an entry repeated is kept once, but one
// id with two different keys is an error. Errors name the line, entry and
// key id, never key material.
func Parse(data []byte, size int, wrongSize string) ([]Entry, error) {
	var out []Entry
	line := 0
	for raw := range bytes.SplitSeq(data, []byte("\n")) {
		line++
		if i := bytes.IndexByte(raw, '#'); i >= 0 {
			raw = raw[:i] // '#' is in no base64 alphabet
		}
		entry := 0
		for _, tok := range strings.FieldsFunc(string(raw), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
		}) {
			entry++
			e, err := parseEntry(tok, size, wrongSize)
			if err == nil {
				out, err = Add(out, e)
			}
			if err != nil {
				return nil, fmt.Errorf("line %d, entry %d: %w", line, entry, err)
			}
		}
	}
	return out, nil
}

// parseEntry names the key id in its errors only once the entry is
// known to be "id=<base64>": a key pasted without its id, or with the id
// misspelt, must not end up in a log.
func parseEntry(tok string, size int, wrongSize string) (Entry, error) {
	id, enc, ok := strings.Cut(tok, "=")
	if !ok || enc == "" {
		return Entry{}, errors.New(`is not "id=<base64 key>"`)
	}
	if CheckID(id) != nil {
		return Entry{}, fmt.Errorf(`has no valid key id before '=': use 1 to %d letters, digits, '.', '_' and '-'`, MaxIDLength)
	}
	key, err := decodeBase64(enc)
	if err != nil {
		return Entry{}, errors.New(`is not "id=<base64 key>": the key is not base64`)
	}
	if len(key) != size {
		return Entry{}, fmt.Errorf("key %q is %d bytes long; %s", id, len(key), wrongSize)
	}
	return Entry{ID: id, Key: key}, nil
}

func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// Add appends e unless list holds its id: the same key again is dropped,
// another key under the id is an error.
func Add(list []Entry, e Entry) ([]Entry, error) {
	for _, x := range list {
		if x.ID == e.ID {
			if !bytes.Equal(x.Key, e.Key) {
				return list, fmt.Errorf("key %q is given twice with different keys", e.ID)
			}
			return list, nil
		}
	}
	return append(list, e), nil
}
