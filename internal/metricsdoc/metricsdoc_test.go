package metricsdoc_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	metricsDoc = "../../docs/metrics.md"
	dashboard  = "../../deploy/grafana/dashboards/triggerflow.json"
)

// documented is one row of a metric table in docs/metrics.md.
type documented struct {
	Name, Type, Binary string
	Labels             []string
	Line               int
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	metricName = regexp.MustCompile(`\btriggerflow_[a-zA-Z0-9_]+`)
)

// readDoc parses the metric tables of docs/metrics.md: rows
//
//	| `name` | type | `label`, `label` | meaning |
//
// under a "## " heading that names the binary in backticks, or under
// "## Every binary". It also returns
// every triggerflow_ name mentioned anywhere, with its line.
func readDoc(t *testing.T) (rows map[string]documented, mentions map[string]int) {
	t.Helper()
	f, err := os.Open(metricsDoc)
	require.NoError(t, err)
	defer f.Close()
	rows, mentions = map[string]documented{}, map[string]int{}
	binary := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		for _, name := range metricName.FindAllString(line, -1) {
			if _, seen := mentions[name]; !seen {
				mentions[name] = n
			}
		}
		if h, ok := strings.CutPrefix(line, "## "); ok {
			binary = ""
			for _, b := range []string{binWatcher, binIngest, binWorker} {
				if strings.Contains(h, "`"+b+"`") {
					binary = b
				}
			}
			if strings.EqualFold(h, binEvery) {
				binary = binEvery
			}
			continue
		}
		if !strings.HasPrefix(line, "| `triggerflow_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		require.GreaterOrEqual(t, len(cells), 4, "%s:%d: a metric row has the columns metric, type, labels, meaning", metricsDoc, n)
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		var labels []string
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			labels = append(labels, m[1])
		}
		sort.Strings(labels)
		_, dup := rows[name]
		require.False(t, dup, "%s:%d: %s is documented twice", metricsDoc, n, name)
		require.NotEmpty(t, binary, "%s:%d: %s is not under a heading naming its binary", metricsDoc, n, name)
		rows[name] = documented{Name: name, Type: strings.TrimSpace(cells[1]), Binary: binary, Labels: labels, Line: n}
	}
	require.NoError(t, sc.Err())
	return rows, mentions
}

// TestDocsListEveryMetric fails on an undocumented metric, a documented
// ghost, or a row whose binary, type or labels differ from what the
// binaries register.
func TestDocsListEveryMetric(t *testing.T) {
	reg := registeredMetrics(t)
	rows, mentions := readDoc(t)

	var problems []string
	for _, name := range sortedNames(reg) {
		m := reg[name]
		d, ok := rows[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s (%s, labels %v, exposed by %s) is registered but not documented", name, m.Type, m.Labels, m.Binary))
			continue
		}
		where := fmt.Sprintf("%s:%d: %s", metricsDoc, d.Line, name)
		if d.Binary != m.Binary {
			problems = append(problems, fmt.Sprintf("%s is documented under %s but exposed by %s", where, d.Binary, m.Binary))
		}
		if d.Type != m.Type {
			problems = append(problems, fmt.Sprintf("%s is documented as a %s but is a %s", where, d.Type, m.Type))
		}
		if !slices.Equal(d.Labels, m.Labels) {
			problems = append(problems, fmt.Sprintf("%s is documented with labels %v but has %v", where, d.Labels, m.Labels))
		}
	}
	for _, name := range sortedNames(rows) {
		if _, ok := reg[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s:%d: %s is documented but no binary registers it", metricsDoc, rows[name].Line, name))
		}
	}
	for _, name := range sortedNames(mentions) {
		if _, ok := series(reg, name); !ok {
			problems = append(problems, fmt.Sprintf("%s:%d: %s is mentioned but is not a registered metric or one of its series", metricsDoc, mentions[name], name))
		}
	}
	failIf(t, problems, "docs/metrics.md is out of step with the code")
}

// series resolves a name used in PromQL to its metric family: the family
// itself, or a histogram's _bucket, _sum or _count series.
func series(reg map[string]metric, name string) (metric, bool) {
	if m, ok := reg[name]; ok {
		return m, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if m, ok := reg[base]; ok && (m.Type == "histogram" || m.Type == "summary" && suffix != "_bucket") {
				return m, true
			}
		}
	}
	return metric{}, false
}

