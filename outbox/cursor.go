package outbox

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/keywalk"
)

// A claim reads the due index of its (scope, lane, target) from the oldest
// entry. Every claimed message leaves a dead entry at the head of that index
// until VACUUM removes it, so while a relay drains a backlog each claim
// rereads everything claimed before it (BENCHMARKS.md, "Figures behind
// design choices", has what that cost).
//
// claimCursors remembers where the last full batch ended, and the next claim
// starts there. Messages that become due behind the cursor (a retry, a
// transaction that committed late with an early timestamp, rows another
// claimer locked and let go) are found by a full scan, which runs whenever a
// cursor claim comes back short (the backlog is drained) and at least every
// cursorRescan while one lasts. A full scan that finds only such stragglers
// (its batch ends behind the cursor) is followed by another full scan, not by
// the cursor, until the stragglers are gone: they wait at most cursorRescan
// to be found and then go out at the full claim rate. Claims of fewer than
// cursorMinLimit messages neither use nor set a cursor.
type claimCursors struct {
	now func() time.Time // the store's clock, for rescans
	mu  sync.Mutex
	m   map[string]claimCursor
}

type claimCursor struct {
	// The unkeyed cursor.
	at       time.Time // available_at of the last message of the last full batch
	id       int64
	scanned  time.Time // when the last full scan that reached the cursor ran
	hasFirst bool
	// The keyed cursors: the last ordering key each claimer (ConsumerID)
	// served. A claimer's walk starts at the next key, so keys are served
	// round robin.
	keys keywalk.Places
	// sample holds keys served lately on this lane and target, by any
	// claimer, for walks that jump (see crowded).
	sample []string
}

// Each claimer keeps its own place in the keys. Claimers sharing one place
// would start their walks together, and each would read, and try to lock,
// the heads the others are claiming. Claimers with places of their own still
// trail one another: each starts where the one before it is still working,
// walks over that one's heads and takes the ones after them, and the next
// does the same to it. A walk that passes more than one head held by another
// claimer for every two it takes (crowded) therefore sends its claimer to a
// random key served lately on the lane and target, so that concurrent
// claimers spread over the keys and each walks keys of its own. A lone
// claimer is never crowded and keeps strict turns; crowded claimers take
// turns only on average.
const (
	sampleKeys     = 64 // keys a cursor remembers for jumps
	samplePerClaim = 4  // keys a claim adds to the sample
)

// keyWalk is what a claim statement's walk of the ordering keys saw: the
// heads it took, and how many heads that looked claimable it passed on the
// way because other claimers held them. Keyed heads taken again after their
// lease expired were not found by the walk, and do not count.
type keyWalk struct {
	heads   int
	skipped int64
}

// add counts a row of a claim or lock statement by its skipped column: -1
// on rows the key walk did not take, else the held heads the walk passed
// before the row.
func (w *keyWalk) add(skipped int64) {
	if skipped < 0 {
		return
	}
	w.heads++
	w.skipped = max(w.skipped, skipped)
}

// crowded reports whether the walk passed more than one held head for every
// two it took.
func (w keyWalk) crowded() bool {
	return w.heads > 0 && 2*w.skipped > int64(w.heads)
}

// cursorStart is where one claim statement starts: unkeyed due messages
// after (at, id), keyed heads after key.
type cursorStart struct {
	at         time.Time
	id         int64
	key        string
	fromCursor bool // (at, id) is a cursor, not the start of time
}

// rescan is s with the unkeyed scan from the start.
func (s cursorStart) rescan() cursorStart {
	s.at, s.id = scanFromStart()
	s.fromCursor = false
	return s
}

func newClaimCursors(now func() time.Time) *claimCursors {
	return &claimCursors{now: now, m: map[string]claimCursor{}}
}

const (
	// cursorMinLimit: claims smaller than this always scan from the start.
	// Small batches gain little from a cursor, and this keeps their order
	// exactly oldest first (which the model test checks against memstore).
	cursorMinLimit = 32
	cursorRescan   = time.Second
	maxCursorKeys  = 4096
	noCursorID     = 0
	cursorStartsAt = -4000 // a year before any timestamptz we store
)

