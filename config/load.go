package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/triggerflow/triggerflow/internal/suggest"
	"github.com/triggerflow/triggerflow/trigger"
)

// File is a configuration file type: one per binary.
type File[T any] interface {
	WatcherFile | IngestFile | WorkerFile
	WithDefaults() T
	Validate() error
}

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "TRIGGERFLOW_"

// Load reads the configuration file at path, applies environment
// overrides from the process environment, fills defaults and validates
// the result. An empty path means no file: defaults and environment only.
//
// A problem with the contents is returned as FieldErrors holding every
// problem found; a file that cannot be read is returned as the wrapped
// *fs.PathError.
func Load[T File[T]](path string) (*T, error) {
	var data []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		data = b
	}
	return Parse[T](path, data, os.LookupEnv)
}

// Parse is Load with the file's contents and the environment supplied by
// the caller; name is used in error messages only. lookupEnv may be nil
// to ignore the environment. The steps are:
//
//  1. Decode data as YAML into the zero T. Keys are case-sensitive
//     lowerCamelCase; an unknown or repeated key is an error.
//  2. Override every key whose variable is set in the environment. The
//     variable is EnvName of the key's path; lists are comma-separated.
//  3. Fill zero values with defaults (T.WithDefaults). A key set to its
//     type's zero value therefore means the default.
//  4. Validate (T.Validate).
//
// Variables that start with EnvPrefix but name no key are ignored rather
// than rejected, because one environment often serves several binaries
// whose files have different keys.
func Parse[T File[T]](name string, data []byte, lookupEnv func(string) (string, bool)) (*T, error) {
	var f T
	var p problems
	origins := map[string]origin{}
	root := reflect.ValueOf(&f).Elem()

	decodeYAML(data, root, &p, origins)
	if lookupEnv != nil {
		applyEnv(root, lookupEnv, &p, origins)
	}
	f = f.WithDefaults()
	if err := f.Validate(); err != nil {
		var fe FieldErrors
		if !errors.As(err, &fe) {
			return nil, err
		}
		// A value that failed to decode was left at its default, so a
		// complaint about it would only repeat the decoding error.
		reported := map[string]bool{}
		for _, e := range p.errs {
			reported[e.Field] = true
		}
		for _, e := range fe {
			if reported[e.Field] {
				continue
			}
			// Validation sees only values; point at where each came from.
			if o, ok := origins[e.Field]; ok {
				e.Line, e.Env = o.line, o.env
			}
			p.errs = append(p.errs, e)
		}
	}
	for _, e := range p.errs {
		e.File = name
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return &f, nil
}

// LoadWatcher is Load for the watcher binary.
func LoadWatcher(path string) (*WatcherFile, error) { return Load[WatcherFile](path) }

// LoadIngest is Load for the ingest binary.
func LoadIngest(path string) (*IngestFile, error) { return Load[IngestFile](path) }

// LoadWorker is Load for the worker binary.
func LoadWorker(path string) (*WorkerFile, error) { return Load[WorkerFile](path) }

// Redacted replaces secret values in Dump's output.
const Redacted = "REDACTED"

// Dump renders f as YAML, for --print-config. Secrets (passwords, tokens,
// API keys, the Postgres DSN, encryption keys) are replaced by Redacted,
// so the output is safe to paste into a bug report but must not be loaded
// as is.
func Dump[T File[T]](f *T) ([]byte, error) {
	c := *f // shallow: strings and lists are replaced, never changed in place
	rv := reflect.ValueOf(&c).Elem()
	for _, k := range keysOf(rv.Type()) {
		v := rv.FieldByIndex(k.index)
		switch {
		case !k.secret:
		case v.Kind() == reflect.String && v.String() != "":
			v.SetString(Redacted)
		case v.Kind() == reflect.Slice && v.Len() > 0:
			// A new list: the copy shares the original's elements.
			red := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := range v.Len() {
				red.Index(i).SetString(Redacted)
			}
			v.Set(red)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("config: dump: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: dump: %w", err)
	}
	return buf.Bytes(), nil
}

// EnvName returns the environment variable that overrides the key at the
// YAML path: EnvPrefix followed by the path's segments in UPPER_SNAKE_CASE
// joined by '_'. For example "worker.retry.maxAttempts" becomes
// "TRIGGERFLOW_WORKER_RETRY_MAX_ATTEMPTS". A list index is dropped.
func EnvName(path string) string {
	var b strings.Builder
	b.WriteString(EnvPrefix)
	for i, seg := range strings.Split(path, ".") {
		if i > 0 {
			b.WriteByte('_')
		}
		seg, _, _ = strings.Cut(seg, "[")
		r := []rune(seg)
		for j, c := range r {
			if j > 0 && unicode.IsUpper(c) &&
				(!unicode.IsUpper(r[j-1]) || j+1 < len(r) && unicode.IsLower(r[j+1])) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToUpper(c))
		}
	}
	return b.String()
}

// origin is where a value came from, for error messages.
type origin struct {
	line int
	env  string
}

// key is one leaf of a configuration file: a value that a YAML scalar or
// list, or one environment variable, sets.
type key struct {
	path   string
	env    string
	typ    reflect.Type
	index  []int
	secret bool
}

var durationType = reflect.TypeFor[trigger.Duration]()

// keysOf lists the leaves of the struct type t in field order.
func keysOf(t reflect.Type) []key {
	var out []key
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "-" {
				continue
			}
			path := joinPath(prefix, name)
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, path, idx)
				continue
			}
			out = append(out, key{path: path, env: EnvName(path), typ: f.Type, index: idx, secret: f.Tag.Get("secret") == "true"})
		}
	}
	walk(t, "", nil)
	return out
}

