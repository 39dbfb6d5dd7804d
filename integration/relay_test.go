package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// ledger counts handler calls per message.
type ledger struct {
	mu    sync.Mutex
	calls map[string]int
}

func newLedger() *ledger { return &ledger{calls: map[string]int{}} }

func (l *ledger) record(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[id]++
	return l.calls[id]
}

func (l *ledger) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[id]
}

func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		n += c
	}
	return n
}

func relayConfig(h relay.Handler) relay.Config {
	return relay.Config{
		Lane: outbox.LaneCanonical, Target: outbox.TargetProtocolProjector, Handler: h,
		PollInterval: 20 * time.Millisecond, AckInterval: 5 * time.Millisecond,
	}
}

// runRelay starts r and returns a function that stops it and waits for Run
// to return.
func runRelay(t *testing.T, r *relay.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newRelay(t *testing.T, s relay.Store, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Several relays drain a backlog: every message handled and acked exactly
// once (no lease expires and no ack is lost in a run without faults).
func TestRelaysDeliverEveryMessageOnce(t *testing.T) {
	f := newFixture(t)
	const total = 1500
	drafts := make([]outbox.Draft, total)
	for i := range drafts {
		drafts[i] = draft(`{"n":` + itoa(i) + `}`)
	}
	if _, err := f.store.EnqueueMany(f.ctx, drafts); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	var stops []func()
	for i := range 3 {
		cfg := relayConfig(func(_ context.Context, m outbox.Message) error {
			l.record(m.ID)
			return nil
		})
		cfg.Concurrency = 8
		cfg.ConsumerID = "relay-" + itoa(i)
		stops = append(stops, runRelay(t, newRelay(t, f.store, cfg)))
	}
	eventually(t, time.Minute, "every message delivered", func() bool {
		return f.count("status = 'delivered'") == total
	})
	for _, stop := range stops {
		stop()
	}
	if l.total() != total {
		t.Errorf("%d handler calls for %d messages", l.total(), total)
	}
	for id, n := range l.calls {
		if n != 1 {
			t.Errorf("message %s handled %d times", id, n)
		}
	}
}

// A relay that dies mid-batch (its Run cancelled, handlers abandoned without
// a drain) leaves its messages claimed; another relay delivers them once
// their leases expire. Nothing is lost and nothing that failed is acked.
func TestCrashedRelaysMessagesAreDeliveredAfterLeaseExpiry(t *testing.T) {
	f := newFixture(t)
	const total = 40
	for i := range total {
		f.enqueue(f.store, draft(itoa(i)))
	}
	started := make(chan struct{}, total)
	stuckCfg := relayConfig(func(ctx context.Context, _ outbox.Message) error {
		started <- struct{}{}
		<-ctx.Done() // hangs until abandoned
		return ctx.Err()
	})
	stuckCfg.Concurrency, stuckCfg.BatchSize = 10, 10
	stuckCfg.Lease, stuckCfg.HeartbeatInterval = time.Second, 300*time.Millisecond
	stuckCfg.DrainTimeout = time.Millisecond
	stopStuck := runRelay(t, newRelay(t, f.store, stuckCfg))
	for range 10 {
		<-started
	}
	stopStuck() // dies with 10 messages claimed
	if n := f.count("status = 'claimed'"); n != 10 {
		t.Fatalf("%d claimed after the crash, want 10", n)
	}
	if n := f.count("status = 'delivered'"); n != 0 {
		t.Fatalf("the crashed relay acked %d messages it never delivered", n)
	}

	l := newLedger()
	cfg := relayConfig(func(_ context.Context, m outbox.Message) error {
		l.record(m.ID)
		return nil
	})
	cfg.Lease = time.Second
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 30*time.Second, "all messages delivered", func() bool {
		return f.count("status = 'delivered'") == total
	})
	if n := f.count("status = 'delivered' AND attempt_count = 2"); n != 10 {
		t.Errorf("%d messages on their second attempt, want the crashed relay's 10", n)
	}
}

// Failures are retried after Config.Backoff's delay on the store's clock,
// until the last attempt dead-letters the message.
func TestRelayRetriesOnBackoffScheduleThenDeadLetters(t *testing.T) {
	c := newClock()
	f := newFixture(t, outbox.WithClock(c.Now))
	d := draft(`{}`)
	d.MaxAttempts = 3
	m := f.enqueue(f.store, d)
	var calls atomic.Int32
	cfg := relayConfig(func(context.Context, outbox.Message) error {
		calls.Add(1)
		return errors.New("target says 503")
	})
	cfg.Backoff = func(attempt int) time.Duration { return time.Duration(attempt) * 10 * time.Second }
	runRelay(t, newRelay(t, f.store, cfg))

	for attempt := 1; attempt <= 2; attempt++ {
		eventually(t, 10*time.Second, fmt.Sprintf("attempt %d nacked", attempt), func() bool {
			got := f.get(f.store, m.ID)
			return got.Status == outbox.StatusPending && got.AttemptCount == attempt
		})
		got := f.get(f.store, m.ID)
		want := c.Now().Add(time.Duration(attempt) * 10 * time.Second)
		if !got.AvailableAt.Equal(want) || got.LastError != "target says 503" {
			t.Fatalf("attempt %d: available %v (want %v), error %q", attempt, got.AvailableAt, want, got.LastError)
		}
		// Not retried before its time, whatever the relay's polling.
		time.Sleep(100 * time.Millisecond)
		if n := calls.Load(); n != int32(attempt) {
			t.Fatalf("%d calls before the retry time, want %d", n, attempt)
		}
		c.Advance(time.Duration(attempt) * 10 * time.Second)
	}
	eventually(t, 10*time.Second, "dead letter after the last attempt", func() bool {
		return f.get(f.store, m.ID).Status == outbox.StatusDeadLetter
	})
	if got := f.get(f.store, m.ID); got.AttemptCount != 3 || calls.Load() != 3 {
		t.Errorf("dead letter after %d attempts and %d calls, want 3", got.AttemptCount, calls.Load())
	}
}

func TestRelayPermanentErrorDeadLettersAtOnce(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	cfg := relayConfig(func(context.Context, outbox.Message) error {
		return relay.Permanent(errors.New("400: unknown customer"))
	})
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 10*time.Second, "dead letter", func() bool {
		return f.get(f.store, m.ID).Status == outbox.StatusDeadLetter
	})
	got := f.get(f.store, m.ID)
	if got.AttemptCount != 1 || !strings.Contains(got.LastError, "400: unknown customer") {
		t.Errorf("dead letter %+v", got)
	}
}

