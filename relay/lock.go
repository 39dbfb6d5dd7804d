package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// lockLoop is Run's loop in ModeLock: lock a batch, run every handler (at
// most Concurrency at once, within Lease), write all outcomes and commit;
// repeat while ctx lasts.
func (s *session) lockLoop(ctx context.Context, wake <-chan struct{}) {
	cfg := s.r.cfg
	failures := 0
	for ctx.Err() == nil {
		lockCtx, cancel := context.WithTimeout(s.base, s.r.cfg.StatementTimeout)
		batch, err := s.r.locker.LockBatch(lockCtx, outbox.LockRequest{Lane: cfg.Lane, Target: cfg.Target, Limit: cfg.BatchSize})
		cancel()
		if err != nil {
			failures++
			delay := min(cfg.PollInterval<<min(failures, 5), 30*time.Second)
			cfg.Logger.WarnContext(ctx, "relay: locking a batch failed; retrying", "lane", cfg.Lane, "target", cfg.Target,
				"error", err, "retry_in", delay)
			sleep(ctx, delay)
			continue
		}
		failures = 0
		msgs := batch.Messages()
		s.r.metrics.batch.Record(ctx, int64(len(msgs)), s.r.metrics.attrs)
		if len(msgs) == 0 {
			timer := time.NewTimer(cfg.PollInterval)
			select {
			case <-ctx.Done():
			case <-wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		s.r.metrics.add(ctx, s.r.metrics.claimed, len(msgs))
		s.runBatch(ctx, batch, msgs)
	}
}

// runBatch delivers a locked batch and writes its outcomes. When ctx ends
// mid-batch the handlers get up to DrainTimeout; those still running then
// are cancelled and their messages left pending (no attempt counted), while
// the outcomes already known are written.
func (s *session) runBatch(ctx context.Context, batch *outbox.LockedBatch, msgs []outbox.Message) {
	cfg := s.r.cfg
	batchCtx, cancelBatch := context.WithTimeout(s.work, cfg.Lease)
	defer cancelBatch()
	outcomes := make([]outbox.Outcome, len(msgs))
	finished := make([]atomic.Bool, len(msgs))
	var abandoned atomic.Bool
	var wg sync.WaitGroup
	slots := make(chan struct{}, cfg.Concurrency)
	for i := range msgs {
		m := msgs[i]
		m.AttemptCount++ // this delivery, as a claim would have counted it
		slots <- struct{}{}
		wg.Add(1)
		s.handlers.Add(1)
		go func() {
			defer func() { <-slots; wg.Done(); s.handlers.Done() }()
			s.r.metrics.inflight.Add(batchCtx, 1, s.r.metrics.attrs)
			started := time.Now()
			err := s.call(batchCtx, m)
			s.r.metrics.duration.Record(batchCtx, time.Since(started).Seconds(), s.r.metrics.attrs)
			s.r.metrics.inflight.Add(batchCtx, -1, s.r.metrics.attrs)
			if abandoned.Load() {
				return
			}
			outcomes[i] = outbox.Outcome{ID: m.ID, Err: err, Permanent: IsPermanent(err)}
			if err != nil && !IsPermanent(err) {
				outcomes[i].RetryAfter = max(cfg.Backoff(m.AttemptCount), 0)
			}
			finished[i].Store(true)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(cfg.DrainTimeout):
			abandoned.Store(true)
			cancelBatch()
			cfg.Logger.Warn("relay: drain timeout in a locked batch; unfinished messages stay pending", "lane", cfg.Lane, "target", cfg.Target)
		}
	}
	var known []outbox.Outcome
	for i := range outcomes {
		if finished[i].Load() {
			known = append(known, outcomes[i])
		}
	}
	finishCtx, cancel := context.WithTimeout(s.base, s.r.cfg.StatementTimeout)
	defer cancel()
	statuses, err := batch.Finish(finishCtx, known)
	if err != nil {
		cfg.Logger.Error("relay: writing a locked batch's outcomes failed; its messages will be delivered again",
			"messages", len(msgs), "error", err)
		s.r.metrics.add(s.base, s.r.metrics.lost, len(msgs))
		return
	}
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
	s.r.metrics.add(s.base, s.r.metrics.acked, acked)
	s.r.metrics.add(s.base, s.r.metrics.nacked, nacked)
	s.r.metrics.add(s.base, s.r.metrics.deadLettered, dead)
}
