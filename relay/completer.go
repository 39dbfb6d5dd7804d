package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// completer writes the outcomes of claim-mode deliveries. Successes wait to
// be acked: by the next claim (which acks them in its own statement), or,
// when the relay is not claiming, by a statement of their own once
// AckBatchSize of them wait or the oldest has waited AckInterval. Failures
// are nacked or dead-lettered at once.
type completer struct {
	cfg     *Config
	store   Store
	metrics *metrics
	waiter  *waiter
	base    context.Context
	backlog *atomic.Bool // the claim loop is draining a backlog

	mu      sync.Mutex
	pending []pendingAck
	closed  bool
	kick    chan struct{} // pending grew (coalesced)
	stop    chan struct{}
	stopped chan struct{}
}

func newCompleter(base context.Context, cfg *Config, store Store, m *metrics, w *waiter, backlog *atomic.Bool) *completer {
	return &completer{cfg: cfg, store: store, metrics: m, waiter: w, base: base, backlog: backlog,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
}

// pendingAck is a success waiting to be acked.
type pendingAck struct {
	receipt outbox.Receipt
	// keyed: the message has an ordering key, whose next message can be
	// handed out once this ack commits.
	keyed bool
}

// ackBatch is a batch of successes taken for one statement.
type ackBatch []pendingAck

func (b ackBatch) receipts() []outbox.Receipt {
	if len(b) == 0 {
		return nil
	}
	out := make([]outbox.Receipt, len(b))
	for i, p := range b {
		out[i] = p.receipt
	}
	return out
}

// ackedKeyed reports whether an ack of the batch that held finished a keyed
// message.
func (b ackBatch) ackedKeyed(held []bool) bool {
	for i, p := range b {
		if p.keyed && i < len(held) && held[i] {
			return true
		}
	}
	return false
}

// ack queues a success. After close (a handler that outlived the drain) the
// success is dropped and the message returns after its lease.
func (a *completer) ack(m outbox.Message) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.metrics.add(a.base, a.metrics.lost, 1)
		return
	}
	a.pending = append(a.pending, pendingAck{receipt: m.Receipt(), keyed: m.OrderingKey != ""})
	a.mu.Unlock()
	a.poke()
}

func (a *completer) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// take removes up to n pending successes, oldest first.
func (a *completer) take(n int) ackBatch {
	a.mu.Lock()
	defer a.mu.Unlock()
	n = min(n, len(a.pending))
	if n == 0 {
		return nil
	}
	out := make(ackBatch, n)
	copy(out, a.pending)
	a.pending = append(a.pending[:0], a.pending[n:]...)
	return out
}

// giveBack returns successes a failed claim could not ack.
func (a *completer) giveBack(b ackBatch) {
	if len(b) == 0 {
		return
	}
	a.mu.Lock()
	a.pending = append(b, a.pending...)
	a.mu.Unlock()
	a.poke()
}

func (a *completer) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// close stops accepting successes, flushes what is left and returns when
// done.
func (a *completer) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.stop)
	}
	a.mu.Unlock()
	<-a.stopped
}