// scanFromStart is the bound of a full scan: before every message.
func scanFromStart() (time.Time, int64) {
	return time.Date(cursorStartsAt, 1, 1, 0, 0, 0, 0, time.UTC), noCursorID
}

// start returns where claimer's next claim of limit messages should start.
func (c *claimCursors) start(key, claimer string, limit int) cursorStart {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.m[key]
	s := cursorStart{key: cur.keys.Get(claimer)}
	if !cur.hasFirst || limit < cursorMinLimit || c.now().Sub(cur.scanned) >= cursorRescan {
		s.at, s.id = scanFromStart()
		return s
	}
	s.at, s.id, s.fromCursor = cur.at, cur.id, true
	return s
}

// record updates the cursors after claimer's claim of limit messages that
// started at from and got claimed (keys are their ids), walking the keys as
// walk says.
func (c *claimCursors) record(key, claimer string, from cursorStart, limit int, claimed []Message, keys []int64, walk keyWalk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, had := c.m[key]
	served := make([]string, 0, len(claimed))
	for _, m := range claimed {
		if m.OrderingKey != "" {
			served = append(served, m.OrderingKey)
		}
	}
	next := keywalk.Next(from.key, served)
	if walk.crowded() && len(cur.sample) > 0 {
		next = cur.sample[rand.IntN(len(cur.sample))]
	}
	cur.sample = addToSample(cur.sample, served)
	cur.keys.Set(claimer, next)
	var unkeyed []int
	for i, m := range claimed {
		if m.OrderingKey == "" {
			unkeyed = append(unkeyed, i)
		}
	}
	if len(unkeyed) < limit || limit < cursorMinLimit {
		// Caught up: the next claim scans from the start.
		cur.at, cur.id, cur.hasFirst, cur.scanned = time.Time{}, 0, false, time.Time{}
	} else {
		old := cur
		for _, i := range unkeyed {
			if !cur.hasFirst || after(claimed[i].AvailableAt, keys[i], cur.at, cur.id) {
				cur.at, cur.id, cur.hasFirst = claimed[i].AvailableAt, keys[i], true
			}
		}
		// A full scan counts as the rescan only when it reached the
		// cursor: one whose whole batch lay behind it took stragglers, and
		// more may wait.
		if !from.fromCursor && (!had || !old.hasFirst || after(cur.at, cur.id, old.at, old.id)) {
			cur.scanned = c.now()
		}
	}
	if !had && len(c.m) >= maxCursorKeys {
		for k, v := range c.m {
			if v.keys.Len() == 0 && c.now().Sub(v.scanned) >= cursorRescan {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCursorKeys {
			clear(c.m) // forgetting a cursor costs one full scan, or one lap of keys out of turn
		}
	}
	if cur.keys.Len() == 0 && !cur.hasFirst {
		delete(c.m, key)
		return
	}
	c.m[key] = cur
}

// addToSample adds up to samplePerClaim of served, spread over it, to
// sample, which holds at most sampleKeys keys (a full one replaces keys at
// random).
func addToSample(sample, served []string) []string {
	if len(served) == 0 {
		return sample
	}
	step := max(len(served)/samplePerClaim, 1)
	for i := 0; i < len(served); i += step {
		if len(sample) < sampleKeys {
			sample = append(sample, served[i])
		} else {
			sample[rand.IntN(sampleKeys)] = served[i]
		}
	}
	return sample
}

// after reports whether (at, id) comes after (refAt, refID) in claim order.
func after(at time.Time, id int64, refAt time.Time, refID int64) bool {
	return at.After(refAt) || (at.Equal(refAt) && id > refID)
}

// sortClaimed restores claim order (available_at, then id) after a cursor
// claim was topped up by a full scan.
func sortClaimed(ms []Message, keys []int64) {
	idx := make([]int, len(ms))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := ms[a].AvailableAt.Compare(ms[b].AvailableAt); c != 0 {
			return c
		}
		return cmp.Compare(keys[a], keys[b])
	})
	sorted, sortedKeys := make([]Message, len(ms)), make([]int64, len(ms))
	for i, j := range idx {
		sorted[i], sortedKeys[i] = ms[j], keys[j]
	}
	copy(ms, sorted)
	copy(keys, sortedKeys)
}
