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
}

func newConfig(opts []Option) config {
	c := config{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
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
