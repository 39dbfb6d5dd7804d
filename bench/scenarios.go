package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

const (
	lane   = "bench"
	target = "noop"
	// table is pgoutbox's table, whose counters the evidence reports.
	table = "pgoutbox_message"
)

func payload(i int) json.RawMessage {
	return json.RawMessage(`{"order_id":` + strconv.Itoa(i) + `,"event":"order_placed","total_cents":4200}`)
}

// timed runs fn in clients goroutines until d passes and returns the number
// of messages they reported per second, and the number.
func (b *bencher) timed(clients int, d time.Duration, fn func(ctx context.Context, client int, n *atomic.Int64) error) (float64, int64, error) {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	var (
		n        atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := fn(b.ctx, client, &n); err != nil {
					errOnce.Do(func() { firstErr = err })
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), n.Load(), firstErr
}

// timedEnqueue runs timed in a window and returns its sample.
func (b *bencher) timedEnqueue(clients int, fn func(ctx context.Context, client int, n *atomic.Int64) error) (sample, error) {
	var (
		s   sample
		err error
	)
	ev, werr := b.window(func() error {
		s.rate, s.enqueued, err = b.timed(clients, b.o.duration, fn)
		return err
	}, table)
	if werr != nil {
		return sample{}, werr
	}
	s.enqWAL, s.evidence = ev.WAL, ev
	return s, nil
}

func (b *bencher) enqueue() error {
	store := outbox.NewPostgresStore(b.h.Pool)
	bareSQL, err := b.sql.Text("bare_insert")
	if err != nil {
		return err
	}
	manySQL, err := b.sql.Text("bare_insert_many")
	if err != nil {
		return err
	}
	for run := range b.o.runs {
		if err := b.reset(); err != nil {
			return err
		}
		for _, c := range b.o.clientsList {
			variant := fmt.Sprintf("%d clients", c)
			s, err := b.timedEnqueue(c, func(ctx context.Context, _ int, n *atomic.Int64) error {
				return b.inTx(ctx, func(tx pgx.Tx) error {
					_, err := store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: lane, Target: target, Payload: payload(int(n.Add(1)))})
					return err
				})
			})
			if err != nil {
				return err
			}
			b.r.add(scEnqueueOne, variant, sysEnqueue, s)
			if err := b.enqueueKeyed(store, c, variant); err != nil {
				return err
			}
			s, err = b.timedEnqueue(c, func(ctx context.Context, _ int, n *atomic.Int64) error {
				return b.inTx(ctx, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, bareSQL, "", lane, target, payload(int(n.Add(1))))
					return err
				})
			})
			if err != nil {
				return err
			}
			b.r.add(scEnqueueOne, variant, sysBareInsert, s)

			drafts := make([]outbox.Draft, 100)
			args := make([]any, 103)
			args[0], args[1], args[2] = "", lane, target
			for i := range drafts {
				drafts[i] = outbox.Draft{Lane: lane, Target: target, Payload: payload(i)}
				args[i+3] = payload(i)
			}
			err = b.timedBatches(scEnqueueMany, variant, sysEnqueueMany, c, len(drafts), func(ctx context.Context, tx pgx.Tx) error {
				_, err := store.WithTx(tx).EnqueueMany(ctx, drafts)
				return err
			})
			if err != nil {
				return err
			}
			err = b.timedBatches(scEnqueueMany, variant, sysBareInsertMany, c, len(drafts), func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, manySQL, args...)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(b.log, "  enqueue run %d, %d clients done\n", run+1, c)
		}
	}
	return nil
}

// timedBatches runs timedEnqueue with one transaction per call of fn, each
// counting per messages once it commits, and adds the sample to the report.
func (b *bencher) timedBatches(scenario, variant, system string, clients, per int, fn func(ctx context.Context, tx pgx.Tx) error) error {
	s, err := b.timedEnqueue(clients, func(ctx context.Context, _ int, n *atomic.Int64) error {
		if err := b.inTx(ctx, func(tx pgx.Tx) error { return fn(ctx, tx) }); err != nil {
			return err
		}
		n.Add(int64(per))
		return nil
	})
	if err == nil {
		b.r.add(scenario, variant, system, s)
	}
	return err
}