func (a *completer) run() {
	defer close(a.stopped)
	for {
		select {
		case <-a.kick:
		case <-a.stop:
			for batch := a.take(a.cfg.AckBatchSize); len(batch) > 0; batch = a.take(a.cfg.AckBatchSize) {
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
		if batch := a.take(a.cfg.AckBatchSize); len(batch) > 0 {
			a.flush(batch)
		}
		if a.waiting() > 0 {
			a.poke()
		}
	}
}

// limits returns how many successes may wait, and for how long, before the
// completer acks them with a statement of its own.
//
// While the claim loop works through a backlog it claims again as soon as
// handlers free a quarter of its slots, and each claim carries every receipt
// waiting at that moment. A flush of the completer's own would then only add
// a statement and a commit (BENCHMARKS.md, "Figures behind design choices",
// has how many acks went that way before this rule). So during a backlog the
// completer ignores the batch size and waits up to ten intervals (at most a
// quarter of the lease), which still bounds how long a success goes unacked
// should claims stall.
func (a *completer) limits() (int, time.Duration) {
	if !a.backlog.Load() {
		return a.cfg.AckBatchSize, a.cfg.AckInterval
	}
	return outbox.MaxBatch, max(a.cfg.AckInterval, min(10*a.cfg.AckInterval, a.cfg.Lease/4))
}

// ackAttempts is how often a batch is tried before its messages are left to
// lease expiry (and delivered again).
const ackAttempts = 3

func (a *completer) flush(batch ackBatch) {
	var (
		held []bool
		err  error
	)
	receipts := batch.receipts()
	for attempt := 1; attempt <= ackAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(a.base, a.cfg.StatementTimeout)
		held, err = a.store.AckMany(ctx, receipts)
		cancel()
		if err == nil {
			break
		}
		a.cfg.Logger.Warn("relay: ack failed", "messages", len(batch), "attempt", attempt, "error", err)
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
	if err != nil {
		a.cfg.Logger.Error("relay: acks lost; these messages will be delivered again after their lease",
			"messages", len(batch), "error", err)
		a.metrics.add(a.base, a.metrics.lost, len(batch))
		return
	}
	a.count(held)
	if batch.ackedKeyed(held) {
		a.waiter.kick()
	}
}

// count records the outcome of acks: true acked, false found the claim lost
// (another consumer has the message).
func (a *completer) count(held []bool) {
	acked := 0
	for _, ok := range held {
		if ok {
			acked++
		}
	}
	a.metrics.add(a.base, a.metrics.acked, acked)
	if lost := len(held) - acked; lost > 0 {
		a.cfg.Logger.Warn("relay: acks found the claims lost; another consumer has these messages", "messages", lost)
		a.metrics.add(a.base, a.metrics.lost, lost)
	}
}

// nack gives a failed message back for a retry after res.retryAfter.
func (a *completer) nack(m outbox.Message, res result) {
	ctx, cancel := context.WithTimeout(a.base, a.cfg.StatementTimeout)
	defer cancel()
	outcome, err := a.store.NackAfter(ctx, m.ID, m.ClaimToken, res.err.Error(), res.retryAfter)
	switch {
	case err != nil:
		a.cfg.Logger.Error("relay: nack failed; the message returns after its lease", "id", m.ID, "error", err)
	case outcome == outbox.NackRequeued:
		a.metrics.add(ctx, a.metrics.nacked, 1)
		a.waiter.retryIn(res.retryAfter)
		a.cfg.Logger.Debug("relay: delivery failed; retrying", "id", m.ID, "attempt", m.AttemptCount,
			"retry_in", res.retryAfter, "error", res.err)
	case outcome == outbox.NackDeadLettered:
		a.metrics.add(ctx, a.metrics.deadLettered, 1)
		if m.OrderingKey != "" {
			a.waiter.kick() // a store that skips dead letters released the key
		}
		a.cfg.Logger.Warn("relay: delivery failed on the last attempt; dead-lettered", "id", m.ID,
			"attempts", m.AttemptCount, "error", res.err)
	default:
		a.metrics.add(ctx, a.metrics.lost, 1)
	}
}

// deadLetter records a permanent failure.
func (a *completer) deadLetter(m outbox.Message, cause error) {
	ctx, cancel := context.WithTimeout(a.base, a.cfg.StatementTimeout)
	defer cancel()
	ok, err := a.store.DeadLetter(ctx, m.ID, m.ClaimToken, cause.Error())
	switch {
	case err != nil:
		a.cfg.Logger.Error("relay: dead-letter failed; the message returns after its lease", "id", m.ID, "error", err)
	case ok:
		a.metrics.add(ctx, a.metrics.deadLettered, 1)
		a.cfg.Logger.Warn("relay: permanent failure; dead-lettered", "id", m.ID, "error", cause)
		if m.OrderingKey != "" {
			a.waiter.kick() // a store that skips dead letters released the key
		}
	default:
		a.metrics.add(ctx, a.metrics.lost, 1)
	}
}
