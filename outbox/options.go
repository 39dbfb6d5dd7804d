package outbox

import (
	"io"
	"log/slog"
	"time"
)

// Option configures a PostgresStore.
type Option func(*config)

type config struct {
	clock  func() time.Time
	logger *slog.Logger
	notify bool
}

func newConfig(opts []Option) config {
	c := config{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), notify: true}
	for _, opt := range opts {
		opt(&c)
	}
	return c
}

// WithClock makes the store read time from now instead of the database.
//
// The default, the database's clock, is what production wants: every relay,
// on whatever host, measures leases and availability on the same clock. An
// injected clock exists for deterministic tests (expire a lease by moving the
// clock, not by sleeping). now == nil restores the database's clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.clock = now }
}

// WithLogger sets where the store logs what callers do not see in return
// values, such as poison messages dead-lettered during a claim. The default
// discards logs; nil restores that default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		c.logger = l
	}
}

// WithNotify makes every enqueue signal relays that LISTEN on NotifyChannel
// (default on). Postgres delivers the signal when the enqueuing transaction
// commits, so an idle relay picks the message up in milliseconds instead of
// at its next poll. Turn it off where no relay listens (every relay polls,
// for example behind PgBouncer in transaction mode): NOTIFY serialises
// committing transactions on a global lock, a cost worth paying only when
// someone is listening.
func WithNotify(on bool) Option {
	return func(c *config) { c.notify = on }
}
