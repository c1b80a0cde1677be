package domain

import "sync"

// boundedMap is a map safe for concurrent use that holds at most max
// entries: adding to a full one forgets an entry, any one. It caches
// things that can always be read again from the store.
type boundedMap[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func newBoundedMap[K comparable, V any](max int) *boundedMap[K, V] {
	return &boundedMap[K, V]{m: map[K]V{}, max: max}
}

func (b *boundedMap[K, V]) get(k K) (V, bool) {
	b.mu.RLock()
	v, ok := b.m[k]
	b.mu.RUnlock()
	return v, ok
}

func (b *boundedMap[K, V]) put(k K, v V) { b.putIf(k, v, nil) }

// putIf is put, done only if ok (called with the map locked, so that a
// writer's later forget or put cannot come between ok and the put)
// reports true. A nil ok is always true.
func (b *boundedMap[K, V]) putIf(k K, v V, ok func() bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok != nil && !ok() {
		return
	}
	if _, ok := b.m[k]; !ok && len(b.m) >= b.max {
		for old := range b.m { // map order is random enough
			delete(b.m, old)
			break
		}
	}
	b.m[k] = v
}

func (b *boundedMap[K, V]) forget(k K) {
	b.mu.Lock()
	delete(b.m, k)
	b.mu.Unlock()
}