func (b *bencher) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := b.h.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func fromResult(r benchkit.Result) sample {
	return sample{
		rate: r.PerSec, p50: r.P50, p99: r.P99,
		enqueued: r.Enqueued, delivered: r.Delivered, enqWAL: r.EnqueueWAL, delWAL: r.DeliveryWAL, evidence: r.Evidence,
	}
}

// step is one system's run in a scenario.
type step struct {
	system string
	run    func() (sample, error)
}

// runSteps resets before each selected step, runs it and records its
// sample, and logs a line per round.
func (b *bencher) runSteps(scenario, variant, label string, steps []step) error {
	line := "  " + label + ":"
	for _, st := range steps {
		if !b.wants(st.system) {
			continue
		}
		if err := b.reset(); err != nil {
			return err
		}
		s, err := st.run()
		if err != nil {
			return fmt.Errorf("%s: %w", st.system, err)
		}
		b.r.add(scenario, variant, st.system, s)
		line += fmt.Sprintf(" %s %.0f/s", st.system, s.rate)
		if s.p99 > 0 {
			line += fmt.Sprintf(" (p99 %s)", s.p99.Round(time.Millisecond))
		}
		line += ";"
	}
	fmt.Fprintln(b.log, strings.TrimSuffix(line, ";"))
	return nil
}

func (b *bencher) burnDown() error {
	for run := range b.o.runs {
		for _, relays := range b.o.relaysList {
			burn := func(mode relay.Mode) func() (sample, error) {
				return func() (sample, error) {
					res, err := b.h.BurnDown(b.ctx, b.o.messages, relays, b.o.concurrency, mode)
					return fromResult(res), err
				}
			}
			if err := b.runSteps(scBurnDown, b.r.relayVariant(relays), fmt.Sprintf("burn-down run %d, %d relay(s)", run+1, relays), []step{
				{sysPgoutbox, burn(relay.ModeClaim)},
				{sysFloor, func() (sample, error) { return b.floorBurnDown(relays, b.floorClaimWorker) }},
				{sysLock, burn(relay.ModeLock)},
				{sysLockFloor, func() (sample, error) { return b.floorBurnDown(relays, b.floorLockWorker) }},
			}); err != nil {
				return err
			}
			if err := b.keyedBurnDown(run, relays); err != nil {
				return err
			}
		}
		peers := []step{{sysRiver, b.riverBurnDown}}
		if b.pgq.available() {
			peers = append(peers, step{sysPgQ, func() (sample, error) { return b.pgq.burnDown(b.o.messages) }})
		}
		if err := b.runSteps(scBurnDown, variantPeers, fmt.Sprintf("burn-down run %d, peers", run+1), peers); err != nil {
			return err
		}
	}
	return nil
}

// floorBurnDown fills the backlog and drains it with one worker per relay
// issuing the library's statements straight through pgx: what the library
// costs over its SQL.
func (b *bencher) floorBurnDown(workers int, worker func(id int, done *atomic.Int64) error) (sample, error) {
	store, err := outbox.NewPostgresStore(b.h.Pool, outbox.WithNotify(false)).Scoped("floor")
	if err != nil {
		return sample{}, err
	}
	var s sample
	fill, err := b.window(func() error { return benchkit.Fill(b.ctx, store, b.o.messages) })
	if err != nil {
		return sample{}, err
	}
	s.enqueued, s.enqWAL = int64(b.o.messages), fill.WAL
	var done atomic.Int64
	ev, err := b.window(func() error {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := worker(w, &done); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		s.rate = benchkit.Rate(done.Load(), time.Since(start))
		select {
		case err := <-errs:
			return err
		default:
		}
		if done.Load() != int64(b.o.messages) {
			return fmt.Errorf("floor delivered %d of %d", done.Load(), b.o.messages)
		}
		return nil
	}, table)
	if err != nil {
		return sample{}, err
	}
	s.delivered, s.delWAL, s.evidence = done.Load(), ev.WAL, ev
	return s, nil
}

