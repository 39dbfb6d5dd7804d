package outbox

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/puddle/v2"

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
// waited on "Lock object"; BENCHMARKS.md, "Figures behind design choices").
// Instead the insert returns its transaction's id, and a goroutine asks the
// server, on the store's pool, which of those transactions have committed
// (pg_xact_status): every half notify interval while the oldest has been
// pending less than a second, less often after that (a tenth of its age, at
// most every maxWatchWait), so a long transaction costs a few reads a
// second. For the keys the committed ones enqueued for, it sends the
// notifications in one statement of its own, leaving out keys that a
// notification which committed within the last half interval already covers
// (wakeup.Limiter). A transaction that rolls back, stays open longer than
// wakeup.MaxPending, or ran on another server wakes nobody; neither does one
// whose notification fails, or that is pending when the store's pool closes
// or the server stops answering for watchGiveUp. Relays find those messages
// at their poll, as they find any message whose notification was lost. The
// caller's transaction must run on the database of the store's pool: that
// is the database whose relays the notification reaches.
type commitWatch struct {
	q        *db.Queries // on the store's pool, never on a caller's transaction
	limiter  *wakeup.Limiter
	logger   *slog.Logger
	pending  *wakeup.Pending
	interval time.Duration // between reads while the oldest pending is young
	giveUp   time.Duration // watchGiveUp, shorter in tests
}

// newCommitWatch returns the watcher of a store on a *pgxpool.Pool, or nil
// when the store must notify inside callers' transactions instead: on any
// other connection (the watcher cannot share a single connection, and a
// wrapper of a pool may not be safe to share either), without
// notifications, or with a notify interval of 0 (every enqueue notifies at
// once).
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
		giveUp:   watchGiveUp,
	}
}

// add records that transaction xact enqueued for key.
func (w *commitWatch) add(key string, xact int64) {
	if w.pending.Add(xact, key, time.Now()) {
		go w.run()
	}
}

const (
	// watchTimeout bounds one read of the pending transactions, and one
	// round's notifications.
	watchTimeout = 5 * time.Second
	// maxWatchWait is the longest wait between reads: for a transaction
	// pending a long time, and between reads that fail.
	maxWatchWait = 100 * time.Millisecond
	// watchGiveUp is how long reads may fail in a row before the watcher
	// forgets every pending transaction.
	watchGiveUp = time.Minute
)

// run reads the pending transactions' statuses until none is pending.
func (w *commitWatch) run() {
	var failingSince time.Time
	for {
		time.Sleep(w.wait(!failingSince.IsZero()))
		statuses, err := w.read()
		now := time.Now()
		switch {
		case errors.Is(err, puddle.ErrClosedPool):
			w.pending.Drop()
			return
		case err != nil && failingSince.IsZero():
			failingSince = now
			w.logger.Warn("outbox: reading whether callers' transactions committed failed; their notifications wait", "error", err)
		case err != nil && now.Sub(failingSince) >= w.giveUp:
			w.logger.Warn("outbox: giving up notifying for callers' transactions; relays find their messages at their poll",
				"failing_for", now.Sub(failingSince), "error", err)
			w.pending.Drop()
			return
		case err == nil:
			failingSince = time.Time{}
		}
		wake, done := w.pending.Resolve(statuses, now)
		w.notify(wake)
		if done {
			return
		}
	}
}

// wait is how long to sleep before the next read.
func (w *commitWatch) wait(failing bool) time.Duration {
	if failing {
		return maxWatchWait
	}
	return min(max(w.interval, w.pending.Oldest(time.Now())/10), maxWatchWait)
}

// read returns the statuses of the pending transactions.
func (w *commitWatch) read() (map[int64]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), watchTimeout)
	defer cancel()
	rows, err := w.q.XactStatuses(ctx, w.pending.Xacts())
	if err != nil {
		return nil, err
	}
	statuses := make(map[int64]string, len(rows))
	for _, r := range rows {
		statuses[r.Xact] = r.Status
	}
	return statuses, nil
}

// notify sends one round's notifications, for the keys not covered yet.
func (w *commitWatch) notify(keys []string) {
	var send, payloads []string
	for _, key := range keys {
		if !w.limiter.Covered(key) {
			send = append(send, key)
			payloads = append(payloads, wakeup.Payload(key, w.limiter.Interval()))
		}
	}
	if len(send) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchTimeout)
	defer cancel()
	if err := w.q.NotifySendMany(ctx, db.NotifySendManyParams{Channel: wakeup.Channel, Payloads: payloads}); err != nil {
		// The messages are stored; relays find them at their next poll.
		w.logger.WarnContext(ctx, "outbox: notification after a caller's commit failed", "error", err)
		return
	}
	for _, key := range send {
		w.limiter.Committed(key)
	}
}
