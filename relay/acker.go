package relay

import (
	"context"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// acker collects successful deliveries and acks them in batches: one
// statement per AckBatchSize successes or per AckInterval, whichever comes
// first.
type acker struct {
	s      *session
	in     chan outbox.Receipt
	mu     sync.RWMutex // add holds it shared, close exclusively
	closed bool
}

func newAcker(s *session) *acker {
	return &acker{s: s, in: make(chan outbox.Receipt, 4*s.r.cfg.AckBatchSize)}
}

// add queues a receipt. After close (a handler that outlived the drain) the
// receipt is dropped and the message returns after its lease.
func (a *acker) add(rc outbox.Receipt) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.s.r.metrics.add(a.s.base, a.s.r.metrics.lost, 1)
		return
	}
	a.in <- rc
}

// close stops accepting receipts; run flushes what it has and returns.
func (a *acker) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.closed = true
		close(a.in)
	}
}

func (a *acker) run() {
	cfg := a.s.r.cfg
	batch := make([]outbox.Receipt, 0, cfg.AckBatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case rc, ok := <-a.in:
			if !ok {
				a.flush(batch)
				return
			}
			batch = append(batch, rc)
			if len(batch) == 1 {
				timer.Reset(cfg.AckInterval)
			}
			if len(batch) < cfg.AckBatchSize {
				continue
			}
		case <-timer.C:
		}
		timer.Stop()
		a.flush(batch)
		batch = batch[:0]
	}
}

// ackAttempts is how often a batch is tried before its messages are left to
// lease expiry (and delivered again).
const ackAttempts = 3

func (a *acker) flush(batch []outbox.Receipt) {
	if len(batch) == 0 {
		return
	}
	r := a.s.r
	var (
		held []bool
		err  error
	)
	for attempt := 1; attempt <= ackAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(a.s.base, writeTimeout)
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
	acked := 0
	for _, ok := range held {
		if ok {
			acked++
		}
	}
	r.metrics.add(a.s.base, r.metrics.acked, acked)
	if lost := len(batch) - acked; lost > 0 {
		r.cfg.Logger.Warn("relay: acks found the claims lost; another consumer has these messages", "messages", lost)
		r.metrics.add(a.s.base, r.metrics.lost, lost)
	}
}
