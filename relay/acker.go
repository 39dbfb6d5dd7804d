package relay

import (
	"context"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// acker holds successful deliveries until they are acked: by the next claim
// (which acks them in its own statement), or, when the relay is not
// claiming, by a statement of their own once AckBatchSize of them wait or
// the oldest has waited AckInterval.
type acker struct {
	s       *session
	mu      sync.Mutex
	pending []outbox.Receipt
	closed  bool
	kick    chan struct{} // pending grew (coalesced)
	stop    chan struct{}
}

func newAcker(s *session) *acker {
	return &acker{s: s, kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

// add queues a receipt. After close (a handler that outlived the drain) the
// receipt is dropped and the message returns after its lease.
func (a *acker) add(rc outbox.Receipt) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.s.r.metrics.add(a.s.base, a.s.r.metrics.lost, 1)
		return
	}
	a.pending = append(a.pending, rc)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// take removes up to n pending receipts, oldest first.
func (a *acker) take(n int) []outbox.Receipt {
	a.mu.Lock()
	defer a.mu.Unlock()
	n = min(n, len(a.pending))
	if n == 0 {
		return nil
	}
	out := make([]outbox.Receipt, n)
	copy(out, a.pending)
	a.pending = append(a.pending[:0], a.pending[n:]...)
	return out
}

// giveBack returns receipts a failed claim could not ack.
func (a *acker) giveBack(rcs []outbox.Receipt) {
	if len(rcs) == 0 {
		return
	}
	a.mu.Lock()
	a.pending = append(rcs, a.pending...)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *acker) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// close stops accepting receipts; run flushes what is left and returns.
func (a *acker) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.closed = true
		close(a.stop)
	}
}

func (a *acker) run() {
	cfg := a.s.r.cfg
	for {
		select {
		case <-a.kick:
		case <-a.stop:
			for batch := a.take(cfg.AckBatchSize); len(batch) > 0; batch = a.take(cfg.AckBatchSize) {
				a.flush(batch)
			}
			return
		}
		// Give the claim loop time to take these with its next claim, or
		// the batch time to fill.
		size, wait := a.limits()
		timer := time.NewTimer(wait)
	wait:
		for a.waiting() > 0 && a.waiting() < size {
			select {
			case <-timer.C:
				break wait
			case <-a.kick:
			case <-a.stop:
				break wait
			}
		}
		timer.Stop()
		if batch := a.take(cfg.AckBatchSize); len(batch) > 0 {
			a.flush(batch)
		}
		if a.waiting() > 0 {
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}
	}
}

// limits returns how many receipts may wait, and for how long, before the
// acker flushes them with a statement of its own.
//
// While the claim loop works through a backlog it claims again as soon as
// handlers free a quarter of its slots, and each claim carries every receipt
// waiting at that moment. A flush of the acker's own would then only add a
// statement and a commit: measured on a 200k-message burn-down, 38% of the
// acks went that way and the relay drained at 0.7x the rate of its own
// statements issued bare. So during a backlog the acker ignores the batch
// size and waits up to ten intervals (at most a quarter of the lease), which
// still bounds how long a success goes unacked should claims stall.
func (a *acker) limits() (int, time.Duration) {
	cfg := a.s.r.cfg
	if !a.s.claimBacklog.Load() {
		return cfg.AckBatchSize, cfg.AckInterval
	}
	return outbox.MaxBatch, max(cfg.AckInterval, min(10*cfg.AckInterval, cfg.Lease/4))
}

// ackAttempts is how often a batch is tried before its messages are left to
// lease expiry (and delivered again).
const ackAttempts = 3

func (a *acker) flush(batch []outbox.Receipt) {
	r := a.s.r
	var (
		held []bool
		err  error
	)
	for attempt := 1; attempt <= ackAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(a.s.base, a.s.r.cfg.StatementTimeout)
		held, err = r.store.AckMany(ctx, batch)
		cancel()
		if err == nil {
			break
		}
		r.cfg.Logger.Warn("relay: ack failed", "messages", len(batch), "attempt", attempt, "error", err)
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
	if err != nil {
		r.cfg.Logger.Error("relay: acks lost; these messages will be delivered again after their lease",
			"messages", len(batch), "error", err)
		r.metrics.add(a.s.base, r.metrics.lost, len(batch))
		return
	}
	a.s.countAcks(held)
}