// TestMetricLabelsAreBounded keeps the labelling rule: every series is
// per tenant, and no label can take one value per document or event.
func TestMetricLabelsAreBounded(t *testing.T) {
	reg := registeredMetrics(t)
	// Process-wide series that no tenant owns; a new metric without a
	// tenant label must be argued for here and in docs/metrics.md.
	withoutTenant := map[string]bool{
		"triggerflow_publisher_pending":      true, // one window shared by every tenant engine of the process
		"triggerflow_ingest_lane_depth":      true, // lanes are shared by every tenant
		"triggerflow_ingest_takeovers_total": true, // the consumer and its pin are shared by every tenant
		"triggerflow_build_info":             true, // names the process's build, whatever its tenants
		"triggerflow_images_bucket_bytes":    true, // the buckets hold every tenant's images
	}
	forbidden := []string{"doc_key", "dockey", "event_id", "eventid", "position", "subject", "url", "workflow_id"}
	var problems []string
	for _, name := range sortedNames(reg) {
		m := reg[name]
		if !slices.Contains(m.Labels, "tenant") && !withoutTenant[name] {
			problems = append(problems, fmt.Sprintf("%s has no tenant label (labels %v)", name, m.Labels))
		}
		for _, l := range m.Labels {
			if slices.Contains(forbidden, strings.ToLower(l)) {
				problems = append(problems, fmt.Sprintf("%s has the unbounded label %q", name, l))
			}
		}
	}
	for name := range withoutTenant {
		if m, ok := reg[name]; ok && slices.Contains(m.Labels, "tenant") {
			problems = append(problems, fmt.Sprintf("%s has a tenant label now; drop it from the exceptions", name))
		}
	}
	failIf(t, problems, "metric labels break the labelling rule")
}

// grafanaDashboard is the part of the dashboard model the test reads.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string         `json:"name"`
			Definition string         `json:"definition"`
			Datasource *grafanaSource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *grafanaSource  `json:"datasource"`
	Targets    []grafanaTarget `json:"targets"`
	Panels     []grafanaPanel  `json:"panels"` // a collapsed row's panels
}

type grafanaSource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaTarget struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *grafanaSource `json:"datasource"`
}

// selector matches a metric name with its label matchers, e.g.
// triggerflow_x_total{subject_hashed="true", tenant=~"$tenant"}.
var selector = regexp.MustCompile(`\b(triggerflow_[a-zA-Z0-9_]+)\s*\{([^}]*)\}`)

// matcherLabel is the label name of one matcher.
var matcherLabel = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)

