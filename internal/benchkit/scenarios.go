package benchkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

const (
	lane   = "bench"
	target = "noop"
)

func payload(i int64) json.RawMessage {
	return json.RawMessage(`{"order_id":` + strconv.FormatInt(i, 10) + `,"event":"order_placed","total_cents":4200}`)
}

// NotifyMode is how enqueues notify relays.
type NotifyMode string

// The notify modes the enqueue scenario compares.
const (
	NotifyOff   NotifyMode = "off"   // WithNotify(false)
	NotifyEvery NotifyMode = "every" // WithNotifyInterval(0): every enqueue
	NotifyLimit NotifyMode = "limit" // the default: once per DefaultNotifyInterval
)

func (m NotifyMode) options() []outbox.Option {
	switch m {
	case NotifyOff:
		return []outbox.Option{outbox.WithNotify(false)}
	case NotifyEvery:
		return []outbox.Option{outbox.WithNotifyInterval(0)}
	}
	return nil
}

func (m NotifyMode) String() string {
	switch m {
	case NotifyOff:
		return "NOTIFY off"
	case NotifyEvery:
		return "NOTIFY every enqueue"
	}
	return "NOTIFY every " + outbox.DefaultNotifyInterval.String() + " (default)"
}

// Enqueue measures single-message enqueues, each in its own transaction
// (as a service writes them beside its domain row), from clients
// goroutines for d, in a scope of its own (Result.Scope).
func (h *Harness) Enqueue(ctx context.Context, clients int, mode NotifyMode, d time.Duration) (res Result, err error) {
	pool := h.Pool
	sc := NewScope("bench-enqueue")
	// Even a failed run says where it wrote, so that callers can clean up.
	defer func() { res.Scope = sc }()
	store, err := scoped(pool, sc, mode.options()...)
	if err != nil {
		return Result{}, err
	}
	win, err := h.Begin(ctx, "pgoutbox_message")
	if err != nil {
		return Result{}, err
	}
	var n atomic.Int64
	stop := Progress(h.Progress, fmt.Sprintf("enqueue %d clients, %s", clients, mode), &n)
	defer stop()
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				if err := enqueueOne(ctx, pool, store, payload(n.Load())); err != nil {
					errOnce.Do(func() { firstErr = err })
					cancel()
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Result{}, firstErr
	}
	ev, err := win.End(ctx)
	if err != nil {
		return Result{}, err
	}
	variant := fmt.Sprintf("%d clients, %s", clients, mode)
	return Result{
		Scenario: "enqueue", Variant: variant, Scope: sc, Messages: n.Load(), Elapsed: elapsed, PerSec: Rate(n.Load(), elapsed),
		Enqueued: n.Load(), EnqueueWAL: ev.WAL, Evidence: ev,
	}, nil
}

func enqueueOne(ctx context.Context, pool *pgxpool.Pool, store *outbox.PostgresStore, p json.RawMessage) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: lane, Target: target, Payload: p}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Fill enqueues total messages in batches of 1000 into a fresh scope.
func Fill(ctx context.Context, store *outbox.PostgresStore, total int) error {
	const batch = 1000
	drafts := make([]outbox.Draft, 0, batch)
	for i := range total {
		drafts = append(drafts, outbox.Draft{Lane: lane, Target: target, Payload: payload(int64(i))})
		if len(drafts) == batch || i == total-1 {
			if _, err := store.EnqueueMany(ctx, drafts); err != nil {
				return err
			}
			drafts = drafts[:0]
		}
	}
	return nil
}

// BurnDown enqueues total messages (Fill, in a window of its own: the
// result's EnqueueWAL), then drains them with relays relays of the given
// concurrency and a no-op handler (the measured window), and reports
// messages per second from the relays' start until every message is acked.
// It runs in a scope of its own (Result.Scope).
func (h *Harness) BurnDown(ctx context.Context, total, relays, concurrency int, mode relay.Mode) (res Result, err error) {
	sc := NewScope("bench-burndown")
	// Even a failed run says where it wrote, so that callers can clean up.
	defer func() { res.Scope = sc }()
	store, err := scoped(h.Pool, sc, outbox.WithNotify(false))
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(h.Progress, "  burn-down: enqueueing %d messages\n", total)
	return h.burnDown(ctx, store, total, relays, concurrency, mode, func() error { return Fill(ctx, store, total) })
}

