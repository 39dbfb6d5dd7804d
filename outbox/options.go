package outbox

import (
	"log/slog"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// Option configures a PostgresStore.
type Option func(*config)

type config struct {
	clock          func() time.Time
	logger         *slog.Logger
	notify         bool
	notifyInterval time.Duration
	notifier       *wakeup.Limiter // shared by the store's WithTx and Scoped views
	cursors        *claimCursors   // likewise
}

func newConfig(opts []Option) config {
	c := config{logger: slog.New(slog.DiscardHandler), notify: true, notifyInterval: DefaultNotifyInterval}
	for _, opt := range opts {
		opt(&c)
	}
	// The limiter and the cursors measure intervals: on the injected clock
	// when there is one, so that tests which move the clock move them too,
	// and on the local clock otherwise (only durations, never compared with
	// the database's timestamps).
	local := c.clock
	if local == nil {
		local = time.Now
	}
	if c.notify {
		c.notifier = wakeup.NewLimiter(c.notifyInterval, local)
	}
	c.cursors = newClaimCursors(local)
	return c
}

// WithClock makes the store read time from now instead of the database.
//
// The default, the database's clock, is what production wants: every relay,
// on whatever host, measures leases and availability on the same clock. An
// injected clock exists for deterministic tests (expire a lease by moving the
// clock, not by sleeping); it also drives the store's own timers, the claim
// cursor's rescans and the notification limiter. now == nil restores the
// database's clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.clock = now }
}

// WithLogger sets where the store logs what callers do not see in return
// values, such as poison messages dead-lettered during a claim. The default
// discards logs; nil restores that default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	}
}

// WithNotify makes enqueues signal relays that LISTEN on channel "pgoutbox"
// (default on; see relay.Notifier). Postgres delivers the signal when the
// enqueuing transaction commits, so an idle relay picks the message up in
// milliseconds instead of at its next poll. Turn it off where no relay
// listens (every relay polls, for example behind PgBouncer in transaction
// mode): a notifying commit holds a database-wide lock until its WAL is
// flushed, a cost worth paying only when someone is listening.
func WithNotify(on bool) Option {
	return func(c *config) { c.notify = on }
}

// WithNotifyInterval sets how often, at most, the store notifies for one
// (scope, lane, target): DefaultNotifyInterval by default, 0 for every
// enqueue. Spacing notifications keeps concurrent producers from queueing
// behind NOTIFY's commit lock. Relays lose nothing by it: each notification
// carries the interval, and a woken relay claims again one interval later,
// which finds the enqueues that skipped their own notification. Only
// enqueues that commit when their statement ends (a store on a pool) skip
// notifications; one inside a caller's transaction commits when the caller
// says, so it always notifies.
func WithNotifyInterval(d time.Duration) Option {
	return func(c *config) { c.notifyInterval = max(d, 0) }
}
