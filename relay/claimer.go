package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// claimLoop is Run's loop in ModeClaim: claim as many messages as there are
// free handler slots (up to BatchSize), start a delivery for each, and wait
// when caught up. Acks ride on the next claim (see completer).
type claimLoop struct {
	cfg      *Config
	store    Store
	exec     *executor
	waiter   *waiter
	metrics  *metrics
	base     context.Context // outlives Run's ctx: writes during the drain
	work     context.Context // parent of handler contexts; cancelled on abandon
	handlers *sync.WaitGroup

	flight *inflight
	done   *completer
	beat   *heartbeat

	// backlog is set while the loop drains a backlog, so that its next
	// claim, due any moment, carries the acks (see completer.limits).
	backlog atomic.Bool
}

func newClaimLoop(base, work context.Context, cfg *Config, store Store, exec *executor, w *waiter, m *metrics,
	handlers *sync.WaitGroup,
) *claimLoop {
	c := &claimLoop{cfg: cfg, store: store, exec: exec, waiter: w, metrics: m, base: base, work: work,
		handlers: handlers, flight: newInflight()}
	c.done = newCompleter(base, cfg, store, m, w, &c.backlog)
	c.beat = newHeartbeat(base, cfg, store, m, c.flight)
	return c
}

// stop ends the heartbeat and flushes the acks; Run calls it after the drain.
func (c *claimLoop) stop() {
	c.beat.close()
	c.done.close()
}

func (c *claimLoop) run(ctx context.Context) {
	cfg := c.cfg
	defer c.backlog.Store(false)
	go c.done.run()
	go c.beat.run()
	failures := 0
	// While a backlog lasts (the last claim came back full), wait for a
	// quarter of the batch to be free before claiming again: claiming each
	// freed slot on its own costs a statement per message.
	backlog := false
	batch := min(cfg.BatchSize, cfg.Concurrency) // the most one claim can take
	var gathering time.Time                      // when the current gather began
	// An idle relay asks when the next scheduled message falls due before
	// it claims, not after: asked after, a message falling due between the
	// claim and the question is neither claimed nor scheduled, and waits
	// for the poll (a busy server can put seconds between the two).
	idle := true
	for ctx.Err() == nil {
		inflight := c.flight.count()
		free := cfg.Concurrency - inflight
		if free <= 0 || (backlog && inflight > 0 && free < max(1, batch/4)) {
			select {
			case <-ctx.Done():
				return
			case <-c.flight.freed:
			}
			continue
		}
		if backlog && free < batch && c.gather(ctx, &gathering) {
			continue
		}
		gathering = time.Time{}
		var next scheduled
		if idle {
			next = askNextDue(ctx, c.store, cfg)
		}
		n := min(free, cfg.BatchSize)
		msgs, ackedKeyed, err := c.claim(n)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			backOff(ctx, cfg, failures, "claim", err)
			continue
		}
		failures = 0
		for _, m := range msgs {
			c.start(m)
		}
		backlog = len(msgs) == n
		c.backlog.Store(backlog)
		wasIdle := idle
		idle = !backlog
		if backlog || ackedKeyed || !wasIdle {
			// More may wait; or an ack just finished an ordering key's
			// head, and the key's next message can go now; or the relay
			// has just caught up, and asks when the next message falls
			// due before its next claim.
			continue
		}
		// Caught up: wait for a wake-up, a retry or a scheduled message
		// falling due, the next poll, or the end.
		if !c.waiter.wait(ctx, next.wait()) {
			return
		}
	}
}

// claim claims up to n messages, acking the successes waiting in the
// completer with the same statement. ackedKeyed reports whether an ack
// finished a keyed message: the claim could not see its key's next message
// (one statement, one snapshot), so the next claim should come at once.
func (c *claimLoop) claim(n int) (msgs []outbox.Message, ackedKeyed bool, err error) {
	cfg := c.cfg
	// A claim that shutdown interrupted could still commit on the server and
	// leave messages claimed by nobody until their lease ends. So the claim
	// runs to completion; the drain handles what it returns.
	claimCtx, cancel := context.WithTimeout(c.base, cfg.StatementTimeout)
	defer cancel()
	acks := c.done.take(outbox.MaxBatch)
	c.waiter.claiming()
	msgs, acked, err := c.store.ClaimAndAck(claimCtx, outbox.ClaimRequest{
		Lane: cfg.Lane, Target: cfg.Target, Limit: n, Lease: cfg.Lease, ConsumerID: cfg.ConsumerID,
	}, acks.receipts())
	if err != nil {
		c.backlog.Store(false) // the completer flushes on its own until claims work again
		c.done.giveBack(acks)
		return nil, false, err
	}
	c.done.count(acked)
	c.metrics.batch.Record(claimCtx, int64(len(msgs)), c.metrics.recordOpts...)
	c.metrics.add(claimCtx, c.metrics.claimed, len(msgs))
	return msgs, acks.ackedKeyed(acked), nil
}

