package relay

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// lockLoop is Run's loop in ModeLock: lock a batch, run its handlers (at
// most Concurrency at once), write the outcomes and commit; repeat while ctx
// lasts. See outbox.LockedBatch for what lock mode gives up.
type lockLoop struct {
	cfg     *Config
	locker  BatchLocker
	exec    *executor
	waiter  *waiter
	metrics *metrics
	base    context.Context // outlives Run's ctx: writes during the drain
	work    context.Context // parent of handler contexts; cancelled on abandon
}

func (l *lockLoop) run(ctx context.Context) {
	cfg := l.cfg
	failures := 0
	// As in claim mode, an idle relay asks when the next scheduled message
	// falls due before it locks, so that nothing falling due between the
	// two waits for the poll.
	idle := true
	for ctx.Err() == nil {
		var next scheduled
		if idle {
			next = askNextDue(ctx, l.locker, cfg)
		}
		lockCtx, cancel := context.WithTimeout(l.base, cfg.StatementTimeout)
		l.waiter.claiming()
		batch, err := l.locker.LockBatch(lockCtx, outbox.LockRequest{
			Lane: cfg.Lane, Target: cfg.Target, Limit: cfg.BatchSize,
			// The server ends the batch's transaction if the relay stalls
			// (sends no Alive probe) for a whole lease.
			IdleTimeout: cfg.Lease,
			ConsumerID:  cfg.ConsumerID,
		})
		cancel()
		if err != nil {
			failures++
			backOff(ctx, cfg, failures, "locking a batch", err)
			continue
		}
		failures = 0
		msgs := batch.Messages()
		l.metrics.batch.Record(ctx, int64(len(msgs)), l.metrics.recordOpts...)
		wasIdle := idle
		idle = len(msgs) == 0
		if len(msgs) == 0 {
			if !wasIdle {
				continue // just caught up: ask, then lock once more
			}
			if !l.waiter.wait(ctx, next.wait()) {
				return
			}
			continue
		}
		l.metrics.add(ctx, l.metrics.claimed, len(msgs))
		l.runBatch(ctx, batch, msgs)
	}
}

// runBatch delivers a locked batch and writes its outcomes.
//
// Handlers start while ctx lasts; messages whose handler never started stay
// pending, untouched. The batch ends when every started handler has
// returned, or earlier: when Lease has passed since the lock (handlers
// still running are cancelled and the outcomes known so far written at
// once, so a handler that ignores its context cannot hold the transaction
// and the xmin horizon open), when ctx ended and DrainTimeout passed, or
// when the transaction was lost (the Alive probe failed: another relay may
// be delivering these messages now, so the handlers are cancelled and
// nothing is written).
func (l *lockLoop) runBatch(ctx context.Context, batch *outbox.LockedBatch, msgs []outbox.Message) {
	cfg := l.cfg
	batchCtx, cancelBatch := context.WithTimeout(l.work, cfg.Lease)
	defer cancelBatch()

	var (
		mu        sync.Mutex
		outcomes  []outbox.Outcome
		retries   []time.Duration
		abandoned bool
		wg        sync.WaitGroup
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		slots := make(chan struct{}, cfg.Concurrency)
		for _, m := range msgs {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			case <-batchCtx.Done():
			}
			if ctx.Err() != nil || batchCtx.Err() != nil {
				break // no new handler once Run is stopping or the batch is over
			}
			m.AttemptCount++ // this delivery, as a claim would have counted it
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				res := l.exec.run(batchCtx, m)
				mu.Lock()
				defer mu.Unlock()
				if abandoned {
					return
				}
				outcomes = append(outcomes, outbox.Outcome{ID: m.ID, Err: res.err, Permanent: res.permanent, RetryAfter: res.retryAfter})
				if res.err != nil && !res.permanent {
					retries = append(retries, res.retryAfter)
				}
			}()
		}
		wg.Wait()
	}()

	lost := l.watch(ctx, batchCtx, batch, done)
	mu.Lock()
	abandoned = true
	known := outcomes
	mu.Unlock()
	cancelBatch()
	if lost != nil {
		cfg.Logger.Error("relay: a locked batch's transaction was lost while its handlers ran; cancelled them, and its messages are pending again",
			"lane", cfg.Lane, "target", cfg.Target, "messages", len(msgs), "error", lost)
		l.metrics.add(l.base, l.metrics.lost, len(msgs))
		_ = batch.Release(l.base)
		return
	}
	finishCtx, cancel := context.WithTimeout(l.base, cfg.StatementTimeout)
	defer cancel()
	statuses, err := batch.Finish(finishCtx, known)
	if err != nil {
		cfg.Logger.Error("relay: writing a locked batch's outcomes failed; its messages will be delivered again",
			"messages", len(msgs), "error", err)
		l.metrics.add(l.base, l.metrics.lost, len(msgs))
		return
	}
	l.count(statuses)
	for _, d := range retries {
		l.waiter.retryIn(d)
	}
}

// watch waits for the batch's handlers and probes its transaction every
// HeartbeatInterval. It returns when the handlers are done, when the batch
// must end without them (lease passed, or drain timeout after ctx ended:
// nil), or when the transaction is gone (the probe's error).
func (l *lockLoop) watch(ctx, batchCtx context.Context, batch *outbox.LockedBatch, done <-chan struct{}) error {
	cfg := l.cfg
	tick := time.NewTicker(cfg.HeartbeatInterval)
	defer tick.Stop()
	var drain <-chan time.Time
	stopping := ctx.Done()
	for {
		select {
		case <-done:
			return nil
		case <-batchCtx.Done():
			cfg.Logger.Warn("relay: a locked batch ran out of its lease; writing the outcomes known, the rest stay pending",
				"lane", cfg.Lane, "target", cfg.Target)
			return nil
		case <-stopping:
			stopping = nil
			t := time.NewTimer(cfg.DrainTimeout)
			defer t.Stop()
			drain = t.C
		case <-drain:
			cfg.Logger.Warn("relay: drain timeout in a locked batch; unfinished messages stay pending",
				"lane", cfg.Lane, "target", cfg.Target)
			return nil
		case <-tick.C:
			pctx, cancel := context.WithTimeout(l.base, min(cfg.StatementTimeout, cfg.HeartbeatInterval))
			err := batch.Alive(pctx)
			cancel()
			if errors.Is(err, outbox.ErrBatchLost) {
				return err
			}
			if err != nil {
				cfg.Logger.Warn("relay: checking a locked batch's transaction failed", "error", err)
			}
		}
	}
}

func (l *lockLoop) count(statuses []outbox.Status) {
	var acked, nacked, dead int
	for _, st := range statuses {
		switch st {
		case outbox.StatusDelivered:
			acked++
		case outbox.StatusPending:
			nacked++
		case outbox.StatusDeadLetter:
			dead++
		}
	}
	l.metrics.add(l.base, l.metrics.acked, acked)
	l.metrics.add(l.base, l.metrics.nacked, nacked)
	l.metrics.add(l.base, l.metrics.deadLettered, dead)
}
