package outbox

import (
	"cmp"
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
	// The keyed cursor: the last ordering key served. Claims walk the keys
	// from the next one on, so keys are served round robin.
	key string
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

// start returns where the next claim of limit messages should start.
func (c *claimCursors) start(key string, limit int) cursorStart {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.m[key]
	s := cursorStart{key: cur.key}
	if !cur.hasFirst || limit < cursorMinLimit || c.now().Sub(cur.scanned) >= cursorRescan {
		s.at, s.id = scanFromStart()
		return s
	}
	s.at, s.id, s.fromCursor = cur.at, cur.id, true
	return s
}

// record updates the cursors after a claim of limit messages that started at
// from and got claimed (keys are their ids).
func (c *claimCursors) record(key string, from cursorStart, limit int, claimed []Message, keys []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, had := c.m[key]
	served := make([]string, len(claimed))
	for i, m := range claimed {
		served[i] = m.OrderingKey
	}
	cur.key = keywalk.Next(from.key, served)
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
			if v.key == "" && c.now().Sub(v.scanned) >= cursorRescan {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCursorKeys {
			clear(c.m) // forgetting a cursor costs one full scan, or one lap of keys out of turn
		}
	}
	if cur.key == "" && !cur.hasFirst {
		delete(c.m, key)
		return
	}
	c.m[key] = cur
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
