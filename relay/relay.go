package relay

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
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

// wakeFollowUps claims, followUpDelay apart, follow a wake-up (see
// claimLoop).
const (
	wakeFollowUps = 2
	followUpDelay = 2 * outbox.DefaultNotifyInterval
)

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

	s := &session{
		r:        r,
		base:     base,
		work:     work,
		inflight: map[string]*delivery{},
		freed:    make(chan struct{}, 1),
		retry:    make(chan struct{}, 1),
		timers:   map[*time.Timer]struct{}{},
	}
	s.acks = newAcker(s)
	ackDone := make(chan struct{})
	go func() { s.acks.run(); close(ackDone) }()
	hbStop, hbDone := make(chan struct{}), make(chan struct{})
	go func() { s.heartbeat(hbStop); close(hbDone) }()

	var wake <-chan struct{}
	if r.cfg.Wakeups != nil {
		ch, unsubscribe := r.cfg.Wakeups.Subscribe(r.store.Scope(), r.cfg.Lane, r.cfg.Target)
		defer unsubscribe()
		wake = ch
	}
	r.cfg.Logger.InfoContext(ctx, "relay: started", "lane", r.cfg.Lane, "target", r.cfg.Target,
		"consumer", r.cfg.ConsumerID, "concurrency", r.cfg.Concurrency, "wakeups", r.cfg.Wakeups != nil)

	if r.cfg.Mode == ModeLock {
		s.lockLoop(ctx, wake)
	} else {
		s.claimLoop(ctx, wake)
	}

	// Drain.
	handlersDone := make(chan struct{})
	go func() { s.handlers.Wait(); close(handlersDone) }()
	select {
	case <-handlersDone:
	case <-time.After(r.cfg.DrainTimeout):
		n := s.inflightCount()
		r.cfg.Logger.Warn("relay: drain timeout; cancelling handlers and leaving their messages to lease expiry",
			"lane", r.cfg.Lane, "target", r.cfg.Target, "handlers", n)
		abandon()
		select {
		case <-handlersDone:
		case <-time.After(abandonGrace):
			r.cfg.Logger.Error("relay: handlers ignored cancellation; returning without them",
				"lane", r.cfg.Lane, "target", r.cfg.Target, "handlers", s.inflightCount())
		}
	}
	close(hbStop)
	<-hbDone
	s.acks.close()
	<-ackDone
	s.stopRetryTimers()
	r.cfg.Logger.Info("relay: stopped", "lane", r.cfg.Lane, "target", r.cfg.Target, "consumer", r.cfg.ConsumerID)
	return nil
}

// session is the state of one Run.
type session struct {
	r        *Relay
	base     context.Context // outlives Run's ctx; for writes during the drain
	work     context.Context // parent of handler contexts; cancelled on abandon
	acks     *acker
	handlers sync.WaitGroup
	freed    chan struct{} // a handler slot was freed (coalesced)
	retry    chan struct{} // a nacked message became due (coalesced)

	// claimBacklog is set while the claim loop drains a backlog, so that
	// its next claim, due any moment, carries the acks (see acker.limits).
	claimBacklog atomic.Bool

	mu       sync.Mutex
	inflight map[string]*delivery
	timers   map[*time.Timer]struct{} // pending retry wake-ups
}

// delivery is one message in a handler.
type delivery struct {
	msg     outbox.Message
	cancel  context.CancelFunc
	renewed time.Time // when the lease was last taken or extended (local clock, durations only)
	lost    bool
}

func (s *session) inflightCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