// floorClaimWorker runs the relay's own statement (claim the next batch, ack
// the last one) until the backlog is gone.
func (b *bencher) floorClaimWorker(w int, done *atomic.Int64) error {
	q := db.New(b.h.Pool)
	var ackIDs []int64
	var ackTokens []pgtype.UUID
	for {
		rows, err := q.MessageClaim(b.ctx, db.MessageClaimParams{
			LeaseMicros: (30 * time.Second).Microseconds(), Scope: "floor", Lane: lane, Target: target,
			Max: int32(b.o.concurrency), AfterAvailableAt: time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC), //nolint:gosec // small
			AckIDs: nonNil(ackIDs), AckTokens: nonNilT(ackTokens), ConsumerID: "floor-" + strconv.Itoa(w),
		})
		if deadlocked(err) {
			continue // rolled back, acks included: as the store does, run it again
		}
		if err != nil {
			return err
		}
		ackIDs, ackTokens = ackIDs[:0], ackTokens[:0]
		claimed := 0
		for _, r := range rows {
			if r.Status == "claimed" {
				ackIDs = append(ackIDs, r.ID)
				ackTokens = append(ackTokens, r.ClaimToken)
				claimed++
			}
		}
		if claimed == 0 && len(rows) == 0 {
			return nil
		}
		done.Add(int64(claimed))
	}
}

// floorLockWorker runs lock mode's statements (lock a batch, write its
// outcomes, commit) until the backlog is gone.
func (b *bencher) floorLockWorker(_ int, done *atomic.Int64) error {
	for {
		n, err := b.floorLockBatch()
		if deadlocked(err) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		done.Add(int64(n))
	}
}

func (b *bencher) floorLockBatch() (int, error) {
	tx, err := b.h.Pool.Begin(b.ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	q := db.New(tx)
	rows, err := q.MessageLockDue(b.ctx, db.MessageLockDueParams{
		Scope: "floor", Lane: lane, Target: target, AfterAvailableAt: time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC),
		LockedIDs: []int64{}, Max: int32(b.o.concurrency), //nolint:gosec // small
	})
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	p := db.MessageFinishLockedParams{Scope: "floor"}
	for _, r := range rows {
		p.IDs = append(p.IDs, r.PgoutboxMessage.ID)
		p.Oks = append(p.Oks, true)
		p.Permanents = append(p.Permanents, false)
		p.RetryAfterMicros = append(p.RetryAfterMicros, 0)
		p.Reasons = append(p.Reasons, "")
	}
	if _, err := q.MessageFinishLocked(b.ctx, p); err != nil {
		return 0, err
	}
	return len(rows), tx.Commit(b.ctx)
}

func nonNil(x []int64) []int64 {
	if x == nil {
		return []int64{}
	}
	return x
}

func nonNilT(x []pgtype.UUID) []pgtype.UUID {
	if x == nil {
		return []pgtype.UUID{}
	}
	return x
}

// latencies collects commit-to-handler latencies.
type latencies struct {
	mu        sync.Mutex
	committed map[int64]time.Time
	samples   []time.Duration
}

func newLatencies() *latencies { return &latencies{committed: map[int64]time.Time{}} }

func (l *latencies) commit(ids []int64) {
	now := time.Now()
	l.mu.Lock()
	for _, id := range ids {
		l.committed[id] = now
	}
	l.mu.Unlock()
}

func (l *latencies) handled(id int64) {
	now := time.Now()
	l.mu.Lock()
	if t, ok := l.committed[id]; ok {
		l.samples = append(l.samples, now.Sub(t))
		delete(l.committed, id)
	}
	l.mu.Unlock()
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return benchkit.Percentiles(slices.Clone(l.samples))
}

const (
	producers    = 4
	produceBatch = 100
)

// continuousSteps are the systems of the continuous run.
func (b *bencher) continuousSteps() []step {
	steps := []step{
		{sysPgoutbox, func() (sample, error) { return b.continuousPgoutbox(relay.ModeClaim, false) }},
		{sysLock, func() (sample, error) { return b.continuousPgoutbox(relay.ModeLock, false) }},
		{sysRiver, b.riverContinuous},
	}
	if b.pgq.available() {
		steps = append(steps, step{sysPgQ, func() (sample, error) { return b.pgq.continuous(b.o.duration * 3) }})
	}
	return steps
}