// A panicking handler is a failed delivery: recovered, nacked, retried; the
// relay keeps going.
func TestRelayRecoversHandlerPanics(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	other := f.enqueue(f.store, draft(`"fine"`))
	l := newLedger()
	cfg := relayConfig(func(_ context.Context, msg outbox.Message) error {
		if l.record(msg.ID) == 1 && msg.ID == m.ID {
			panic("nil map in handler")
		}
		return nil
	})
	cfg.Backoff = func(int) time.Duration { return 0 }
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 10*time.Second, "both delivered", func() bool {
		return f.count("status = 'delivered'") == 2
	})
	got := f.get(f.store, m.ID)
	if got.AttemptCount != 2 || !strings.Contains(got.LastError, "panicked: nil map in handler") {
		t.Errorf("panicked message %+v", got)
	}
	if l.count(other.ID) != 1 {
		t.Errorf("the other message was handled %d times", l.count(other.ID))
	}
}

// A handler that runs three times longer than the lease keeps its message:
// the heartbeat extends the lease, so a competing relay never gets it.
func TestHeartbeatKeepsLongHandlersExclusive(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	l := newLedger()
	handler := func(ctx context.Context, msg outbox.Message) error {
		l.record(msg.ID)
		select {
		case <-time.After(3 * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i := range 2 {
		cfg := relayConfig(handler)
		cfg.Lease, cfg.HeartbeatInterval = time.Second, 250*time.Millisecond
		cfg.ConsumerID = "relay-" + itoa(i)
		runRelay(t, newRelay(t, f.store, cfg))
	}
	eventually(t, 20*time.Second, "delivered", func() bool {
		return f.get(f.store, m.ID).Status == outbox.StatusDelivered
	})
	if n := l.count(m.ID); n != 1 {
		t.Fatalf("handled %d times, want once", n)
	}
	if got := f.get(f.store, m.ID); got.AttemptCount != 1 {
		t.Fatalf("attempts %d, want 1", got.AttemptCount)
	}
}

// When the heartbeat finds the claim gone, the handler's context is
// cancelled and its result ignored.
func TestLostClaimCancelsHandler(t *testing.T) {
	f := newFixture(t)
	m := f.enqueue(f.store, draft(`{}`))
	cancelled := make(chan struct{})
	cfg := relayConfig(func(ctx context.Context, _ outbox.Message) error {
		<-ctx.Done()
		close(cancelled)
		return nil // claims success; must not be acked
	})
	cfg.Lease, cfg.HeartbeatInterval = time.Second, 100*time.Millisecond
	runRelay(t, newRelay(t, f.store, cfg))
	eventually(t, 10*time.Second, "claimed", func() bool { return f.get(f.store, m.ID).Status == outbox.StatusClaimed })
	// Another consumer takes the message over (as after a long stall).
	if _, err := f.pool.Exec(f.ctx, `UPDATE pgoutbox_message SET claim_token = gen_random_uuid(), claimed_by = 'usurper' WHERE id = $1::bigint`, m.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not cancelled after the claim was lost")
	}
	time.Sleep(100 * time.Millisecond)
	if got := f.get(f.store, m.ID); got.Status != outbox.StatusClaimed || got.ClaimedBy != "usurper" {
		t.Fatalf("the loser touched the message: %+v", got)
	}
}

func startNotifier(t *testing.T, f *fixture) *relay.Notifier {
	t.Helper()
	n := relay.NewNotifier(f.pool, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-n.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("notifier never listened")
	}
	return n
}

// With polling once a minute, a message enqueued by another connection is
// still handled promptly: the commit's NOTIFY wakes the idle relay.
func TestNotifyWakesIdleRelay(t *testing.T) {
	f := newFixture(t)
	handled := make(chan time.Time, 1)
	idleRelay(t, f, relay.ModeClaim, func(context.Context, outbox.Message) error {
		handled <- time.Now()
		return nil
	})

	producer := outbox.NewPostgresStore(pgtestPool(t, f)) // another connection pool
	sent := time.Now()
	if _, err := producer.Enqueue(f.ctx, draft(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-handled:
		t.Logf("handled %s after commit", at.Sub(sent))
	case <-time.After(30 * time.Second):
		t.Fatal("not handled within 30s although the relay polls only once a minute: NOTIFY did not wake it")
	}
}

// Without NOTIFY (WithNotify(false)) the same relay waits for its poll.
func TestWithoutNotifyIdleRelayWaitsForPoll(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	idleRelay(t, f, relay.ModeClaim, func(context.Context, outbox.Message) error { calls.Add(1); return nil })
	quiet := outbox.NewPostgresStore(f.pool, outbox.WithNotify(false))
	if _, err := quiet.Enqueue(f.ctx, draft(`{}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if calls.Load() != 0 {
		t.Fatal("woken without a notification")
	}
}

// After Run returns, every success is acked and no goroutine of the relay
// is left behind.
func TestRunDrainsAndLeavesNoGoroutines(t *testing.T) {
	d := newSequentialFixture(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const total = 300
	drafts := make([]outbox.Draft, total)
	for i := range drafts {
		drafts[i] = draft(itoa(i))
	}
	if _, err := d.store.EnqueueMany(d.ctx, drafts); err != nil {
		t.Fatal(err)
	}
	var succeeded atomic.Int32
	cfg := relayConfig(func(context.Context, outbox.Message) error {
		time.Sleep(time.Millisecond)
		succeeded.Add(1)
		return nil
	})
	cfg.AckInterval = time.Hour // only size or the drain flushes
	cfg.AckBatchSize = 1000
	r := newRelay(t, d.store, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	eventually(t, time.Minute, "some successes", func() bool { return succeeded.Load() >= 100 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := d.count("status = 'delivered'"); n != int(succeeded.Load()) {
		t.Fatalf("%d delivered but %d handlers succeeded: the drain did not flush every ack", n, succeeded.Load())
	}
	if n := d.count("status = 'claimed'"); n != 0 {
		t.Fatalf("%d messages left claimed after a clean drain", n)
	}
}

func TestRelayConfigValidation(t *testing.T) {
	f := newFixture(t)
	ok := func(context.Context, outbox.Message) error { return nil }
	for field, cfg := range map[string]relay.Config{
		"handler":            {Lane: "l", Target: "t"},
		"lane":               {Target: "t", Handler: ok},
		"target":             {Lane: "l", Target: " ", Handler: ok},
		"concurrency":        {Lane: "l", Target: "t", Handler: ok, Concurrency: -1},
		"lease":              {Lane: "l", Target: "t", Handler: ok, Lease: -time.Second},
		"heartbeat_interval": {Lane: "l", Target: "t", Handler: ok, Lease: time.Second, HeartbeatInterval: 900 * time.Millisecond},
		"limit":              {Lane: "l", Target: "t", Handler: ok, BatchSize: outbox.MaxClaimLimit + 1},
		"consumer_id":        {Lane: "l", Target: "t", Handler: ok, ConsumerID: "a\nb"},
		"poll_interval":      {Lane: "l", Target: "t", Handler: ok, PollInterval: time.Nanosecond},
	} {
		_, err := relay.New(f.store, cfg)
		var verr *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &verr) || verr.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
}

// A burst of enqueues notifies only every outbox.DefaultNotifyInterval, yet
// an idle relay that polls once a minute handles all of it promptly: after a
// wake-up it claims until caught up and follows up shortly after.
func TestNotifyBurstIsHandledWithoutWaitingForPoll(t *testing.T) {
	f := newFixture(t)
	var handled atomic.Int32
	idleRelay(t, f, relay.ModeClaim, func(context.Context, outbox.Message) error { handled.Add(1); return nil })
	const burst = 60
	for i := range burst {
		if _, err := f.store.Enqueue(f.ctx, draft(itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "the whole burst handled (the relay polls once a minute)", func() bool {
		return handled.Load() == burst
	})
}

// While a relay drains a backlog, successes ride on its next claim rather
// than costing statements of their own: a separate ack statement per batch
// would double the commits per message.
func TestBacklogAcksRideOnClaims(t *testing.T) {
	f := newFixture(t)
	pool, rec := tracedPool(t, f)
	store := outbox.NewPostgresStore(pool, outbox.WithNotify(false))
	const total = 3000
	f.fill(store, total, draft(`{}`))
	cfg := relayConfig(func(context.Context, outbox.Message) error { return nil })
	cfg.Concurrency = 100
	cfg.AckInterval = 10 * time.Millisecond
	stop := runRelay(t, newRelay(t, store, cfg))
	eventually(t, time.Minute, "every message delivered", func() bool {
		return f.count("status = 'delivered'") == total
	})
	stop()
	claims, ackStatements, ackedApart := 0, 0, 0
	rec.mu.Lock()
	for _, c := range rec.calls {
		switch {
		case strings.HasPrefix(c.SQL, "-- name: MessageClaim "):
			claims++
		case strings.HasPrefix(c.SQL, "-- name: MessageAckMany "):
			ackStatements++
			for _, a := range c.Args {
				if ids, ok := a.([]int64); ok {
					ackedApart += len(ids)
				}
			}
		}
	}
	rec.mu.Unlock()
	t.Logf("%d claims, %d ack statements acking %d of %d messages", claims, ackStatements, ackedApart, total)
	if ackedApart > total/10 {
		t.Errorf("%d of %d messages acked by statements of their own (%d), not by the next claim", ackedApart, total, ackStatements)
	}
}
