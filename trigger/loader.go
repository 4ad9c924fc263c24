package trigger

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/triggerflow/triggerflow/internal/suggest"
)

// MaxFileBytes bounds one trigger file; a larger file is almost certainly not
// a trigger file and would only make the loader slow.
const MaxFileBytes = 8 << 20

// File is the shape of a trigger file. Tenant and RetryPolicy are defaults
// for the triggers in the file; a trigger's own fields win.
type File struct {
	Tenant      string       `json:"tenant,omitempty" yaml:"tenant,omitempty"`
	RetryPolicy *RetryPolicy `json:"retryPolicy,omitempty" yaml:"retryPolicy,omitempty"`
	Triggers    []*Trigger   `json:"triggers" yaml:"triggers"`
}

// LoadTriggers loads path, a trigger file or a directory of them, and
// validates the whole set with v (nil means any tenant, default limits). It
// returns every problem at once in a *ValidationError and no triggers when
// there is any.
func LoadTriggers(path string, v *Validator) ([]*Trigger, error) {
	ts, ps, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	return finish(ts, ps, v)
}

// LoadTriggersFromFile loads and validates one YAML or JSON trigger file.
func LoadTriggersFromFile(path string, v *Validator) ([]*Trigger, error) {
	var ps problems
	ts := parseFile(path, &ps)
	return finish(ts, ps, v)
}

// LoadTriggersFromDir loads every *.yaml, *.yml and *.json file below dir,
// in lexical order, skipping names that start with '.', and validates them
// as one set: duplicate ids across files are errors too.
func LoadTriggersFromDir(dir string, v *Validator) ([]*Trigger, error) {
	ts, ps, err := parseDir(dir)
	if err != nil {
		return nil, err
	}
	return finish(ts, ps, v)
}

// TenantSets is a load validated tenant by tenant: a problem keeps only
// its own tenant's triggers out.
type TenantSets struct {
	// Triggers holds the triggers of every tenant without a problem.
	Triggers map[string][]*Trigger
	// Failed holds every tenant with a problem, with all of its problems.
	// A problem of a file fails every tenant with a trigger in that file.
	Failed map[string]*ValidationError
	// Unattributed lists the problems of files too broken to name a
	// tenant (unreadable, not YAML); nil when there are none. Whoever
	// knows which tenants those files held before decides for them.
	Unattributed *ValidationError
}

// Err returns every problem of the load, or nil.
func (s *TenantSets) Err() error {
	var ps problems
	for _, t := range slices.Sorted(maps.Keys(s.Failed)) {
		ps = append(ps, s.Failed[t].Problems...)
	}
	if s.Unattributed != nil {
		ps = append(ps, s.Unattributed.Problems...)
	}
	if len(ps) == 0 {
		return nil
	}
	sortProblems(ps)
	return ps.err()
}

// LoadByTenant loads path like LoadTriggers, but validates each tenant's
// triggers as a set of its own (v scopes the tenants; nil accepts any).
// The error is for a path that cannot be read at all.
func LoadByTenant(path string, v *Validator) (*TenantSets, error) {
	ts, ps, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	return groupByTenant(ts, ps, v)
}

// GroupByTenant validates ts tenant by tenant (v nil accepts any tenant).
func GroupByTenant(ts []*Trigger, v *Validator) (*TenantSets, error) {
	return groupByTenant(ts, nil, v)
}

func groupByTenant(ts []*Trigger, parsed problems, v *Validator) (*TenantSets, error) {
	if v == nil {
		var err error
		if v, err = NewValidator("", Limits{}, nil); err != nil {
			return nil, err
		}
	}
	byTenant := make(map[string][]*Trigger)
	fileTenants := make(map[string]map[string]bool)
	for i, t := range ts {
		if t == nil {
			parsed.add(Problem{Reason: fmt.Sprintf("trigger #%d is nil", i)})
			continue
		}
		byTenant[t.Tenant] = append(byTenant[t.Tenant], t)
		file, _ := splitLine(t.Source)
		if fileTenants[file] == nil {
			fileTenants[file] = make(map[string]bool)
		}
		fileTenants[file][t.Tenant] = true
	}
	out := &TenantSets{Triggers: make(map[string][]*Trigger), Failed: make(map[string]*ValidationError)}
	perTenant := make(map[string]problems)
	var unattributed problems
	for _, p := range parsed {
		file, _ := splitLine(p.File)
		owners := fileTenants[file]
		if len(owners) == 0 {
			unattributed.add(p)
			continue
		}
		for t := range owners {
			q := p
			if len(owners) == 1 {
				q.Tenant = t
			}
			perTenant[t] = append(perTenant[t], q)
		}
	}
	for tenant, group := range byTenant {
		ps := perTenant[tenant]
		// Validation reports a field that failed to parse a second time
		// as "is required"; finish leaves those out.
		if _, err := finish(group, ps, v); err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				return nil, err
			}
			for i := range ve.Problems {
				ve.Problems[i].Tenant = tenant
			}
			out.Failed[tenant] = ve
			continue
		}
		out.Triggers[tenant] = group
	}
	if len(unattributed) > 0 {
		sortProblems(unattributed)
		out.Unattributed = &ValidationError{Problems: unattributed}
	}
	return out, nil
}

