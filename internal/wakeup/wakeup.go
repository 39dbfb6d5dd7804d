// Package wakeup owns how producers tell relays that messages were
// committed: the LISTEN/NOTIFY channel, the notification payload, and the
// rate limiter that decides which enqueues notify. Package outbox sends
// notifications, package relay receives them and memstore imitates them;
// all three take the format from here.
//
// A payload names one (scope, lane, target) and the producer's follow-up
// interval: the producer may leave enqueues that commit within that interval
// after a notification without one of their own, so a woken relay claims
// once more that long after the wake-up.
package wakeup

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// Channel is the channel enqueues notify and relays LISTEN on. The LISTEN
// statement in queries/notify.sql names it too.
const Channel = "pgoutbox"

// sep separates the parts of a key and a payload: the unit separator, a
// control character that no scope, lane or target may contain.
const sep = "\x1f"

// Key identifies one (scope, lane, target).
func Key(scope, lane, target string) string {
	return scope + sep + lane + sep + target
}

// Payload is the notification payload for key from a producer whose
// follow-up interval is followUp.
func Payload(key string, followUp time.Duration) string {
	return key + sep + strconv.FormatInt(followUp.Microseconds(), 10)
}

// Parse reads a payload. Producers before the follow-up interval was carried
// sent the key alone; their follow-up was legacyFollowUp.
func Parse(payload string) (key string, followUp time.Duration, ok bool) {
	parts := strings.Split(payload, sep)
	switch len(parts) {
	case 3:
		return payload, legacyFollowUp, true
	case 4:
		micros, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || micros < 0 {
			return "", 0, false
		}
		return strings.Join(parts[:3], sep), time.Duration(micros) * time.Microsecond, true
	}
	return "", 0, false
}

// legacyFollowUp is what relays did after a wake-up before producers said
// their interval: claim again 20 ms later.
const legacyFollowUp = 20 * time.Millisecond

// Limiter decides which enqueues carry a NOTIFY. Every notifying transaction
// holds a database-wide lock from its commit until its WAL is flushed, so
// notifying commits run one at a time (BENCHMARKS.md, "Figures behind design
// choices"). One notification per interval wakes an idle relay just as well,
// provided every enqueue that skipped its own notification commits before
// the relay's follow-up to the last one.
//
// That holds only for enqueues that commit when their statement ends (a store
// on a pool): the limiter counts a notification when its statement has
// returned, i.e. committed, never when it is merely sent, and an enqueue that
// skipped its notification but ended too long after the last committed one
// asks for a notification of its own (Covered). An enqueue inside a caller's
// transaction commits at a time its statement does not tell: the store
// learns it by asking the server afterwards (see Pending), or, when it
// cannot, notifies from inside the transaction (Postgres sends one
// notification per transaction and payload).
type Limiter struct {
	interval time.Duration
	now      func() time.Time
	mu       sync.Mutex
	last     map[string]time.Time // when the last notification for a key committed
}

// maxKeys bounds the limiter's memory with many scopes.
const maxKeys = 4096

// NewLimiter returns a limiter that lets one notification per key commit
// per interval (0: every enqueue notifies), reading time from now.
func NewLimiter(interval time.Duration, now func() time.Time) *Limiter {
	return &Limiter{interval: max(interval, 0), now: now, last: map[string]time.Time{}}
}

// Interval is the follow-up interval relays are told about.
func (l *Limiter) Interval() time.Duration { return l.interval }

// Allow reports whether an enqueue for key that commits when its statement
// ends should notify: no notification for key committed within the interval.
func (l *Limiter) Allow(key string) bool {
	if l.interval <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.last[key]
	return !ok || now.Sub(t) >= l.interval
}

// Committed records that a notification for key has committed.
func (l *Limiter) Committed(key string) {
	if l.interval <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) >= maxKeys {
		for k, t := range l.last {
			if now.Sub(t) >= l.interval {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxKeys {
			clear(l.last) // forgetting costs at most one extra notification per key
		}
	}
	l.last[key] = now
}

// Covered reports whether an enqueue for key that committed just now without
// a notification of its own will be seen by the relays' follow-up to the
// last notification that committed. Relays follow up one interval after
// they receive a notification; half an interval of margin covers the time
// between a commit and the producer seeing its statement return.
func (l *Limiter) Covered(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.last[key]
	return ok && now.Sub(t) <= l.interval/2
}
