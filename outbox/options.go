package outbox

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// Option configures a PostgresStore.
type Option func(*config)

type config struct {
	clock          func() time.Time
	logger         *slog.Logger
	notify         bool
	notifyInterval time.Duration
	propagator     propagation.TextMapPropagator
	releaseKeys    bool
	notifier       *wakeup.Limiter // shared by the store's WithTx and Scoped views
	cursors        *claimCursors   // likewise
	plans          *planGeneration // likewise
}

func newConfig(opts []Option) config {
	c := config{logger: slog.New(slog.DiscardHandler), notify: true, notifyInterval: DefaultNotifyInterval}
	for _, opt := range opts {
		opt(&c)
	}
	// The cursors measure intervals: on the injected clock when there is
	// one, so that tests which move the clock move them too, and on the
	// local clock otherwise (only durations, never compared with the
	// database's timestamps).
	local := c.clock
	if local == nil {
		local = time.Now
	}
	if c.notify {
		// Relays follow up on a notification after the interval in real
		// time, whatever clock the store reads: so does the limiter.
		c.notifier = wakeup.NewLimiter(c.notifyInterval, time.Now)
	}
	c.cursors = newClaimCursors(local)
	c.plans = &planGeneration{now: local}
	return c
}

// WithClock makes the store read time from now instead of the database.
//
// The default, the database's clock, is what production wants: every relay,
// on whatever host, measures leases and availability on the same clock. An
// injected clock exists for deterministic tests (expire a lease by moving the
// clock, not by sleeping); it also drives the claim cursor's rescans.
// Notification intervals stay on real time, as relays follow up on it.
// now == nil restores the database's clock.
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
// which finds the enqueues that skipped their own notification. An enqueue
// inside a caller's transaction commits when the caller says: a store on a
// *pgxpool.Pool notifies for it from its own session once it sees the
// transaction commit, usually within d/2 (see commitWatch), unless a
// notification for the same scope, lane and target already covers it; with
// d == 0, or a store on any other connection, it notifies from inside the
// transaction.
func WithNotifyInterval(d time.Duration) Option {
	return func(c *config) { c.notifyInterval = max(d, 0) }
}

// WithPropagator makes Enqueue and EnqueueMany add the caller's trace
// context to each message's headers: for propagation.TraceContext and
// propagation.Baggage (what OpenTelemetry's W3C setup composes), the
// traceparent, tracestate and baggage headers. A relay continues the trace
// from them (see relay.Config.Propagator). Headers the draft sets itself
// win. Dedupe ignores the injected headers the draft did not set, so a
// producer retrying its request under another trace still deduplicates.
// nil, the default, adds nothing.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// WithSkipDeadLetters makes a dead-lettered message release its ordering key
// at once, on the statements of this store that dead-letter (Nack,
// NackAfter, DeadLetter, a claim that finds a poison message, a locked
// batch's Finish): the key's next message becomes its head instead of
// waiting for an operator. Order is then broken at that message, knowingly;
// the dead letter stays a dead letter, and redriving it puts it back at its
// place in the key. Off by default: a dead-lettered head holds its key until
// it is redriven or released (PostgresStore.ReleaseOrderingKey). Give the
// option to the stores your relays consume with.
func WithSkipDeadLetters(on bool) Option {
	return func(c *config) { c.releaseKeys = on }
}