// scheduled is when the next scheduled message falls due, as the store said
// just before a claim.
type scheduled struct {
	asked time.Time     // when the question was sent (local clock)
	in    time.Duration // from then; 0: none known
}

// askNextDue asks store, when it is a DueScheduler, how long until the next
// scheduled message of the relay's lane and target falls due, in at most a
// statement timeout. The answer counts from when the question was sent: the
// message falls due no earlier than that.
func askNextDue(ctx context.Context, store any, cfg *Config) scheduled {
	ds, ok := store.(DueScheduler)
	if !ok {
		return scheduled{}
	}
	asked := time.Now()
	qctx, cancel := context.WithTimeout(ctx, cfg.StatementTimeout)
	defer cancel()
	d, found, err := ds.NextDue(qctx, cfg.Lane, cfg.Target)
	if err != nil || !found {
		return scheduled{}
	}
	return scheduled{asked: asked, in: max(d, time.Millisecond)}
}

// wait is how long to wait from now for the scheduled message: at least a
// millisecond when it is known (it was not due when asked, before the last
// claim, so that claim did not take it), 0 when none is known.
func (s scheduled) wait() time.Duration {
	if s.in == 0 {
		return 0
	}
	return max(time.Until(s.asked.Add(s.in)), time.Millisecond)
}

// Handlers that finish in a burst (fast ones finish a whole batch within a
// millisecond or two) are worth waiting for during a backlog: one claim of
// the whole batch costs one statement, claiming each quarter as it frees
// costs four. gather waits for the next freed slot while slots keep freeing
// within gatherGap of each other, for gatherMax in all; a slow or stuck
// handler ends the wait after one gap.
const (
	gatherGap = time.Millisecond
	gatherMax = 5 * time.Millisecond
)

// gather reports whether a slot freed within gatherGap (the caller looks
// again), or false when it is time to claim what is free. since holds when
// the gather began.
func (c *claimLoop) gather(ctx context.Context, since *time.Time) bool {
	now := time.Now()
	if since.IsZero() {
		*since = now
	}
	left := gatherMax - now.Sub(*since)
	if left <= 0 {
		return false
	}
	t := time.NewTimer(min(gatherGap, left))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-c.flight.freed:
		return true
	case <-t.C:
		return false
	}
}

// start runs a delivery of m in a handler of its own.
func (c *claimLoop) start(m outbox.Message) {
	hctx, cancel := context.WithCancel(c.work)
	d := &delivery{msg: m, cancel: cancel, renewed: time.Now()}
	c.flight.add(d)
	c.handlers.Add(1)
	// The goroutine reads the message from d, not m: capturing m would move
	// a second copy of it to the heap.
	go func() {
		defer c.handlers.Done()
		m := &d.msg
		res := c.exec.run(hctx, *m)
		lost := c.flight.remove(d)
		switch {
		case lost:
			// The heartbeat found another holder; whatever the handler
			// did, the message is theirs now.
			c.metrics.add(c.base, c.metrics.lost, 1)
		case res.err == nil:
			c.done.ack(*m)
		case c.work.Err() != nil:
			// Abandoned at the end of the drain: leave it to lease expiry.
		case res.permanent:
			c.done.deadLetter(*m, res.err)
		default:
			c.done.nack(*m, res)
		}
	}()
}

// delivery is one message in a handler.
type delivery struct {
	msg     outbox.Message
	cancel  context.CancelFunc
	renewed time.Time // when the lease was last taken or extended (local clock, durations only)
	lost    bool
}

// inflight is the set of deliveries running: the claim loop counts free
// slots with it, the heartbeat renews their leases.
type inflight struct {
	mu    sync.Mutex
	m     map[string]*delivery
	freed chan struct{} // a slot was freed (coalesced)
}

func newInflight() *inflight {
	return &inflight{m: map[string]*delivery{}, freed: make(chan struct{}, 1)}
}

func (f *inflight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

func (f *inflight) add(d *delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[d.msg.ID] = d
}

// remove ends a delivery and reports whether its claim was lost meanwhile.
func (f *inflight) remove(d *delivery) (lost bool) {
	f.mu.Lock()
	delete(f.m, d.msg.ID)
	lost = d.lost
	f.mu.Unlock()
	d.cancel()
	select {
	case f.freed <- struct{}{}:
	default:
	}
	return lost
}

// due returns the deliveries whose lease was last renewed before cutoff.
func (f *inflight) due(cutoff time.Time) []*delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*delivery
	for _, d := range f.m {
		if !d.renewed.After(cutoff) {
			out = append(out, d)
		}
	}
	return out
}

// renewed records the outcome of a lease extension asked for at asked: held
// deliveries count as renewed then, lost ones are cancelled. It returns the
// ids found lost.
func (f *inflight) renewed(due []*delivery, held []bool, asked time.Time) (lost []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range due {
		if held[i] {
			d.renewed = asked
			continue
		}
		if _, running := f.m[d.msg.ID]; running && !d.lost {
			d.lost = true
			d.cancel()
			lost = append(lost, d.msg.ID)
		}
	}
	return lost
}
