package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/pgoutbox/pgoutbox/outbox"
)

var _ Store = (*outbox.PostgresStore)(nil)

// Relay delivers the messages of one lane and target. Create it with New.
type Relay struct {
	store   Store
	locker  BatchLocker // ModeLock only
	cfg     Config
	metrics *metrics
	tracer  trace.Tracer
	running atomic.Bool
}

// New validates cfg, fills in its defaults and returns a relay on store.
// Errors wrap outbox.ErrValidation and name the field.
func New(store Store, cfg Config) (*Relay, error) {
	if store == nil {
		return nil, invalid("store", "is required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.MeterProvider, cfg.Lane, cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("relay: metrics: %w", err)
	}
	r := &Relay{store: store, cfg: cfg, metrics: m, tracer: cfg.TracerProvider.Tracer(meterName)}
	if cfg.Mode == ModeLock {
		locker, ok := store.(BatchLocker)
		if !ok {
			return nil, invalid("mode", "ModeLock needs a store with LockBatch, and %T has none", store)
		}
		r.locker = locker
	}
	return r, nil
}

// ConsumerID returns the id the relay claims under.
func (r *Relay) ConsumerID() string { return r.cfg.ConsumerID }

// abandonGrace is how long Run waits, after cancelling the handlers that
// outlived DrainTimeout, for them to return.
const abandonGrace = time.Second

// Run delivers messages until ctx ends, then drains: it stops claiming, waits
// up to DrainTimeout for in-flight handlers, cancels those still running and
// leaves their messages to lease expiry, flushes pending acks, and returns.
// It returns an error only when Run is already running.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("relay: Run is already running")
	}
	defer r.running.Store(false)

	// Handlers and the writes after them outlive ctx during the drain;
	// abandon cancels them when the drain gives up.
	base := context.WithoutCancel(ctx)
	work, abandon := context.WithCancel(base)
	defer abandon()

	var wake <-chan Wakeup
	if r.cfg.Wakeups != nil {
		ch, unsubscribe := r.cfg.Wakeups.Subscribe(r.store.Scope(), r.cfg.Lane, r.cfg.Target)
		defer unsubscribe()
		wake = ch
	}
	w := newWaiter(wake, r.cfg.PollInterval)
	defer w.stop()
	exec := newExecutor(r.cfg.Handler, r.cfg.Backoff, r.tracer, r.cfg.Propagator, r.metrics, r.cfg.Logger)
	var handlers sync.WaitGroup
	r.cfg.Logger.InfoContext(ctx, "relay: started", "lane", r.cfg.Lane, "target", r.cfg.Target, "mode", r.cfg.Mode,
		"consumer", r.cfg.ConsumerID, "concurrency", r.cfg.Concurrency, "wakeups", r.cfg.Wakeups != nil)

	var finish func()
	if r.cfg.Mode == ModeLock {
		// A batch drains within the loop: run returns with no handler
		// left but those that ignored cancellation, which it has logged.
		l := &lockLoop{cfg: &r.cfg, locker: r.locker, exec: exec, waiter: w, metrics: r.metrics, base: base, work: work}
		l.run(ctx)
		finish = func() {}
	} else {
		c := newClaimLoop(base, work, &r.cfg, r.store, exec, w, r.metrics, &handlers)
		c.run(ctx)
		finish = c.stop
	}

	// Drain: handlers still running get DrainTimeout, then are cancelled.
	handlersDone := make(chan struct{})
	go func() { handlers.Wait(); close(handlersDone) }()
	select {
	case <-handlersDone:
	case <-time.After(r.cfg.DrainTimeout):
		r.cfg.Logger.Warn("relay: drain timeout; cancelling handlers and leaving their messages to lease expiry",
			"lane", r.cfg.Lane, "target", r.cfg.Target)
		abandon()
		select {
		case <-handlersDone:
		case <-time.After(abandonGrace):
			r.cfg.Logger.Error("relay: handlers ignored cancellation; returning without them",
				"lane", r.cfg.Lane, "target", r.cfg.Target)
		}
	}
	finish()
	r.cfg.Logger.Info("relay: stopped", "lane", r.cfg.Lane, "target", r.cfg.Target, "consumer", r.cfg.ConsumerID)
	return nil
}