// continuous: producers enqueue batches at full speed while consumers drain,
// for three times the scenario's duration.
func (b *bencher) continuous() error {
	for run := range b.o.runs {
		if err := b.runSteps(scContinuous, variantContinuous, fmt.Sprintf("continuous run %d", run+1), b.continuousSteps()); err != nil {
			return err
		}
		if b.o.keyed {
			if err := b.runSteps(scContinuous, b.r.keyedContinuousVariant(), fmt.Sprintf("continuous run %d, keyed", run+1), b.continuousKeyedSteps()); err != nil {
				return err
			}
		}
	}
	return nil
}

// continuousPgoutbox runs two relays of the given mode, woken by NOTIFY,
// while four producers enqueue batches of 100, in one window. Keyed, every
// message has an ordering key (see producerKey) and the handler checks that
// each key's messages come one at a time, in order.
func (b *bencher) continuousPgoutbox(mode relay.Mode, keyed bool) (sample, error) {
	var s sample
	lat := newLatencies()
	check := benchkit.NewOrderCheck()
	ev, err := b.window(func() error {
		store := outbox.NewPostgresStore(b.h.Pool)
		var handled, enqueued atomic.Int64
		notifier := relay.NewNotifier(b.h.Pool, nil)
		ctx, cancel := context.WithCancel(b.ctx)
		defer cancel()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = notifier.Run(ctx) }()
		<-notifier.Listening()
		for i := range 2 {
			r, err := relay.New(store, relay.Config{
				Lane: lane, Target: target, Concurrency: b.o.concurrency, Wakeups: notifier, ConsumerID: fmt.Sprint("c", i), Mode: mode,
				Handler: func(_ context.Context, m outbox.Message) error {
					check.Start(m)
					defer check.Done(m)
					id, _ := strconv.ParseInt(m.ID, 10, 64)
					lat.handled(id)
					handled.Add(1)
					return nil
				},
			})
			if err != nil {
				return err
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = r.Run(ctx) }()
		}
		prodCtx, prodCancel := context.WithTimeout(b.ctx, b.o.duration*3)
		defer prodCancel()
		var pw sync.WaitGroup
		errs := make(chan error, producers)
		start := time.Now()
		before := handled.Load()
		for p := range producers {
			pw.Add(1)
			go func() {
				defer pw.Done()
				drafts := make([]outbox.Draft, produceBatch)
				for i := range drafts {
					drafts[i] = outbox.Draft{Lane: lane, Target: target, Payload: payload(p*produceBatch + i)}
				}
				for batch := 0; prodCtx.Err() == nil; batch++ {
					if keyed {
						for i := range drafts {
							drafts[i].OrderingKey = producerKey(b.o.keys, p, batch*produceBatch+i)
						}
					}
					res, err := store.EnqueueMany(b.ctx, drafts)
					if err != nil {
						errs <- err
						return
					}
					ids := make([]int64, len(res))
					for i, r := range res {
						ids[i], _ = strconv.ParseInt(r.Message.ID, 10, 64)
					}
					lat.commit(ids)
					enqueued.Add(int64(len(ids)))
				}
			}()
		}
		pw.Wait()
		s.rate = float64(handled.Load()-before) / time.Since(start).Seconds()
		cancel()
		wg.Wait()
		s.enqueued, s.delivered = enqueued.Load(), handled.Load()
		select {
		case err := <-errs:
			return err
		default:
		}
		return check.Err()
	}, table)
	if err != nil {
		return sample{}, err
	}
	s.p50, s.p99 = lat.percentiles()
	s.enqWAL, s.delWAL, s.evidence = ev.WAL, ev.WAL, ev
	return s, nil
}

func (b *bencher) wakeUp() error {
	for range b.o.runs {
		for _, notify := range []bool{true, false} {
			res, err := b.h.WakeUp(b.ctx, notify, time.Second, b.o.wakeups, 50*time.Millisecond)
			if err != nil {
				return err
			}
			system := "pgoutbox, NOTIFY"
			if !notify {
				system = "pgoutbox, polling every 1s"
			}
			b.r.add(scWakeUp, "one message every 50 ms to an idle relay", system, fromResult(res))
		}
	}
	return nil
}