// TestDashboardUsesRealMetrics fails when the Grafana dashboard does not
// parse, queries a metric (or a label of it) that no binary registers, or
// points at another data source than the provisioned one.
func TestDashboardUsesRealMetrics(t *testing.T) {
	reg := registeredMetrics(t)
	data, err := os.ReadFile(dashboard)
	require.NoError(t, err)
	var d grafanaDashboard
	require.NoError(t, json.Unmarshal(data, &d), "the dashboard must be valid JSON")
	require.Equal(t, "triggerflow", d.UID)
	require.NotEmpty(t, d.Title)
	require.GreaterOrEqual(t, d.SchemaVersion, 36, "schemaVersion")

	var panels []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)

	var problems []string
	for _, v := range d.Templating.List {
		if v.Datasource != nil && v.Datasource.UID != "prometheus" {
			problems = append(problems, fmt.Sprintf("variable %q uses data source %q", v.Name, v.Datasource.UID))
		}
		for _, name := range metricName.FindAllString(v.Definition, -1) {
			if _, ok := series(reg, name); !ok {
				problems = append(problems, fmt.Sprintf("variable %q queries %s, which no binary registers", v.Name, name))
			}
		}
	}
	ids := map[int]string{}
	used := map[string]bool{}
	queries := 0
	for _, p := range panels {
		if prev, dup := ids[p.ID]; dup {
			problems = append(problems, fmt.Sprintf("panels %q and %q share id %d", prev, p.Title, p.ID))
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			problems = append(problems, fmt.Sprintf("panel %d has no title", p.ID))
		}
		if p.Datasource == nil || p.Datasource.UID != "prometheus" {
			problems = append(problems, fmt.Sprintf("panel %q does not use the data source with uid \"prometheus\"", p.Title))
		}
		if len(p.Targets) == 0 {
			problems = append(problems, fmt.Sprintf("panel %q has no query", p.Title))
		}
		for _, q := range p.Targets {
			queries++
			if q.Datasource != nil && q.Datasource.UID != "prometheus" {
				problems = append(problems, fmt.Sprintf("panel %q query %s uses data source %q", p.Title, q.RefID, q.Datasource.UID))
			}
			if strings.TrimSpace(q.Expr) == "" {
				problems = append(problems, fmt.Sprintf("panel %q query %s is empty", p.Title, q.RefID))
			}
			for _, name := range metricName.FindAllString(q.Expr, -1) {
				m, ok := series(reg, name)
				if !ok {
					problems = append(problems, fmt.Sprintf("panel %q queries %s, which no binary registers", p.Title, name))
					continue
				}
				used[m.Name] = true
			}
			for _, sel := range selector.FindAllStringSubmatch(q.Expr, -1) {
				m, ok := series(reg, sel[1])
				if !ok {
					continue // reported above
				}
				for matcher := range strings.SplitSeq(sel[2], ",") {
					l := matcherLabel.FindStringSubmatch(matcher)
					if l == nil {
						continue
					}
					if l[1] == "le" && m.Type == "histogram" {
						continue
					}
					if !slices.Contains(m.Labels, l[1]) {
						problems = append(problems, fmt.Sprintf("panel %q filters %s on label %q, which it does not have (labels %v)", p.Title, sel[1], l[1], m.Labels))
					}
				}
			}
		}
	}
	require.Positive(t, queries)
	failIf(t, problems, "deploy/grafana/dashboards/triggerflow.json is out of step with the code")
	t.Logf("the dashboard charts %d of %d metrics; not charted: %v", len(used), len(reg), unused(reg, used))
}

func unused(reg map[string]metric, used map[string]bool) []string {
	var out []string
	for _, name := range sortedNames(reg) {
		if !used[name] {
			out = append(out, name)
		}
	}
	return out
}

// failIf fails the test with every problem on its own line.
func failIf(t *testing.T, problems []string, what string) {
	t.Helper()
	if len(problems) > 0 {
		require.FailNow(t, what, "%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// citation is "`pkg` / `TestA`, `TestB/sub`" in the docs.
var (
	citation = regexp.MustCompile("`([a-z][a-z0-9_/]*)` / ((?:`Test[^`]*`(?:, )?)+)")
	testRef  = regexp.MustCompile("`(Test[^`]*)`")
)

// TestCitedTestsExist keeps the docs honest about their evidence: every
// test that docs/guarantees.md (or another page) names as proof exists in
// the package it names, sub-tests included.
func TestCitedTestsExist(t *testing.T) {
	var problems []string
	cited := 0
	for _, doc := range []string{"guarantees.md", "metrics.md", "operations.md", "migration.md", "receivers.md", "triggers.md"} {
		data, err := os.ReadFile("../../docs/" + doc)
		require.NoError(t, err)
		for _, c := range citation.FindAllStringSubmatch(string(data), -1) {
			pkg := c[1]
			src := packageTestSource(t, "../../"+pkg)
			if src == "" {
				problems = append(problems, fmt.Sprintf("%s cites package %s, which has no tests", doc, pkg))
				continue
			}
			for _, ref := range testRef.FindAllStringSubmatch(c[2], -1) {
				cited++
				name, sub, _ := strings.Cut(ref[1], "/")
				if !strings.Contains(src, "func "+name+"(") {
					problems = append(problems, fmt.Sprintf("%s cites %s / %s, which does not exist", doc, pkg, name))
					continue
				}
				if sub == "" {
					continue
				}
				first, _, _ := strings.Cut(sub, "/")
				if !strings.Contains(src, `"`+first) && !strings.Contains(src, `"`+strings.ReplaceAll(first, "_", " ")) {
					problems = append(problems, fmt.Sprintf("%s cites %s / %s, whose sub-test %q is not in the package", doc, pkg, ref[1], first))
				}
			}
		}
	}
	require.Positive(t, cited)
	failIf(t, problems, "the docs cite tests that do not exist")
}

// packageTestSource concatenates a package directory's _test.go files.
func packageTestSource(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	require.NoError(t, err)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		b.Write(data)
	}
	return b.String()
}
