// Package tenantlabel bounds the number of tenant label values a process
// exports. Every per-tenant metric multiplies its series by the number of
// tenants; a watcher serving thousands of tenants would otherwise export
// series by the hundred thousand. A Guard hands out the first Max tenants
// it sees under their own names and folds the rest into Other. Logs, audit
// records and dead letters always name the tenant; only metrics fold.
package tenantlabel

import (
	"cmp"
	"sync"
)

// Other is the label value of tenants past a Guard's limit.
const Other = "_other"

// DefaultMax is the number of tenants a Guard names when Max is 0.
const DefaultMax = 100

// Guard maps tenants to label values. The zero value is not usable; a nil
// *Guard names every tenant (one-tenant processes and tests).
type Guard struct {
	max  int
	mu   sync.Mutex
	seen map[string]struct{}
}

// New returns a guard naming at most max tenants (0 means DefaultMax, a
// negative value means no limit).
func New(max int) *Guard {
	max = cmp.Or(max, DefaultMax)
	return &Guard{max: max, seen: make(map[string]struct{})}
}

// Label returns tenant while it is one of the first Max tenants seen, else
// Other.
func (g *Guard) Label(tenant string) string {
	if g == nil || g.max < 0 {
		return tenant
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.seen[tenant]; ok {
		return tenant
	}
	if len(g.seen) >= g.max {
		return Other
	}
	g.seen[tenant] = struct{}{}
	return tenant
}