// growth measures claim+ack on growthPending pending messages in a table
// that already holds n delivered ones, then again after purging them.
func (b *bencher) growth() error {
	for range b.o.runs {
		for _, n := range b.o.growthSizes {
			if err := b.reset(); err != nil {
				return err
			}
			if n > 0 {
				if err := b.sql.Exec(b.ctx, b.h.Pool, "growth_fill", map[string]any{
					"lane": lane, "target": target, "payload": string(payload(0)), "rows": n,
				}); err != nil {
					return err
				}
			}
			if err := b.sql.Exec(b.ctx, b.h.Pool, "vacuum", nil); err != nil {
				return err
			}
			variant := fmt.Sprintf("%d delivered rows", n)
			if err := b.claimAckLoop(scGrowth, variant); err != nil {
				return err
			}
			if n > 0 {
				store := outbox.NewPostgresStore(b.h.Pool)
				if _, err := store.Purge(b.ctx, outbox.PurgeRequest{OlderThan: time.Hour}); err != nil {
					return err
				}
				if err := b.sql.Exec(b.ctx, b.h.Pool, "vacuum", nil); err != nil {
					return err
				}
				if err := b.claimAckLoop(scGrowth, fmt.Sprintf("%d delivered rows, after purge", n)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// claimAckLoop enqueues growthPending messages and drains them with one
// consumer claiming 100 at a time and acking each batch with the next claim,
// recording each claim's latency.
func (b *bencher) claimAckLoop(scenario, variant string) error {
	store := outbox.NewPostgresStore(b.h.Pool, outbox.WithNotify(false))
	var s sample
	fill, err := b.window(func() error { return benchkit.Fill(b.ctx, store, b.o.growthPending) })
	if err != nil {
		return err
	}
	s.enqueued, s.enqWAL = int64(b.o.growthPending), fill.WAL
	var (
		acks []outbox.Receipt
		lat  []time.Duration
		done int
	)
	ev, err := b.window(func() error {
		start := time.Now()
		for {
			t0 := time.Now()
			msgs, _, err := store.ClaimAndAck(b.ctx, outbox.ClaimRequest{Lane: lane, Target: target, Limit: 100, Lease: time.Minute, ConsumerID: "growth"}, acks)
			if err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
			if len(msgs) == 0 {
				break
			}
			done += len(msgs)
			acks = acks[:0]
			for _, m := range msgs {
				acks = append(acks, m.Receipt())
			}
		}
		s.rate = benchkit.Rate(int64(done), time.Since(start))
		return nil
	}, table)
	if err != nil {
		return err
	}
	s.p50, s.p99 = benchkit.Percentiles(lat)
	s.delivered, s.delWAL, s.evidence = int64(done), ev.WAL, ev
	b.r.add(scenario, variant, sysPgoutbox, s)
	fmt.Fprintf(b.log, "  growth %s: %.0f/s, claim p50 %s\n", variant, s.rate, s.p50)
	return nil
}

// memory runs a one-relay burn-down and reports the relay's allocations per
// delivered message and the process's peak RSS.
func (b *bencher) memory() error {
	if err := b.reset(); err != nil {
		return err
	}
	store, err := outbox.NewPostgresStore(b.h.Pool, outbox.WithNotify(false)).Scoped("memory")
	if err != nil {
		return err
	}
	if err := benchkit.Fill(b.ctx, store, b.o.messages); err != nil {
		return err
	}
	var (
		before, after runtime.MemStats
		res           benchkit.Result
	)
	ev, err := b.window(func() error {
		runtime.GC()
		runtime.ReadMemStats(&before)
		var err error
		res, err = benchkit.Drain(b.ctx, store, b.o.messages, 1, b.o.concurrency, relay.ModeClaim, discard{})
		runtime.ReadMemStats(&after)
		return err
	}, table)
	if err != nil {
		return err
	}
	if err := benchkit.WriteHeapProfile(b.o.memProfile); err != nil {
		return err
	}
	b.r.memory = &memoryFigures{
		messages:      res.Messages,
		allocsPerMsg:  float64(after.Mallocs-before.Mallocs) / float64(res.Messages),
		bytesPerMsg:   float64(after.TotalAlloc-before.TotalAlloc) / float64(res.Messages),
		peakRSSBytes:  peakRSS(),
		heapInUseMiB:  float64(after.HeapInuse) / (1 << 20),
		ratePerSecond: res.PerSec,
		wal:           ev.WAL,
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// deadlocked reports the server aborting a statement as a deadlock victim.
// The store runs such a claim again (SKIP LOCKED does not make a claim
// wait-free), and so does the floor.
func deadlocked(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}
