package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// commitWatch sends the notifications of enqueues that ran in callers'
// transactions, once it sees those transactions commit.
//
// Such an enqueue used to carry its own NOTIFY, because the store never
// learns when a caller commits. But Postgres makes every notifying
// transaction hold a database-wide lock from its commit until its WAL is
// flushed, so concurrent producers committed one at a time (their sessions
// waited on "Lock object"; BENCHMARKS.md, "Enqueue and NOTIFY"). Instead the
// insert returns its transaction's id, and a goroutine asks the server, on
// the store's pool, every half notify interval while any is pending, which of
// those transactions have committed (pg_xact_status). For each key a
// committed one enqueued for, it sends one notification from a transaction
// of its own, unless one that committed within the last half interval
// already covers it (wakeup.Limiter). A transaction that rolls back, or
// stays open longer than wakeup.MaxPending, wakes nobody; relays find its
// messages at their poll, as they would find any message whose notification
// was lost.
type commitWatch struct {
	q        *db.Queries // on the store's pool, never on a caller's transaction
	limiter  *wakeup.Limiter
	logger   *slog.Logger
	pending  *wakeup.Pending
	interval time.Duration // between reads of the pending transactions
}

// newCommitWatch returns the watcher of a store on pool, or nil when the
// store must notify inside callers' transactions instead: on a single
// connection (the watcher cannot share it), without notifications, or with
// a notify interval of 0 (every enqueue notifies at once).
func newCommitWatch(pool db.DBTX, cfg config) *commitWatch {
	if _, ok := pool.(readOnlyGuard); !ok || cfg.notifier == nil || cfg.notifier.Interval() <= 0 {
		return nil
	}
	return &commitWatch{
		q:        db.New(pool),
		limiter:  cfg.notifier,
		logger:   cfg.logger,
		pending:  wakeup.NewPending(),
		interval: max(cfg.notifier.Interval()/2, time.Millisecond),
	}
}

// add records that transaction xact enqueued for key.
func (w *commitWatch) add(key string, xact int64) {
	if w.pending.Add(xact, key, time.Now()) {
		go w.run()
	}
}

// watchTimeout bounds one read of the pending transactions, and one
// notification.
const watchTimeout = 5 * time.Second

// maxWatchBackoff is the longest wait between reads while they fail.
const maxWatchBackoff = time.Second

// run reads the pending transactions' statuses until none is pending.
func (w *commitWatch) run() {
	wait := w.interval
	for {
		time.Sleep(wait)
		ctx, cancel := context.WithTimeout(context.Background(), watchTimeout)
		var statuses map[int64]string
		rows, err := w.q.XactStatuses(ctx, w.pending.Xacts())
		if err == nil {
			statuses = make(map[int64]string, len(rows))
			for _, r := range rows {
				statuses[r.Xact] = r.Status
			}
			wait = w.interval
		} else {
			if wait == w.interval {
				w.logger.WarnContext(ctx, "outbox: reading whether callers' transactions committed failed; their notifications wait", "error", err)
			}
			wait = min(wait*2, maxWatchBackoff)
		}
		wake, done := w.pending.Resolve(statuses, time.Now())
		for _, key := range wake {
			if w.limiter.Covered(key) {
				continue
			}
			err := w.q.NotifySend(ctx, db.NotifySendParams{Channel: wakeup.Channel, Payload: wakeup.Payload(key, w.limiter.Interval())})
			if err != nil {
				// The messages are stored; relays find them at their next poll.
				w.logger.WarnContext(ctx, "outbox: notification after a caller's commit failed", "error", err)
				continue
			}
			w.limiter.Committed(key)
		}
		cancel()
		if done {
			return
		}
	}
}