// claimLoop claims while ctx lasts, as many messages as there are free
// handler slots (up to BatchSize), and starts a handler for each.
func (s *session) claimLoop(ctx context.Context, wake <-chan struct{}) {
	cfg := s.r.cfg
	defer s.claimBacklog.Store(false)
	failures := 0
	// After a wake-up the relay claims until it has caught up, then follows
	// up a few times at short intervals: producers notify at most once per
	// outbox.DefaultNotifyInterval, so messages committed just after the
	// notified one arrive without a notification of their own.
	followUps := 0
	// While a backlog lasts (the last claim came back full), wait for a
	// quarter of the batch to be free before claiming again: claiming each
	// freed slot on its own costs a statement per message.
	backlog := false
	batch := min(cfg.BatchSize, cfg.Concurrency) // the most one claim can take
	var gathering time.Time                      // when the current gather began
	for ctx.Err() == nil {
		inflight := s.inflightCount()
		free := cfg.Concurrency - inflight
		if free <= 0 || (backlog && inflight > 0 && free < max(1, batch/4)) {
			select {
			case <-ctx.Done():
				return
			case <-s.freed:
			}
			continue
		}
		if backlog && free < batch && s.gather(ctx, &gathering) {
			continue
		}
		gathering = time.Time{}
		n := min(free, cfg.BatchSize)
		// A claim that shutdown interrupted could still commit on the server
		// and leave messages claimed by nobody until their lease ends. So the
		// claim runs to completion; the drain handles what it returns.
		claimCtx, cancel := context.WithTimeout(s.base, s.r.cfg.StatementTimeout)
		acks := s.acks.take(outbox.MaxBatch)
		msgs, acked, err := s.r.store.ClaimAndAck(claimCtx, outbox.ClaimRequest{
			Lane: cfg.Lane, Target: cfg.Target, Limit: n, Lease: cfg.Lease, ConsumerID: cfg.ConsumerID,
		}, acks)
		cancel()
		if err != nil {
			s.claimBacklog.Store(false) // the acker flushes on its own until claims work again
			s.acks.giveBack(acks)
		} else {
			s.countAcks(acked)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			delay := min(cfg.PollInterval<<min(failures, 5), 30*time.Second)
			cfg.Logger.WarnContext(ctx, "relay: claim failed; retrying", "lane", cfg.Lane, "target", cfg.Target,
				"error", err, "retry_in", delay)
			sleep(ctx, delay)
			continue
		}
		failures = 0
		s.r.metrics.batch.Record(ctx, int64(len(msgs)), s.r.metrics.attrs)
		s.r.metrics.add(ctx, s.r.metrics.claimed, len(msgs))
		for _, m := range msgs {
			s.start(m)
		}
		backlog = len(msgs) == n
		s.claimBacklog.Store(backlog)
		if backlog {
			continue // there may be more
		}
		// Caught up: wait for a wake-up, a retry falling due, the next poll,
		// or the end.
		wait := cfg.PollInterval
		if followUps > 0 {
			followUps--
			wait = min(wait, followUpDelay)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-wake:
			followUps = wakeFollowUps
		case <-s.retry:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Handlers that finish in a burst (fast ones finish a whole batch within a
// millisecond or two) are worth waiting for during a backlog: one claim of
// the whole batch costs one statement, claiming each quarter as it frees
// costs four. gather waits for the next freed slot while slots keep freeing
// within gatherGap of each other, for gatherMax in all; a slow or stuck
// handler ends the wait after one gap.
const (
	gatherGap = time.Millisecond
	gatherMax = 5 * time.Millisecond
)

// gather reports whether a slot freed within gatherGap (the caller looks
// again), or false when it is time to claim what is free. since holds when
// the gather began.
func (s *session) gather(ctx context.Context, since *time.Time) bool {
	now := time.Now()
	if since.IsZero() {
		*since = now
	}
	left := gatherMax - now.Sub(*since)
	if left <= 0 {
		return false
	}
	t := time.NewTimer(min(gatherGap, left))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-s.freed:
		return true
	case <-t.C:
		return false
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (s *session) start(m outbox.Message) {
	hctx, cancel := context.WithCancel(s.work)
	d := &delivery{msg: m, cancel: cancel, renewed: time.Now()}
	s.mu.Lock()
	s.inflight[m.ID] = d
	s.mu.Unlock()
	s.r.metrics.inflight.Add(hctx, 1, s.r.metrics.attrs)
	s.handlers.Add(1)
	go s.deliver(hctx, d)
}

// finish removes a delivery from the in-flight set and reports whether its
// claim was lost meanwhile.
func (s *session) finish(d *delivery) (lost bool) {
	s.mu.Lock()
	delete(s.inflight, d.msg.ID)
	lost = d.lost
	s.mu.Unlock()
	d.cancel()
	select {
	case s.freed <- struct{}{}:
	default:
	}
	return lost
}

func (s *session) deliver(hctx context.Context, d *delivery) {
	defer s.handlers.Done()
	r, m := s.r, d.msg
	ctx, span := r.tracer.Start(hctx, "pgoutbox.deliver", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("pgoutbox.message.id", m.ID),
			attribute.String("pgoutbox.lane", m.Lane),
			attribute.String("pgoutbox.target", m.Target),
			attribute.Int("pgoutbox.attempt", m.AttemptCount),
		))
	started := time.Now()
	err := s.call(ctx, m)
	r.metrics.duration.Record(ctx, time.Since(started).Seconds(), r.metrics.attrs)
	r.metrics.inflight.Add(ctx, -1, r.metrics.attrs)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "handler failed")
	}
	span.End()

	lost := s.finish(d)
	switch {
	case lost:
		// The heartbeat found another holder; whatever the handler did, the
		// message is theirs now.
		r.metrics.add(s.base, r.metrics.lost, 1)
	case err == nil:
		s.acks.add(m.Receipt())
	case s.work.Err() != nil:
		// Abandoned at the end of the drain: leave it to lease expiry.
	case IsPermanent(err):
		s.deadLetter(m, err)
	default:
		s.nack(m, err)
	}
}

// call runs the handler, turning a panic into an error.
func (s *session) call(ctx context.Context, m outbox.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.r.cfg.Logger.ErrorContext(ctx, "relay: handler panicked", "id", m.ID, "lane", m.Lane,
				"target", m.Target, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return s.r.cfg.Handler(ctx, m)
}

func (s *session) nack(m outbox.Message, cause error) {
	r := s.r
	ctx, cancel := context.WithTimeout(s.base, s.r.cfg.StatementTimeout)
	defer cancel()
	delay := max(r.cfg.Backoff(m.AttemptCount), 0)
	outcome, err := r.store.NackAfter(ctx, m.ID, m.ClaimToken, cause.Error(), min(delay, outbox.MaxRetryDelay))
	switch {
	case err != nil:
		r.cfg.Logger.Error("relay: nack failed; the message returns after its lease", "id", m.ID, "error", err)
	case outcome == outbox.NackRequeued:
		r.metrics.add(ctx, r.metrics.nacked, 1)
		s.wakeForRetry(delay)
		r.cfg.Logger.Debug("relay: delivery failed; retrying", "id", m.ID, "attempt", m.AttemptCount, "retry_in", delay, "error", cause)
	case outcome == outbox.NackDeadLettered:
		r.metrics.add(ctx, r.metrics.deadLettered, 1)
		r.cfg.Logger.Warn("relay: delivery failed on the last attempt; dead-lettered", "id", m.ID, "attempts", m.AttemptCount, "error", cause)
	default:
		r.metrics.add(ctx, r.metrics.lost, 1)
	}
}

// countAcks records the outcome of acks: true acked, false found the claim
// lost (another consumer has the message).
func (s *session) countAcks(held []bool) {
	r := s.r
	acked := 0
	for _, ok := range held {
		if ok {
			acked++
		}
	}
	r.metrics.add(s.base, r.metrics.acked, acked)
	if lost := len(held) - acked; lost > 0 {
		r.cfg.Logger.Warn("relay: acks found the claims lost; another consumer has these messages", "messages", lost)
		r.metrics.add(s.base, r.metrics.lost, lost)
	}
}

// wakeForRetry makes an idle relay claim again when a message it nacked
// falls due, rather than at its next poll (no notification announces a
// retry). Retries due after the next poll need no timer.
func (s *session) wakeForRetry(delay time.Duration) {
	if delay >= s.r.cfg.PollInterval {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		s.mu.Lock()
		delete(s.timers, t)
		s.mu.Unlock()
		select {
		case s.retry <- struct{}{}:
		default:
		}
	})
	s.timers[t] = struct{}{}
}

func (s *session) stopRetryTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.timers {
		t.Stop()
	}
	clear(s.timers)
}

func (s *session) deadLetter(m outbox.Message, cause error) {
	r := s.r
	ctx, cancel := context.WithTimeout(s.base, s.r.cfg.StatementTimeout)
	defer cancel()
	ok, err := r.store.DeadLetter(ctx, m.ID, m.ClaimToken, cause.Error())
	switch {
	case err != nil:
		r.cfg.Logger.Error("relay: dead-letter failed; the message returns after its lease", "id", m.ID, "error", err)
	case ok:
		r.metrics.add(ctx, r.metrics.deadLettered, 1)
		r.cfg.Logger.Warn("relay: permanent failure; dead-lettered", "id", m.ID, "error", cause)
	default:
		r.metrics.add(ctx, r.metrics.lost, 1)
	}
}

// heartbeat extends the leases of in-flight messages every
// HeartbeatInterval, and cancels the handlers of claims found lost.
func (s *session) heartbeat(stop <-chan struct{}) {
	r := s.r
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// Renew what has not been renewed for half an interval; a message
		// claimed a moment ago still has nearly its whole lease.
		cutoff := time.Now().Add(-r.cfg.HeartbeatInterval / 2)
		s.mu.Lock()
		var due []*delivery
		for _, d := range s.inflight {
			if !d.renewed.After(cutoff) {
				due = append(due, d)
			}
		}
		s.mu.Unlock()
		for len(due) > 0 {
			n := min(len(due), outbox.MaxBatch)
			s.extend(due[:n])
			due = due[n:]
		}
	}
}

func (s *session) extend(due []*delivery) {
	r := s.r
	receipts := make([]outbox.Receipt, len(due))
	for i, d := range due {
		receipts[i] = d.msg.Receipt()
	}
	ctx, cancel := context.WithTimeout(s.base, min(r.cfg.StatementTimeout, r.cfg.HeartbeatInterval))
	defer cancel()
	asked := time.Now()
	held, err := r.store.ExtendLeases(ctx, receipts, r.cfg.Lease)
	if err != nil {
		r.cfg.Logger.Warn("relay: lease extension failed; retrying next heartbeat", "messages", len(due), "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, d := range due {
		if held[i] {
			d.renewed = asked
			continue
		}
		if _, running := s.inflight[d.msg.ID]; running && !d.lost {
			d.lost = true
			d.cancel()
			r.cfg.Logger.Warn("relay: claim lost while the handler ran; cancelling it", "id", d.msg.ID)
		}
	}
}