// parsePath parses a trigger file or every trigger file below a directory.
func parsePath(path string) ([]*Trigger, problems, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidTriggers, err)
	}
	if st.IsDir() {
		return parseDir(path)
	}
	var ps problems
	return parseFile(path, &ps), ps, nil
}

func parseDir(dir string) ([]*Trigger, problems, error) {
	var ps problems
	var ts []*Trigger
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			ps.add(Problem{File: p, Reason: err.Error()})
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			found = true
			ts = append(ts, parseFile(p, &ps)...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidTriggers, err)
	}
	if !found && len(ps) == 0 {
		ps.add(Problem{File: dir, Reason: "holds no .yaml, .yml or .json trigger files"})
	}
	return ts, ps, nil
}

func finish(ts []*Trigger, ps problems, v *Validator) ([]*Trigger, error) {
	if v == nil {
		var err error
		if v, err = NewValidator("", Limits{}, nil); err != nil {
			return nil, err
		}
	}
	if _, err := v.Validate(ts); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		// A field that failed to parse is left zero; do not report it a
		// second time as "is required".
		parsed := make(map[string]bool, len(ps))
		for _, p := range ps {
			parsed[p.TriggerID+"\x00"+p.Field] = true
		}
		for _, p := range ve.Problems {
			if !parsed[p.TriggerID+"\x00"+p.Field] {
				ps.add(p)
			}
		}
	}
	if err := ps.err(); err != nil {
		sortProblems(ps)
		return nil, err
	}
	return ts, nil
}

// sortProblems orders problems by file and line so a report reads top to
// bottom like the files it describes.
func sortProblems(ps problems) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		af, al := splitLine(a.File)
		bf, bl := splitLine(b.File)
		if c := strings.Compare(af, bf); c != 0 {
			return c
		}
		return al - bl
	})
}

// FileOf returns the file of a location as Trigger.Source and
// Problem.File give it: the path without its ":line".
func FileOf(location string) string {
	file, _ := splitLine(location)
	return file
}

func splitLine(file string) (string, int) {
	i := strings.LastIndexByte(file, ':')
	if i < 0 {
		return file, 0
	}
	n, err := strconv.Atoi(file[i+1:])
	if err != nil {
		return file, 0
	}
	return file[:i], n
}

// parseFile reads one file, reporting problems instead of stopping at the
// first, and applies the file-level defaults.
func parseFile(path string, ps *problems) []*Trigger {
	data, err := os.ReadFile(path)
	if err != nil {
		ps.add(Problem{File: path, Reason: err.Error()})
		return nil
	}
	if len(data) > MaxFileBytes {
		ps.add(Problem{File: path, Reason: fmt.Sprintf("is %d bytes, larger than the %d byte limit", len(data), MaxFileBytes)})
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		ps.add(Problem{File: path, Reason: "is empty"})
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		ps.add(Problem{File: path, Reason: "cannot be parsed: " + strings.TrimPrefix(err.Error(), "yaml: ")})
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		ps.add(Problem{File: at(path, root), Reason: "must be a mapping with a triggers list (and optional tenant and retryPolicy)"})
		return nil
	}

	p := fileParser{path: path, ps: ps}
	var f File
	var triggersNode *yaml.Node
	p.fields(root, "", "", fileFields, func(key string, val *yaml.Node) {
		switch key {
		case "tenant":
			p.decode(val, "", "tenant", &f.Tenant)
		case "retryPolicy":
			f.RetryPolicy = p.retryPolicy(val, "", "retryPolicy")
		case "triggers":
			triggersNode = val
		}
	})
	if triggersNode == nil {
		ps.add(Problem{File: path, Field: "triggers", Reason: "is missing"})
		return nil
	}
	if triggersNode.Kind != yaml.SequenceNode {
		ps.add(Problem{File: at(path, triggersNode), Field: "triggers", Reason: "must be a list"})
		return nil
	}
	out := make([]*Trigger, 0, len(triggersNode.Content))
	for i, n := range triggersNode.Content {
		t := p.trigger(n, i)
		if t == nil {
			continue
		}
		t.Tenant = cmp.Or(t.Tenant, f.Tenant)
		if f.RetryPolicy != nil {
			merged := t.RetryPolicy.Merge(*f.RetryPolicy)
			t.RetryPolicy = &merged
		}
		out = append(out, t)
	}
	return out
}