// yamlName panics on a field without a yaml tag: Go's default name would
// not be lowerCamelCase, and the tests walk every file type.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" || !f.IsExported() {
		panic(fmt.Sprintf("config: field %s has no yaml name", f.Name))
	}
	return name
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// applyEnv overrides each key whose variable is set.
func applyEnv(root reflect.Value, lookup func(string) (string, bool), p *problems, origins map[string]origin) {
	for _, k := range keysOf(root.Type()) {
		raw, ok := lookup(k.env)
		if !ok {
			continue
		}
		if k.typ.Kind() != reflect.Slice && strings.TrimSpace(raw) == "" {
			// As in the file, empty means the default; a deployment
			// template that always sets the variable must not break.
			continue
		}
		v := root.FieldByIndex(k.index)
		fail := func(path, value string, err error) {
			fe := &FieldError{Env: k.env, Field: path, Value: value, Reason: err.Error()}
			if k.secret {
				fe.Value = nil
			}
			p.errs = append(p.errs, fe)
		}
		if k.typ.Kind() == reflect.Slice {
			// An empty variable is an empty list, so that a default list
			// can be cleared from the environment.
			var parts []string
			if strings.TrimSpace(raw) != "" {
				parts = strings.Split(raw, ",")
			}
			list := reflect.MakeSlice(k.typ, len(parts), len(parts))
			ok := true
			for i, part := range parts {
				part = strings.TrimSpace(part)
				if err := setScalar(list.Index(i), part); err != nil {
					fail(indexPath(k.path, i), part, err)
					ok = false
				}
				origins[indexPath(k.path, i)] = origin{env: k.env}
			}
			if ok {
				v.Set(list)
			}
		} else if err := setScalar(v, raw); err != nil {
			fail(k.path, raw, err)
			continue
		}
		origins[k.path] = origin{env: k.env}
	}
}

// setScalar sets v from the text of a YAML scalar or environment variable.
// Its errors are phrased to follow the value in a FieldError.
func setScalar(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := trigger.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			if x, perr := time.ParseDuration(strings.TrimSpace(s)); perr == nil && x < 0 {
				return errors.New("must not be negative")
			}
			return errors.New(`is not a duration like "500ms", "1s" or "5m"`)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return errors.New("is not true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		// Base 10 only: base 0 would read "010" as octal 8.
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("is out of range")
		} else if err != nil {
			return errors.New("is not an integer")
		}
		v.SetInt(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), v.Type().Bits())
		if err != nil {
			return errors.New("is not a number")
		}
		v.SetFloat(n)
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		if err := setScalar(e.Elem(), s); err != nil {
			return err
		}
		v.Set(e)
	default:
		return fmt.Errorf("has type %s, which configuration files cannot hold", v.Type())
	}
	return nil
}

