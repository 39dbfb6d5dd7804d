package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// row is one lane and target of one scope in a sample.
type row struct {
	Scope string
	outbox.Stats
	// DeliveredPerSecond is the delivery rate since the sample before; -1
	// while unknown (the first sample, or right after a purge of dead
	// letters through the dashboard).
	DeliveredPerSecond float64
}

// live is what leaves the row only by delivery (or by a purge of dead letters).
func (r row) live() int64 { return r.Pending + r.Claimed + r.DeadLetters }

type key struct{ scope, lane, target string }

func (r row) key() key { return key{r.Scope, r.Lane, r.Target} }

// sample is the outbox at one instant, as the sampler saw it in one snapshot.
type sample struct {
	At   time.Time
	Took time.Duration
	// Rows by scope, lane and target.
	Rows []row
	// Scopes followed in this sample, sorted.
	Scopes []string
}

// baseline is the sample that delivery rates are measured against.
type baseline struct {
	at        time.Time
	watermark int64 // the highest message id seen
	live      map[key]int64
	rates     map[key]float64 // the rates measured at this baseline
}

// sampler keeps the latest sample and a ring of the last History of them.
type sampler struct {
	mu      sync.RWMutex
	latest  *sample
	ring    []*sample // oldest first once full; see add
	next    int
	lastErr error
	errAt   time.Time

	// Sample holds run for its whole length; the fields below are its own.
	run       sync.Mutex
	base      *baseline
	seen      map[string]time.Time // scope -> last sample it had rows in
	loggedErr string
	loggedAt  time.Time
}

func newSampler(n int) *sampler {
	return &sampler{ring: make([]*sample, 0, n), seen: map[string]time.Time{}}
}

func (s *sampler) add(smp *sample, toRing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest, s.lastErr = smp, nil
	if !toRing {
		return
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, smp)
		return
	}
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
}

func (s *sampler) fail(err error, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.errAt = err, at
}

// history returns the ring's samples, oldest first.
func (s *sampler) history() []*sample {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*sample, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

func (s *sampler) state() (latest *sample, errAt time.Time, lastErr error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.latest, s.errAt, s.lastErr
}

// Run samples the outbox every SampleInterval (and soon after each write
// through the dashboard) until ctx ends, then returns nil. Pages, the JSON
// API and /metrics read the samples from memory, so Run must be running
// for them to show anything. A failed sample is logged and shown on the
// pages; the next one is tried on time. Only one Run may run at a time.
func (d *Dashboard) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("dashboard: Run is already running")
	}
	defer d.running.Store(false)
	t := time.NewTicker(d.cfg.SampleInterval)
	defer t.Stop()
	for {
		if err := d.Sample(ctx); err != nil && ctx.Err() == nil {
			d.logSampleError(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.nudge:
		}
	}
}

// logSampleError logs a failing sampler when its error changes and once a
// minute while it persists, not at every sample.
func (d *Dashboard) logSampleError(err error) {
	s := d.sampler
	s.run.Lock()
	defer s.run.Unlock()
	if msg := err.Error(); msg != s.loggedErr || time.Since(s.loggedAt) > time.Minute {
		s.loggedErr, s.loggedAt = msg, time.Now()
		d.cfg.Logger.Warn("dashboard: sample failed", "err", err)
	}
}

// nudgeSampler asks Run for a sample now, so that a write shows at once.
func (d *Dashboard) nudgeSampler() {
	select {
	case d.nudge <- struct{}{}:
	default:
	}
}

// Sample takes one sample now, as Run does every SampleInterval. Tests and
// services that drive sampling themselves call it directly.
//
// Everything is read in one read-only REPEATABLE READ transaction, so the
// counts agree with each other: Stats for every followed scope (the partial
// indexes of pending, claimed and dead messages), scope discovery (a loose
// index scan), and the messages enqueued since the last sample (a range
// scan of the primary key above the highest id seen). Deliveries are not
// counted by reading delivered rows, which would read the table's history,
// but derived per scope, lane and target: what was live (pending, claimed or
// dead) at the last sample, plus what was enqueued since, minus what is
// live now, has been delivered. Two things bend that: a message whose
// enqueueing transaction was still open at a sample, with an id below the
// highest seen, is never counted as enqueued (the rate under-counts by one),
// and dead letters purged outside the dashboard count as delivered.
func (d *Dashboard) Sample(ctx context.Context) (err error) {
	s := d.sampler
	s.run.Lock()
	defer s.run.Unlock()
	start := time.Now()
	defer func() {
		if err != nil {
			s.fail(err, start)
		}
		d.metrics.sampled(ctx, time.Since(start), err)
	}()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.QueryTimeout)
	defer cancel()
	tx, err := d.cfg.DB.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("dashboard: sample: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	q := db.New(tx)

	scopes, err := d.followedScopes(ctx, q, start)
	if err != nil {
		return err
	}
	smp := &sample{At: start, Scopes: scopes}
	now := map[key]int64{}
	for _, sc := range scopes {
		st, err := d.store(sc)
		if err != nil {
			return fmt.Errorf("dashboard: sample: %w", err)
		}
		stats, err := st.WithTx(tx).Stats(ctx, false)
		if err != nil {
			return fmt.Errorf("dashboard: sample scope %q: %w", sc, err)
		}
		for _, x := range stats {
			r := row{Scope: sc, Stats: x, DeliveredPerSecond: -1}
			smp.Rows = append(smp.Rows, r)
			now[r.key()] = r.live()
		}
		if len(stats) > 0 {
			s.seen[sc] = start
		}
	}

	var enqueued map[key]int64
	watermark := int64(0)
	if s.base == nil {
		if watermark, err = q.DashboardMaxID(ctx); err != nil {
			return fmt.Errorf("dashboard: sample: newest id: %w", err)
		}
	} else {
		watermark = s.base.watermark
		var only *string
		if d.fixed {
			only = &d.scope
		}
		rows, err := q.DashboardEnqueuedSince(ctx, db.DashboardEnqueuedSinceParams{AfterID: watermark, Scope: only})
		if err != nil {
			return fmt.Errorf("dashboard: sample: enqueued messages: %w", err)
		}
		enqueued = make(map[key]int64, len(rows))
		for _, r := range rows {
			enqueued[key{r.Scope, r.Lane, r.Target}] = r.Enqueued
			watermark = max(watermark, r.MaxID)
		}
	}
	smp.Took = time.Since(start)
	toRing := d.applyRates(smp, now, enqueued, watermark)
	s.add(smp, toRing)
	return nil
}

