package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// Handler delivers one message. Returning nil acks it; an error retries it
// (or dead-letters it, see Permanent). ctx is cancelled when the relay loses
// the claim or gives up on the handler during shutdown; a handler must return
// promptly then.
type Handler func(ctx context.Context, m outbox.Message) error

// Store is what a relay needs of a store. *outbox.PostgresStore implements
// it, scoped or not, and so does the in-memory store of package memstore.
type Store interface {
	Scope() string
	// ClaimAndAck claims the next batch and acks the last one's successes
	// in one statement.
	ClaimAndAck(ctx context.Context, r outbox.ClaimRequest, acks []outbox.Receipt) ([]outbox.Message, []bool, error)
	AckMany(ctx context.Context, receipts []outbox.Receipt) ([]bool, error)
	NackAfter(ctx context.Context, id, claimToken, reason string, delay time.Duration) (outbox.NackOutcome, error)
	DeadLetter(ctx context.Context, id, claimToken, reason string) (bool, error)
	ExtendLeases(ctx context.Context, receipts []outbox.Receipt, lease time.Duration) ([]bool, error)
}

// DueScheduler is implemented by stores that can say when the next message
// of a lane and target falls due (outbox.PostgresStore and memstore.Store
// do). An idle relay on such a store claims again at that moment instead of
// at its next poll, so a message enqueued with a short AvailableAt delay is
// not left for the poll. NextDue returns how long until the earliest
// pending message not yet due becomes due, on the store's clock, and false
// when there is none.
type DueScheduler interface {
	NextDue(ctx context.Context, lane, target string) (time.Duration, bool, error)
}

// Mode is how a relay takes messages.
type Mode int

const (
	// ModeClaim (the default) claims messages under a lease: each claim is a
	// write, heartbeats extend the lease of long handlers, and a crash
	// counts an attempt, so poison messages dead-letter.
	ModeClaim Mode = iota
	// ModeLock holds row locks on a batch in one transaction instead of
	// claiming it, and writes every outcome with one statement and one
	// commit: about half the database work per message, for fast handlers.
	// It relaxes three guarantees (see outbox.LockedBatch): a crash counts
	// no attempt (a message that kills its relay every time is retried
	// forever), the whole batch must finish within Lease (no heartbeat), and
	// messages stay pending while worked. It needs a store with LockBatch
	// (*outbox.PostgresStore on a pool). Use one mode per lane and target:
	// lock mode does not take over expired claims.
	ModeLock
)

// BatchLocker is what ModeLock needs of a store.
type BatchLocker interface {
	LockBatch(ctx context.Context, r outbox.LockRequest) (*outbox.LockedBatch, error)
}

// Config configures a Relay. Lane, Target and Handler are required; every
// other field has a default.
type Config struct {
	// Lane and Target select the messages this relay delivers.
	Lane, Target string
	// Handler delivers a message.
	Handler Handler
	// Mode is how messages are taken: ModeClaim (default) or ModeLock.
	Mode Mode
	// ConsumerID names this relay in claims. Default: host-pid-random,
	// unique per process.
	ConsumerID string
	// Concurrency bounds the handlers running at once. Default 16.
	Concurrency int
	// BatchSize caps the messages one claim takes; a claim never takes more
	// than there are free handler slots. Default: Concurrency.
	BatchSize int
	// Lease is the lease each claim takes and each heartbeat renews; in
	// ModeLock, the time a whole batch has: handlers still running then are
	// cancelled and the outcomes known so far are written. Default 30s.
	Lease time.Duration
	// HeartbeatInterval is how often in-flight leases are extended (claim
	// mode) or a locked batch's transaction is checked (lock mode). A lease
	// is renewed at the latest 1.5 intervals after it was taken, so the
	// interval must be at most Lease / 2. Default: Lease / 3.
	HeartbeatInterval time.Duration
	// PollInterval is how long an idle relay waits before claiming again
	// when no wake-up comes. Default 1s.
	PollInterval time.Duration
	// Wakeups, when set, wakes an idle relay as soon as a message is
	// enqueued. Nil means polling only (right behind PgBouncer in
	// transaction mode, where LISTEN does not work).
	Wakeups Wakeups
	// Backoff turns a failed attempt into a retry delay. Default:
	// ExponentialBackoff(time.Second, 5*time.Minute).
	Backoff Backoff
	// DrainTimeout is how long Run waits for in-flight handlers once its
	// context ends. Default 30s.
	DrainTimeout time.Duration
	// StatementTimeout bounds each claim, ack, nack and heartbeat, so that
	// a relay on a dead or half-open connection gives up on it and
	// reconnects instead of waiting forever. Default 30s.
	StatementTimeout time.Duration
	// AckBatchSize and AckInterval bound how many successes wait, and for
	// how long, before one statement acks them all. Defaults 100 and 10ms.
	// While the relay drains a backlog its next claim acks them instead,
	// and the acker waits up to ten intervals (at most a quarter of Lease)
	// before acking on its own.
	AckBatchSize int
	AckInterval  time.Duration
	// Logger receives the relay's logs. Default: discard.
	Logger *slog.Logger
	// MeterProvider receives the relay's metrics. Default: no-op.
	MeterProvider metric.MeterProvider
	// TracerProvider, when set, gets a span per delivery. Default: no-op.
	TracerProvider trace.TracerProvider
	// Propagator reads the producer's trace context from a message's
	// headers (see outbox.WithPropagator), and the delivery span continues
	// that trace as a child of the producer's span. Default: W3C trace
	// context and baggage, which is what an OpenTelemetry producer sends.
	Propagator propagation.TextMapPropagator
}

