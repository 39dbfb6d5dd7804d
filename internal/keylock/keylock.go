// Package keylock names the transaction-scoped advisory locks the store takes
// on keys (dedupe keys of a batch, ordering keys) and the one order they are
// taken in. Two transactions that lock overlapping sets of keys, each in
// ascending lock-id order, cannot wait on each other in a cycle.
package keylock

import (
	"hash/fnv"
	"slices"
)

// Kinds of key; part of the hash, so a dedupe key and an ordering key with
// the same text do not share a lock.
const (
	Dedupe   = "dedupe"
	Ordering = "ordering"
)

// ID is the advisory lock id (pg_advisory_xact_lock's bigint) of a key of
// kind in one scope, lane and target: FNV-1a over the parts, joined by the
// unit separator. Every process computes the same id for the same key.
// Unrelated keys may share an id (one in 2^64); they then only wait for
// each other.
func ID(kind, scope, lane, target, key string) int64 {
	h := fnv.New64a()
	for i, part := range []string{"pgoutbox", kind, scope, lane, target, key} {
		if i > 0 {
			_, _ = h.Write([]byte{0x1f})
		}
		_, _ = h.Write([]byte(part))
	}
	return int64(h.Sum64()) //nolint:gosec // a lock id is any bigint; wrapping is fine
}

// Ordered returns ids sorted ascending without repeats: the order in which
// a statement must take them.
func Ordered(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
