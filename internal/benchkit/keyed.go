package benchkit

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// KeyName is the ordering key of key number k in the keyed scenarios:
// zero-padded, so that key order (the order claims walk keys in) is
// numeric order.
func KeyName(k int) string { return fmt.Sprintf("key-%07d", k) }

// KeyedDrafts returns keys x perKey drafts, message-major: the first
// message of every key, then the second of every key, and so on, as a
// producer writing to many aggregates at once does. Enqueued in this order,
// ids within each key follow the key's message order.
func KeyedDrafts(keys, perKey int) []outbox.Draft {
	out := make([]outbox.Draft, 0, keys*perKey)
	for m := range perKey {
		for k := range keys {
			out = append(out, outbox.Draft{Lane: lane, Target: target, OrderingKey: KeyName(k), Payload: payload(int64(m*keys + k))})
		}
	}
	return out
}

// FillDrafts enqueues drafts in order, in batches of 1000 (EnqueueMany: one
// statement and one commit per batch, ordering keys locked as every keyed
// enqueue locks them).
func FillDrafts(ctx context.Context, store *outbox.PostgresStore, drafts []outbox.Draft) error {
	const batch = 1000
	for len(drafts) > 0 {
		n := min(batch, len(drafts))
		if _, err := store.EnqueueMany(ctx, drafts[:n]); err != nil {
			return err
		}
		drafts = drafts[n:]
	}
	return nil
}

// OrderCheck verifies, from a handler, what ordered delivery promises: at
// most one message of a key in a handler at a time, and a key's messages in
// id (enqueue) order. A benchmark of keyed delivery that broke either would
// measure something other than ordered delivery, so it fails instead.
type OrderCheck struct {
	mu       sync.Mutex
	last     map[string]int64
	inFlight map[string]bool
	err      error
}

// NewOrderCheck returns an empty check.
func NewOrderCheck() *OrderCheck {
	return &OrderCheck{last: map[string]int64{}, inFlight: map[string]bool{}}
}

// Start records that m entered a handler. Unkeyed messages are not checked.
func (c *OrderCheck) Start(m outbox.Message) {
	if m.OrderingKey == "" {
		return
	}
	id, err := strconv.ParseInt(m.ID, 10, 64)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil:
		c.fail(fmt.Errorf("ordering check: message id %q: %w", m.ID, err))
	case c.inFlight[m.OrderingKey]:
		c.fail(fmt.Errorf("ordering check: key %q: message %d handed out while an earlier one was in a handler", m.OrderingKey, id))
	case id <= c.last[m.OrderingKey]:
		c.fail(fmt.Errorf("ordering check: key %q: message %d handed out after message %d", m.OrderingKey, id, c.last[m.OrderingKey]))
	}
	c.inFlight[m.OrderingKey] = true
	c.last[m.OrderingKey] = id
}

// Done records that m left its handler.
func (c *OrderCheck) Done(m outbox.Message) {
	if m.OrderingKey == "" {
		return
	}
	c.mu.Lock()
	delete(c.inFlight, m.OrderingKey)
	c.mu.Unlock()
}

func (c *OrderCheck) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Err is the first violation seen, or nil.
func (c *OrderCheck) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// BurnDownKeyed is BurnDown for keys x perKey keyed messages (KeyedDrafts,
// enqueued by FillDrafts in a window of its own): the drain takes one
// message of a key at a time, and an OrderCheck fails the run if it ever
// takes more, or out of order.
func (h *Harness) BurnDownKeyed(ctx context.Context, keys, perKey, relays, concurrency int, mode relay.Mode) (res Result, err error) {
	total := keys * perKey
	sc := NewScope("bench-burndown-keyed")
	defer func() { res.Scope = sc }()
	store, err := scoped(h.Pool, sc, outbox.WithNotify(false))
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(h.Progress, "  burn-down: enqueueing %d keys x %d messages\n", keys, perKey)
	drafts := KeyedDrafts(keys, perKey)
	res, err = h.burnDown(ctx, store, total, relays, concurrency, mode, func() error { return FillDrafts(ctx, store, drafts) })
	if err != nil {
		return Result{}, err
	}
	res.Variant += fmt.Sprintf(", %d keys x %d", keys, perKey)
	return res, nil
}

// DrainConfig configures DrainUntil.
type DrainConfig struct {
	// Total is how many messages Counts accepts the drain waits for.
	Total               int
	Relays, Concurrency int
	Mode                relay.Mode
	// Counts says whether a handled message counts towards Total; nil
	// counts every message. Messages it does not count are handled (and
	// acked) all the same.
	Counts func(outbox.Message) bool
	// Check, when set, sees every message handled; its first violation
	// fails the drain.
	Check    *OrderCheck
	Progress io.Writer
}

// DrainUntil drains store with relays of a no-op handler until cfg.Total
// counted messages were handled, then stops the relays (they ack what they
// handled). Result.Messages and PerSec are the counted messages, Delivered
// every message handled. It measures no window: callers wrap it in one.
func DrainUntil(ctx context.Context, store *outbox.PostgresStore, cfg DrainConfig) (Result, error) {
	res, err := drain(ctx, store, cfg)
	if err != nil {
		return Result{}, err
	}
	if cfg.Check != nil {
		if err := cfg.Check.Err(); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}