// Limits on Config.
const (
	MaxConcurrency = 10_000
	minInterval    = time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.ConsumerID == "" {
		c.ConsumerID = defaultConsumerID()
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.BatchSize == 0 {
		c.BatchSize = min(c.Concurrency, outbox.MaxClaimLimit)
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.Lease / 3
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Backoff == nil {
		c.Backoff = ExponentialBackoff(time.Second, 5*time.Minute)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.AckBatchSize == 0 {
		c.AckBatchSize = 100
	}
	if c.AckInterval == 0 {
		c.AckInterval = 10 * time.Millisecond
	}
	if c.StatementTimeout == 0 {
		c.StatementTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MeterProvider == nil {
		c.MeterProvider = metricnoop.NewMeterProvider()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = tracenoop.NewTracerProvider()
	}
	if c.Propagator == nil {
		c.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return c
}

func (c Config) validate() error {
	if c.Handler == nil {
		return invalid("handler", "is required")
	}
	if c.Mode != ModeClaim && c.Mode != ModeLock {
		return invalid("mode", "must be ModeClaim or ModeLock, got %d", c.Mode)
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		return invalid("concurrency", "must be between 1 and %d, got %d", MaxConcurrency, c.Concurrency)
	}
	// Lane, target, consumer id, batch size and lease: the claim's own rules.
	req := outbox.ClaimRequest{Lane: c.Lane, Target: c.Target, Limit: c.BatchSize, Lease: c.Lease, ConsumerID: c.ConsumerID}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("relay: config: %w", err)
	}
	if c.AckBatchSize < 1 || c.AckBatchSize > outbox.MaxBatch {
		return invalid("ack_batch_size", "must be between 1 and %d, got %d", outbox.MaxBatch, c.AckBatchSize)
	}
	for _, d := range []struct {
		field string
		value time.Duration
	}{
		{"heartbeat_interval", c.HeartbeatInterval}, {"poll_interval", c.PollInterval},
		{"drain_timeout", c.DrainTimeout}, {"ack_interval", c.AckInterval}, {"statement_timeout", c.StatementTimeout},
	} {
		if d.value < minInterval {
			return invalid(d.field, "must be at least %s, got %s", minInterval, d.value)
		}
	}
	// The heartbeat renews a lease once it is half an interval old, at the
	// next tick: up to 1.5 intervals after it was taken. At Lease / 2 that
	// leaves a quarter of the lease for the renewal itself.
	if c.HeartbeatInterval > c.Lease/2 {
		return invalid("heartbeat_interval", "must be at most half the lease (%s), got %s: a lease is renewed up to 1.5 intervals after it was taken", c.Lease/2, c.HeartbeatInterval)
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("relay: config: %w", &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// defaultConsumerID is unique per process: two relays on one host differ by
// pid, two processes reusing a pid (containers) by the random suffix.
func defaultConsumerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relay"
	}
	if len(host) > 200 {
		host = host[:200]
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}
