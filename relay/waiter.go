package relay

import (
	"context"
	"sync"
	"time"
)

// waiter decides when an idle relay claims (or locks) again: at a wake-up,
// at the follow-up a wake-up asks for, when a message it nacked falls due,
// when the next scheduled message falls due, at the next poll, or never
// (ctx ended). Both modes wait through it.
type waiter struct {
	wake <-chan Wakeup // nil without Wakeups
	poll time.Duration

	retry chan struct{} // a nacked message fell due (coalesced)

	mu       sync.Mutex
	timers   map[*time.Timer]struct{} // pending retry wake-ups
	followUp time.Time                // zero: none pending (local clock)
	claimed  time.Time                // when the last claim started (local clock)
}

func newWaiter(wake <-chan Wakeup, poll time.Duration) *waiter {
	return &waiter{wake: wake, poll: poll, retry: make(chan struct{}, 1), timers: map[*time.Timer]struct{}{}}
}

// claiming records that a claim starts now: a follow-up due before it is
// served by it.
func (w *waiter) claiming() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.claimed = time.Now()
}

// noteWake records a wake-up's follow-up.
func (w *waiter) noteWake(wk Wakeup) {
	if wk.FollowUp <= 0 {
		return
	}
	at := time.Now().Add(wk.FollowUp)
	w.mu.Lock()
	defer w.mu.Unlock()
	if at.After(w.followUp) {
		w.followUp = at
	}
}

// wait blocks until it is time to claim again and reports whether it is
// (false: ctx ended). due, when positive, is how long until the next
// scheduled message falls due; zero or negative means none is known.
func (w *waiter) wait(ctx context.Context, due time.Duration) bool {
	d := w.poll
	if due > 0 {
		d = min(d, due)
	}
	w.mu.Lock()
	if !w.followUp.IsZero() {
		if !w.followUp.After(w.claimed) {
			w.followUp = time.Time{} // a claim after the follow-up's time saw what it was for
		} else {
			d = min(d, max(time.Until(w.followUp), 0))
		}
	}
	w.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case wk := <-w.wake:
		w.noteWake(wk)
	case <-w.retry:
	case <-timer.C:
	}
	return true
}

// kick makes an idle relay claim again now: an ordering key's head was just
// finished, and the key's next message can be handed out.
func (w *waiter) kick() {
	select {
	case w.retry <- struct{}{}:
	default:
	}
}

// retryIn makes an idle relay claim again when a message it nacked falls
// due after delay, rather than at its next poll (no notification announces a
// retry). Retries due after the next poll need no timer.
func (w *waiter) retryIn(delay time.Duration) {
	if delay >= w.poll {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		w.mu.Lock()
		delete(w.timers, t)
		w.mu.Unlock()
		w.kick()
	})
	w.timers[t] = struct{}{}
}

// stop cancels pending retry timers.
func (w *waiter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t := range w.timers {
		t.Stop()
	}
	clear(w.timers)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// backOff logs a failed claim or lock and sleeps before the next try: the
// poll interval doubled for each failure in a row (up to 32 times the
// interval), and never more than 30 s.
func backOff(ctx context.Context, cfg *Config, failures int, what string, err error) {
	delay := min(cfg.PollInterval<<min(failures, 5), 30*time.Second)
	cfg.Logger.WarnContext(ctx, "relay: "+what+" failed; retrying", "lane", cfg.Lane, "target", cfg.Target,
		"error", err, "retry_in", delay)
	sleep(ctx, delay)
}
