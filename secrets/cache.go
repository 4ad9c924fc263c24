package secrets

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/triggerflow/triggerflow/signature"
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	// TTL is how long a resolved list is reused; a rotation takes effect
	// within it. Defaults to 30s.
	TTL time.Duration
	// MaxEntries bounds the cache; when full, expired entries are dropped
	// and, if none, the whole cache is. Defaults to 1024.
	MaxEntries int
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c CacheConfig) WithDefaults() CacheConfig {
	if c.TTL <= 0 {
		c.TTL = 30 * time.Second
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 1024
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Cache remembers successful lookups of another Manager for a TTL, so a
// burst of deliveries does not hit the backend once each. Failures are not
// cached: a secret added to fix them is seen on the next attempt.
type Cache struct {
	next Manager
	cfg  CacheConfig

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct{ tenant, ref string }

type cacheEntry struct {
	list    []signature.Secret
	expires time.Time
}

var _ Manager = (*Cache)(nil)

// NewCache wraps next.
func NewCache(next Manager, cfg CacheConfig) *Cache {
	return &Cache{next: next, cfg: cfg.WithDefaults(), entries: map[cacheKey]cacheEntry{}}
}

// Resolve returns the cached list or asks the wrapped Manager.
func (c *Cache) Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error) {
	k := cacheKey{tenant, ref}
	now := c.cfg.Now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return slices.Clone(e.list), nil
	}
	list, err := c.next.Resolve(ctx, tenant, ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.cfg.MaxEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.cfg.MaxEntries {
			clear(c.entries)
		}
	}
	c.entries[k] = cacheEntry{list: slices.Clone(list), expires: now.Add(c.cfg.TTL)}
	return list, nil
}
