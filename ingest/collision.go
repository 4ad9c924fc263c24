package ingest

import (
	"container/list"
	"crypto/sha256"
)

// collisionCache remembers, for recently seen hashed subjects, which docKey
// owned each. Both are stored as SHA-256 digests so an entry costs the same
// whatever the lengths, and the cache evicts least recently seen subjects
// beyond its size: a collision whose first key was evicted goes unnoticed,
// and the later key becomes the owner. It is not safe for concurrent use;
// the consume callback, which sees messages in stream order, owns it.
type collisionCache struct {
	size  int
	order *list.List // of *collisionEntry, most recent first
	bySub map[[sha256.Size]byte]*list.Element
}

type collisionEntry struct {
	subject [sha256.Size]byte
	docKey  [sha256.Size]byte
}

func newCollisionCache(size int) *collisionCache {
	return &collisionCache{size: size, order: list.New(), bySub: make(map[[sha256.Size]byte]*list.Element)}
}

// observe records docKey as seen on subject and reports whether subject was
// last owned by a different docKey. The owner does not change on a
// collision: the first key keeps the subject, so under the fail policy it is
// always the later key's tasks that are dead-lettered.
func (c *collisionCache) observe(subject, docKey string) (collided bool) {
	sub := sha256.Sum256([]byte(subject))
	key := sha256.Sum256([]byte(docKey))
	if el, ok := c.bySub[sub]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*collisionEntry).docKey != key
	}
	c.bySub[sub] = c.order.PushFront(&collisionEntry{subject: sub, docKey: key})
	if c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.bySub, oldest.Value.(*collisionEntry).subject)
	}
	return false
}
