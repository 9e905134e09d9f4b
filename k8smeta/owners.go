package k8smeta

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// ownerKey names a pod's controller. The UID tells a ReplicaSet from a
// later one of the same name.
type ownerKey struct {
	Kind, Namespace, Name string
	UID                   types.UID
}

func keyOf(namespace string, ref metav1.OwnerReference) ownerKey {
	return ownerKey{Kind: ref.Kind, Namespace: namespace, Name: ref.Name, UID: ref.UID}
}

func ownerResource(kind string) schema.GroupResource {
	if kind == KindJob {
		return schema.GroupResource{Group: "batch", Resource: "jobs"}
	}
	return schema.GroupResource{Group: "apps", Resource: "replicasets"}
}

// ownerCache holds, per ReplicaSet or Job of this node's pods, the name of
// its Deployment or CronJob once looked up. Entries live while a pod
// refers to them.
type ownerCache struct {
	mu      sync.Mutex
	entries map[ownerKey]*ownerEntry
}

type ownerEntry struct {
	parent   string
	resolved bool
}

func newOwnerCache() *ownerCache {
	return &ownerCache{entries: map[ownerKey]*ownerEntry{}}
}

// want registers k and reports whether it needs a lookup (it is new).
func (c *ownerCache) want(k ownerKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; ok {
		return false
	}
	c.entries[k] = &ownerEntry{}
	return true
}

// set records a lookup's answer; it reports whether it changed anything.
func (c *ownerCache) set(k ownerKey, parent string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		// Collected while the lookup ran: no pod refers to it any more.
		return false
	}
	changed := !e.resolved || e.parent != parent
	e.parent, e.resolved = parent, true
	return changed
}

// parent is k's resolved controller name if it is of kind, else "".
func (c *ownerCache) parent(k ownerKey, _ string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		return e.parent
	}
	return ""
}

// keep drops the entries whose owner UID is not in live.
func (c *ownerCache) keep(live map[types.UID]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if !live[k.UID] {
			delete(c.entries, k)
		}
	}
}

func (c *ownerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