// typeName names what a key holds, for "want a ..." messages.
func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Struct:
		return "mapping"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.String()
}

var syntaxLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// decodeYAML walks the YAML node tree itself instead of calling
// yaml.Decoder.Decode with KnownFields(true). That decoder stops at the
// first error from a custom unmarshaler (every bad duration) and drops
// its line; its type errors carry a line but no key path. Walking the
// tree reports every problem with both, and shares setScalar with the
// environment overrides so the two accept the same values.
func decodeYAML(data []byte, root reflect.Value, p *problems, origins map[string]origin) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) { // EOF: empty or comments only
			p.errs = append(p.errs, syntaxError(err))
		}
		return
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errs = append(p.errs, &FieldError{Line: extra.Line, Reason: "starts a second YAML document; a configuration file holds one"})
	case !errors.Is(err, io.EOF):
		p.errs = append(p.errs, syntaxError(err))
	}
	if len(doc.Content) == 0 {
		return
	}
	w := walker{p: p, origins: origins}
	w.value(doc.Content[0], root, "")
}

func syntaxError(err error) *FieldError {
	m := syntaxLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &FieldError{Reason: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	return &FieldError{Line: line, Reason: "invalid YAML: " + m[2]}
}

type walker struct {
	p       *problems
	origins map[string]origin
}

func (w *walker) fail(n *yaml.Node, path string, value any, format string, args ...any) {
	w.p.errs = append(w.p.errs, &FieldError{Line: n.Line, Field: path, Value: value, Reason: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "scalar"
}

// value sets v from n. A null leaves v alone, so "key:" with nothing after
// it means the default, as an absent key does.
func (w *walker) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	t := v.Type()
	switch {
	case t.Kind() == reflect.Struct && t != durationType:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, nil, "must be a mapping of keys, not a %s", kindName(n))
			return
		}
		w.mapping(n, v, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, nil, "must be a %s, not a %s", typeName(t), kindName(n))
			return
		}
		list := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := indexPath(path, i)
			w.origins[ip] = origin{line: item.Line}
			w.value(item, list.Index(i), ip)
		}
		v.Set(list)
	default:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, nil, "must be a %s, not a %s", typeName(t), kindName(n))
			return
		}
		if err := setScalar(v, n.Value); err != nil {
			w.fail(n, path, n.Value, "%s", err)
		}
	}
}

func (w *walker) mapping(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	fields := map[string]int{}
	for i := range t.NumField() {
		fields[yamlName(t.Field(i))] = i
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		child := joinPath(path, k.Value)
		if k.ShortTag() == "!!merge" {
			w.fail(k, joinPath(path, "<<"), nil, "merge keys are not supported; alias the whole mapping instead")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k, child, nil, "is set twice; first on line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			w.fail(k, child, nil, "%s", unknownKey(k.Value, fields))
			continue
		}
		w.origins[child] = origin{line: k.Line}
		w.value(val, v.Field(idx), child)
	}
}

// unknownKey suggests the key a typo or another naming style meant. A key
// that differs only in style ("max_age" for "maxAge") is surely that key,
// so the suggestion stands alone; a near miss by edit distance may be wrong,
// so the known keys follow it.
func unknownKey(name string, fields map[string]int) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	known := slices.Sorted(maps.Keys(fields))
	for _, k := range known {
		if norm(k) == norm(name) {
			return fmt.Sprintf("is not a known key; did you mean %q?", k)
		}
	}
	list := "known keys here: " + strings.Join(known, ", ")
	if s := suggest.Closest(name, known); s != "" {
		return fmt.Sprintf("is not a known key; did you mean %q? %s", s, list)
	}
	return "is not a known key; " + list
}