var (
	fileFields    = yamlKeys(reflect.TypeFor[File]())
	triggerFields = yamlKeys(reflect.TypeFor[Trigger]())
	retryFields   = yamlKeys(reflect.TypeFor[RetryPolicy]())
)

type fileParser struct {
	path string
	ps   *problems
}

func (p fileParser) trigger(n *yaml.Node, index int) *Trigger {
	if n.Kind != yaml.MappingNode {
		p.ps.add(Problem{File: at(p.path, n), Field: fmt.Sprintf("triggers[%d]", index), Reason: "must be a mapping"})
		return nil
	}
	id := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "triggerId" && n.Content[i+1].Kind == yaml.ScalarNode {
			id = n.Content[i+1].Value
		}
	}
	if id == "" {
		id = fmt.Sprintf("#%d", index+1)
	}
	t := &Trigger{Source: at(p.path, n)}
	p.fields(n, id, "", triggerFields, func(key string, val *yaml.Node) {
		switch key {
		case "retryPolicy":
			t.RetryPolicy = p.retryPolicy(val, id, "retryPolicy")
		case "timeout":
			if p.decode(val, id, key, &t.Timeout) && t.Timeout == 0 {
				p.ps.add(Problem{File: at(p.path, val), TriggerID: id, Field: key, Value: val.Value, Reason: "must be positive; omit it to use the worker default"})
			}
		default:
			f := reflect.ValueOf(t).Elem().FieldByIndex(triggerFields[key])
			p.decode(val, id, key, f.Addr().Interface())
		}
	})
	return t
}

func (p fileParser) retryPolicy(n *yaml.Node, id, field string) *RetryPolicy {
	if n.Kind != yaml.MappingNode {
		p.ps.add(Problem{File: at(p.path, n), TriggerID: id, Field: field, Reason: "must be a mapping of maxAttempts, initialBackoff, maxBackoff, multiplier"})
		return nil
	}
	rp := &RetryPolicy{}
	p.fields(n, id, field+".", retryFields, func(key string, val *yaml.Node) {
		f := reflect.ValueOf(rp).Elem().FieldByIndex(retryFields[key])
		if !p.decode(val, id, field+"."+key, f.Addr().Interface()) {
			return
		}
		// Zero means "unset" in the struct, so an explicit zero would
		// silently become the default; refuse it instead.
		if f.IsZero() {
			p.ps.add(Problem{File: at(p.path, val), TriggerID: id, Field: field + "." + key, Value: val.Value, Reason: "must be positive; omit it to use the default"})
		}
	})
	return rp
}

// fields walks a mapping, reporting unknown and duplicate keys, and calls fn
// for each known one.
func (p fileParser) fields(n *yaml.Node, id, prefix string, known map[string][]int, fn func(key string, val *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		if _, ok := known[key]; !ok {
			reason := "is not a known field"
			if s := suggest.Closest(key, slices.Collect(maps.Keys(known))); s != "" {
				reason += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.ps.add(Problem{File: at(p.path, k), TriggerID: id, Field: prefix + key, Reason: reason})
			continue
		}
		if seen[key] {
			p.ps.add(Problem{File: at(p.path, k), TriggerID: id, Field: prefix + key, Reason: "is set twice"})
			continue
		}
		seen[key] = true
		fn(key, val)
	}
}

func (p fileParser) decode(n *yaml.Node, id, field string, dst any) bool {
	if err := n.Decode(dst); err != nil {
		msg := err.Error()
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = "has the wrong type"
		}
		p.ps.add(Problem{File: at(p.path, n), TriggerID: id, Field: field, Reason: strings.TrimPrefix(msg, "yaml: ")})
		return false
	}
	return true
}

func at(path string, n *yaml.Node) string {
	if n == nil || n.Line == 0 {
		return path
	}
	return fmt.Sprintf("%s:%d", path, n.Line)
}

// yamlKeys maps yaml key names to field indexes, skipping "-".
func yamlKeys(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = f.Index
	}
	return m
}