// applyRates sets each row's delivery rate against the baseline, and makes
// this sample the new baseline when at least half an interval has passed
// (a sample taken right after a write keeps the last rates instead of
// measuring over a few milliseconds). It reports whether the sample goes
// into the chart's ring.
func (d *Dashboard) applyRates(smp *sample, now, enqueued map[key]int64, watermark int64) bool {
	s := d.sampler
	if s.base == nil {
		s.base = &baseline{at: smp.At, watermark: watermark, live: now}
		return true
	}
	b := s.base
	dt := smp.At.Sub(b.at)
	if dt < d.cfg.SampleInterval/2 {
		for i := range smp.Rows {
			if r, ok := b.rates[smp.Rows[i].key()]; ok {
				smp.Rows[i].DeliveredPerSecond = r
			}
		}
		return false
	}
	rates := map[key]float64{}
	if b.live != nil { // nil after a dashboard purge of dead letters: no rate this time
		keys := map[key]bool{}
		for k := range b.live {
			keys[k] = true
		}
		for k := range enqueued {
			keys[k] = true
		}
		for k := range keys {
			delivered := max(b.live[k]+enqueued[k]-now[k], 0)
			rates[k] = float64(delivered) / dt.Seconds()
		}
		seen := map[key]bool{}
		for i := range smp.Rows {
			k := smp.Rows[i].key()
			smp.Rows[i].DeliveredPerSecond = rates[k]
			seen[k] = true
		}
		// Lanes and targets whose every message was delivered since the
		// last sample have no stats now but had deliveries.
		for k, r := range rates {
			if !seen[k] && r > 0 {
				smp.Rows = append(smp.Rows, row{Scope: k.scope, Stats: outbox.Stats{Lane: k.lane, Target: k.target, Delivered: -1}, DeliveredPerSecond: r})
			}
		}
		slices.SortFunc(smp.Rows, func(a, b row) int {
			return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Lane, b.Lane), cmp.Compare(a.Target, b.Target))
		})
	}
	s.base = &baseline{at: smp.At, watermark: watermark, live: now, rates: rates}
	return true
}

// forgetBaseline makes the next sample measure no delivery rate: after a
// purge of dead letters, whose disappearance would look like deliveries.
func (d *Dashboard) forgetBaseline() {
	s := d.sampler
	s.run.Lock()
	defer s.run.Unlock()
	if s.base != nil {
		s.base.live = nil
	}
}

// followedScopes is every scope the sample reads: the store's own when it
// is scoped; otherwise the unscoped store, the configured scopes, the
// scopes discovered with live messages, and those that had some within the
// history (so their last deliveries are counted), at most MaxScopes.
func (d *Dashboard) followedScopes(ctx context.Context, q *db.Queries, now time.Time) ([]string, error) {
	if d.fixed {
		return []string{d.scope}, nil
	}
	found, err := q.DashboardScopes(ctx, MaxScopes)
	if err != nil {
		return nil, fmt.Errorf("dashboard: sample: scopes: %w", err)
	}
	set := map[string]bool{"": true}
	for _, sc := range d.cfg.Scopes {
		set[sc] = true
	}
	for _, sc := range found {
		set[sc] = true
	}
	for sc, at := range d.sampler.seen {
		if now.Sub(at) > d.cfg.History {
			delete(d.sampler.seen, sc)
			continue
		}
		set[sc] = true
	}
	out := make([]string, 0, len(set))
	for sc := range set {
		out = append(out, sc)
	}
	slices.Sort(out)
	if len(out) > MaxScopes {
		out = out[:MaxScopes]
	}
	return out, nil
}
