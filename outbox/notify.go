package outbox

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// DefaultNotifyInterval is how often, at most, one store sends a NOTIFY for
// one (scope, lane, target) from enqueues that commit on their own; see
// WithNotifyInterval.
const DefaultNotifyInterval = 10 * time.Millisecond

// notice is what one enqueue statement does about waking relays.
type notice struct {
	key     string // wakeup.Key of the message's scope, lane and target
	payload string // "" when the statement does not notify
	own     bool   // the statement commits on its own, when it ends
	// watched: the statement runs in a caller's transaction and does not
	// notify; the commit watcher does once the transaction commits.
	watched bool
}

// notice decides whether an enqueue of lane and target notifies. The rules
// and why are wakeup.Limiter's; an enqueue in a caller's transaction leaves
// its notification to the commit watcher when the store has one.
func (s *PostgresStore) notice(lane, target string) notice {
	if s.cfg.notifier == nil {
		return notice{}
	}
	n := notice{key: wakeup.Key(s.scope, lane, target), own: !s.inTx()}
	switch {
	case !n.own && s.watch != nil:
		n.watched = true
	case !n.own || s.cfg.notifier.Allow(n.key):
		n.payload = wakeup.Payload(n.key, s.cfg.notifier.Interval())
	}
	return n
}

// settle runs once an enqueue statement has returned. For a statement that
// committed on its own, a notification that went out now counts; an
// insert that skipped its notification gets one of its own when the relays'
// follow-up to the last one may already have passed. inserted is false when
// nothing new was stored (a deduplicated enqueue): nothing to announce.
// xact is the id of the statement's transaction, which the commit watcher
// waits to see commit when the notice is watched.
func (s *PostgresStore) settle(ctx context.Context, n notice, notified, inserted bool, xact int64) {
	if n.watched && inserted {
		s.watch.add(n.key, xact)
		return
	}
	if !n.own || !inserted {
		return
	}
	l := s.cfg.notifier
	if notified {
		l.Committed(n.key)
		return
	}
	if l.Covered(n.key) {
		return
	}
	err := s.q.NotifySend(ctx, db.NotifySendParams{Channel: wakeup.Channel, Payload: wakeup.Payload(n.key, l.Interval())})
	if err != nil {
		// The message is stored; relays find it at their next poll.
		s.cfg.logger.WarnContext(ctx, "outbox: enqueue: trailing notification failed", "error", err)
		return
	}
	l.Committed(n.key)
}

// inTx reports whether the store runs in a transaction it does not own, in
// which a failed statement aborts the caller's transaction and cannot simply
// be run again, and which commits when the caller says.
func (s *PostgresStore) inTx() bool {
	_, ok := s.conn.(pgx.Tx)
	return ok
}