// burnDown runs fill in a window, then drains the total messages it
// enqueued into store in another (see BurnDown). Keyed messages are checked
// for order as they are handled.
func (h *Harness) burnDown(ctx context.Context, store *outbox.PostgresStore, total, relays, concurrency int, mode relay.Mode, fill func() error) (Result, error) {
	win, err := h.Begin(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := fill(); err != nil {
		return Result{}, err
	}
	filled, err := win.End(ctx)
	if err != nil {
		return Result{}, err
	}
	if win, err = h.Begin(ctx, "pgoutbox_message"); err != nil {
		return Result{}, err
	}
	res, err := DrainUntil(ctx, store, DrainConfig{
		Total: total, Relays: relays, Concurrency: concurrency, Mode: mode, Check: NewOrderCheck(), Progress: h.Progress,
	})
	if err != nil {
		return Result{}, err
	}
	ev, err := win.End(ctx)
	if err != nil {
		return Result{}, err
	}
	res.Enqueued, res.EnqueueWAL = int64(total), filled.WAL
	res.Delivered, res.DeliveryWAL, res.Evidence = int64(total), ev.WAL, ev
	return res, nil
}

// Drain drains total messages already in store with relays relays of the
// given concurrency and mode and a no-op handler. It measures no window:
// callers wrap it in one.
func Drain(ctx context.Context, store *outbox.PostgresStore, total, relays, concurrency int, mode relay.Mode, progress io.Writer) (Result, error) {
	return drain(ctx, store, DrainConfig{Total: total, Relays: relays, Concurrency: concurrency, Mode: mode, Progress: progress})
}

func drain(ctx context.Context, store *outbox.PostgresStore, cfg DrainConfig) (Result, error) {
	total, relays, concurrency, mode, check := cfg.Total, cfg.Relays, cfg.Concurrency, cfg.Mode, cfg.Check
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	var handled, all atomic.Int64
	done := make(chan struct{})
	handler := func(_ context.Context, m outbox.Message) error {
		if check != nil {
			check.Start(m)
			defer check.Done(m)
		}
		all.Add(1)
		if (cfg.Counts == nil || cfg.Counts(m)) && handled.Add(1) == int64(total) {
			close(done)
		}
		return nil
	}
	stop := Progress(cfg.Progress, fmt.Sprintf("burn-down %d relays x %d", relays, concurrency), &handled)
	defer stop()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range relays {
		r, err := relay.New(store, relay.Config{
			Lane: lane, Target: target, Handler: handler, Concurrency: concurrency, Mode: mode,
			ConsumerID: fmt.Sprintf("bench-%d", i), PollInterval: 50 * time.Millisecond,
		})
		if err != nil {
			return Result{}, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(runCtx) }()
	}
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		wg.Wait()
		return Result{}, ctx.Err()
	}
	cancel()
	wg.Wait() // Run returns after flushing its acks
	elapsed := time.Since(start)
	left, err := store.List(ctx, outbox.ListFilter{Status: outbox.StatusClaimed, Limit: 1})
	if err != nil {
		return Result{}, err
	}
	if len(left) > 0 {
		return Result{}, fmt.Errorf("burn-down: messages left claimed after the drain")
	}
	variant := fmt.Sprintf("%d relays x concurrency %d", relays, concurrency)
	if mode == relay.ModeLock {
		variant += ", lock mode"
	}
	return Result{
		Scenario: "burn-down", Variant: variant,
		Messages: int64(total), Elapsed: elapsed, PerSec: Rate(int64(total), elapsed), Delivered: all.Load(),
	}, nil
}

// WakeUp measures commit-to-handler latency for an idle relay that gets one
// message every interval: woken by NOTIFY (poll interval one minute) or
// polling every pollInterval with NOTIFY off. It runs in a scope of its own
// (Result.Scope), in one window.
func (h *Harness) WakeUp(ctx context.Context, notify bool, pollInterval time.Duration, count int, interval time.Duration) (res Result, err error) {
	pool := h.Pool
	sc := NewScope("bench-wakeup")
	// Even a failed run says where it wrote, so that callers can clean up.
	defer func() { res.Scope = sc }()
	store, err := scoped(pool, sc, outbox.WithNotify(notify))
	if err != nil {
		return Result{}, err
	}
	win, err := h.Begin(ctx, "pgoutbox_message")
	if err != nil {
		return Result{}, err
	}
	var (
		mu        sync.Mutex
		committed = map[string]time.Time{}
		latencies []time.Duration
		handled   atomic.Int64
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := relay.Config{
		Lane: lane, Target: target, PollInterval: pollInterval,
		Handler: func(_ context.Context, m outbox.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if t0, ok := committed[m.ID]; ok {
				latencies = append(latencies, time.Since(t0))
			}
			handled.Add(1)
			return nil
		},
	}
	var wg sync.WaitGroup
	stopRelay := func() { cancel(); wg.Wait() }
	if notify {
		n := relay.NewNotifier(pool, nil)
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.Run(runCtx) }()
		select {
		case <-n.Listening():
		case <-time.After(10 * time.Second):
			return Result{}, fmt.Errorf("wake-up: notifier did not start listening")
		}
		cfg.Wakeups = n
		cfg.PollInterval = time.Minute
	}
	r, err := relay.New(store, cfg)
	if err != nil {
		return Result{}, err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(runCtx) }()
	defer stopRelay()
	time.Sleep(200 * time.Millisecond) // let the relay go idle

	label := "wake-up poll " + pollInterval.String()
	if notify {
		label = "wake-up notify"
	}
	stop := Progress(h.Progress, label, &handled)
	defer stop()
	start := time.Now()
	for i := range count {
		// Hold the map lock across the commit: a handler that runs before
		// Enqueue returns waits for the commit time to be recorded (and
		// counts its latency from then, which errs on the short side by at
		// most the wait).
		mu.Lock()
		res, err := store.Enqueue(ctx, outbox.Draft{Lane: lane, Target: target, Payload: payload(int64(i))})
		if err == nil {
			committed[res.Message.ID] = time.Now()
		}
		mu.Unlock()
		if err != nil {
			return Result{}, err
		}
		time.Sleep(interval)
	}
	deadline := time.Now().Add(pollInterval + 10*time.Second)
	for handled.Load() < int64(count) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	mu.Lock()
	p50, p99 := Percentiles(latencies)
	n := len(latencies)
	mu.Unlock()
	if n < count {
		return Result{}, fmt.Errorf("wake-up: %d of %d messages handled", n, count)
	}
	stop()
	stopRelay()
	ev, err := win.End(ctx)
	if err != nil {
		return Result{}, err
	}
	variant := "NOTIFY (poll every 1m)"
	if !notify {
		variant = "polling every " + pollInterval.String()
	}
	return Result{
		Scenario: "wake-up", Variant: variant, Scope: sc, Messages: int64(n), Elapsed: elapsed, PerSec: Rate(int64(n), elapsed), P50: p50, P99: p99,
		Enqueued: int64(count), Delivered: int64(n), EnqueueWAL: ev.WAL, DeliveryWAL: ev.WAL, Evidence: ev,
	}, nil
}
