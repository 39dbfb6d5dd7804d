package wakeup

import (
	"sync"
	"time"
)

// Transaction statuses as Postgres's pg_xact_status reports them; ""
// stands for NULL (the id is too old for the server to know).
const (
	StatusCommitted  = "committed"
	StatusAborted    = "aborted"
	StatusInProgress = "in progress"
)

// MaxPending is how long an enqueue in a caller's transaction waits, at
// most, to be seen committing. After that its transaction is forgotten and
// relays find the message at their next poll.
const MaxPending = time.Hour

// Pending holds the enqueues that ran in callers' transactions and have not
// been seen to commit yet: for each transaction id, the keys whose relays
// its commit must wake. A NOTIFY sent inside a caller's transaction would
// make its commit wait for every other notifying commit (see Limiter); the
// store sends the notification itself once the transaction has committed,
// from a goroutine that runs while anything is pending (Add tells its caller
// when to start one).
type Pending struct {
	mu      sync.Mutex
	xacts   map[int64]*pendingXact
	running bool
}

type pendingXact struct {
	keys  map[string]struct{}
	since time.Time
}

// NewPending returns an empty set.
func NewPending() *Pending { return &Pending{xacts: map[int64]*pendingXact{}} }

// Add records that transaction xact enqueued for key at now. It reports
// whether the caller must start the goroutine that watches the set: true
// when none runs (the last one ended when the set emptied).
func (p *Pending) Add(xact int64, key string, now time.Time) (start bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	x := p.xacts[xact]
	if x == nil {
		x = &pendingXact{keys: map[string]struct{}{}, since: now}
		p.xacts[xact] = x
	}
	x.keys[key] = struct{}{}
	start = !p.running
	p.running = true
	return start
}

// Xacts returns the transaction ids waiting to be seen committing.
func (p *Pending) Xacts() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int64, 0, len(p.xacts))
	for x := range p.xacts {
		out = append(out, x)
	}
	return out
}

// Oldest returns how long the longest-waiting transaction has been pending
// at now (0 when none is).
func (p *Pending) Oldest(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var oldest time.Duration
	for _, x := range p.xacts {
		oldest = max(oldest, now.Sub(x.since))
	}
	return oldest
}

// Drop forgets every pending transaction, for a watcher that gives up (its
// pool closed, or the server has not answered for long); relays find their
// messages at their poll. The watching goroutine must end; the next Add
// starts another.
func (p *Pending) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.xacts)
	p.running = false
}

// Resolve applies the statuses read for some of the pending transactions
// (nil when the read failed): a committed one's keys are returned, to be
// notified, each once; a committed, aborted or forgotten one leaves the
// set; one still in progress stays, unless it has waited MaxPending. done
// reports that the set is empty and the watching goroutine must end; the
// next Add starts another.
func (p *Pending) Resolve(statuses map[int64]string, now time.Time) (wake []string, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for xact, x := range p.xacts {
		status, known := statuses[xact]
		switch {
		case known && status == StatusCommitted:
			for k := range x.keys {
				if !seen[k] {
					seen[k] = true
					wake = append(wake, k)
				}
			}
			delete(p.xacts, xact)
		case known && status != StatusInProgress, now.Sub(x.since) >= MaxPending:
			delete(p.xacts, xact)
		}
	}
	if len(p.xacts) == 0 {
		p.running = false
		return wake, true
	}
	return wake, false
}
