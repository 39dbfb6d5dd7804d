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
)

func payload(i int) json.RawMessage {
	return json.RawMessage(`{"order_id":` + strconv.Itoa(i) + `,"event":"order_placed","total_cents":4200}`)
}

// reset empties both systems' tables so that every run starts alike (River's
// own bench truncates and vacuums its table too). The checkpoint starts each
// run at the beginning of a checkpoint cycle, so that no run pays for the WAL
// an earlier one wrote (a continuous run writes hundreds of megabytes; the
// third of three continuous runs was repeatedly the slowest without it).
func (b *bencher) reset() error {
	for _, stmt := range []string{
		"TRUNCATE pgoutbox_message", "TRUNCATE river_job",
		"VACUUM ANALYZE pgoutbox_message", "VACUUM ANALYZE river_job", "CHECKPOINT",
	} {
		if _, err := b.pool.Exec(b.ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// timed runs fn in clients goroutines until d passes and returns the number
// of messages they reported per second.
func (b *bencher) timed(clients int, d time.Duration, fn func(ctx context.Context, n *atomic.Int64) error) (float64, error) {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	var (
		n        atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := fn(b.ctx, &n); err != nil {
					errOnce.Do(func() { firstErr = err })
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), firstErr
}

// Bare statements: the same rows written without the library, the baseline
// of the library's overhead.
const bareInsert = `INSERT INTO pgoutbox_message (scope, lane, target, payload, available_at, max_attempts, created_at, updated_at)
VALUES ($1, $2, $3, $4, now(), 5, now(), now())`

func bareInsertMany(rows int) string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO pgoutbox_message (scope, lane, target, payload, available_at, max_attempts, created_at, updated_at) VALUES `)
	for i := range rows {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, "($1, $2, $3, $%d, now(), 5, now(), now())", i+4)
	}
	return sb.String()
}

func (b *bencher) enqueue() error {
	store := outbox.NewPostgresStore(b.pool)
	manySQL := bareInsertMany(100)
	for run := range b.o.runs {
		if err := b.reset(); err != nil {
			return err
		}
		for _, c := range b.o.clientsList {
			variant := fmt.Sprintf("%d clients", c)
			rate, err := b.timed(c, b.o.duration, func(ctx context.Context, n *atomic.Int64) error {
				return inTx(ctx, b, func(tx pgx.Tx) error {
					_, err := store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: lane, Target: target, Payload: payload(int(n.Add(1)))})
					return err
				})
			})
			if err != nil {
				return err
			}
			b.r.add("enqueue: one message per transaction", variant, "pgoutbox Enqueue", sample{rate: rate})
			rate, err = b.timed(c, b.o.duration, func(ctx context.Context, n *atomic.Int64) error {
				return inTx(ctx, b, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, bareInsert, "", lane, target, payload(int(n.Add(1))))
					return err
				})
			})
			if err != nil {
				return err
			}
			b.r.add("enqueue: one message per transaction", variant, "bare INSERT", sample{rate: rate})

			drafts := make([]outbox.Draft, 100)
			args := make([]any, 103)
			args[0], args[1], args[2] = "", lane, target
			for i := range drafts {
				drafts[i] = outbox.Draft{Lane: lane, Target: target, Payload: payload(i)}
				args[i+3] = payload(i)
			}
			rate, err = b.timed(c, b.o.duration, func(ctx context.Context, n *atomic.Int64) error {
				err := inTx(ctx, b, func(tx pgx.Tx) error {
					_, err := store.WithTx(tx).EnqueueMany(ctx, drafts)
					return err
				})
				n.Add(100)
				return err
			})
			if err != nil {
				return err
			}
			b.r.add("enqueue: 100 messages per transaction", variant, "pgoutbox EnqueueMany", sample{rate: rate})
			rate, err = b.timed(c, b.o.duration, func(ctx context.Context, n *atomic.Int64) error {
				err := inTx(ctx, b, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, manySQL, args...)
					return err
				})
				n.Add(100)
				return err
			})
			if err != nil {
				return err
			}
			b.r.add("enqueue: 100 messages per transaction", variant, "bare 100-row INSERT", sample{rate: rate})
			fmt.Fprintf(b.log, "  enqueue run %d, %d clients done\n", run+1, c)
		}
	}
	return nil
}

func inTx(ctx context.Context, b *bencher, fn func(pgx.Tx) error) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (b *bencher) burnDown() error {
	for run := range b.o.runs {
		for _, relays := range b.o.relaysList {
			if err := b.reset(); err != nil {
				return err
			}
			res, err := benchkit.BurnDown(b.ctx, b.pool, b.o.messages, relays, b.o.concurrency, relay.ModeClaim, discard{})
			if err != nil {
				return err
			}
			variant := fmt.Sprintf("%d relay(s)", relays)
			b.r.add("burn-down", variant, "pgoutbox", sample{rate: res.PerSec})
			if err := b.reset(); err != nil {
				return err
			}
			rate, err := b.floorBurnDown(relays)
			if err != nil {
				return err
			}
			b.r.add("burn-down", variant, "raw-SQL floor", sample{rate: rate})
			if err := b.reset(); err != nil {
				return err
			}
			lockRes, err := benchkit.BurnDown(b.ctx, b.pool, b.o.messages, relays, b.o.concurrency, relay.ModeLock, discard{})
			if err != nil {
				return err
			}
			b.r.add("burn-down", variant, "pgoutbox lock mode", sample{rate: lockRes.PerSec})
			if err := b.reset(); err != nil {
				return err
			}
			lockFloor, err := b.floorLockBurnDown(relays)
			if err != nil {
				return err
			}
			b.r.add("burn-down", variant, "raw-SQL floor, lock mode", sample{rate: lockFloor})
			fmt.Fprintf(b.log, "  burn-down run %d, %d relays: pgoutbox %.0f/s (floor %.0f/s), lock mode %.0f/s (floor %.0f/s)\n",
				run+1, relays, res.PerSec, rate, lockRes.PerSec, lockFloor)
		}
		if err := b.reset(); err != nil {
			return err
		}
		rate, err := riverBurnDown(b.ctx, b.pool, b.o.messages, b.o.riverWorkers)
		if err != nil {
			return err
		}
		b.r.add("burn-down", "River", "River", sample{rate: rate})
		fmt.Fprintf(b.log, "  burn-down run %d: River %.0f/s\n", run+1, rate)
	}
	return nil
}

// floorBurnDown drains the same backlog with the relay's own statement
// (claim the next batch, ack the last one) issued straight through pgx by
// workers goroutines: what the library costs over its SQL.
func (b *bencher) floorBurnDown(workers int) (float64, error) {
	store, err := outbox.NewPostgresStore(b.pool, outbox.WithNotify(false)).Scoped("floor")
	if err != nil {
		return 0, err
	}
	if err := benchkit.Fill(b.ctx, store, b.o.messages); err != nil {
		return 0, err
	}
	q := db.New(b.pool)
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
					errs <- err
					return
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
					return
				}
				done.Add(int64(claimed))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	if done.Load() != int64(b.o.messages) {
		return 0, fmt.Errorf("floor claimed %d of %d", done.Load(), b.o.messages)
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}

// floorLockBurnDown drains the backlog with lock mode's statements (lock a
// batch, write its outcomes, commit) straight through pgx.
func (b *bencher) floorLockBurnDown(workers int) (float64, error) {
	store, err := outbox.NewPostgresStore(b.pool, outbox.WithNotify(false)).Scoped("floor")
	if err != nil {
		return 0, err
	}
	if err := benchkit.Fill(b.ctx, store, b.o.messages); err != nil {
		return 0, err
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := b.floorLockBatch()
				if deadlocked(err) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					return
				}
				done.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	if done.Load() != int64(b.o.messages) {
		return 0, fmt.Errorf("lock floor delivered %d of %d", done.Load(), b.o.messages)
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}

func (b *bencher) floorLockBatch() (int, error) {
	tx, err := b.pool.Begin(b.ctx)
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
		p.IDs = append(p.IDs, r.ID)
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

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

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
	s := slices.Clone(l.samples)
	if len(s) == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

const (
	producers    = 4
	produceBatch = 100
)

// continuous: producers enqueue batches at full speed while consumers drain,
// for the scenario's duration.
func (b *bencher) continuous() error {
	for run := range b.o.runs {
		if err := b.reset(); err != nil {
			return err
		}
		rate, p50, p99, err := b.continuousPgoutbox(relay.ModeClaim)
		if err != nil {
			return err
		}
		b.r.add("continuous", "4 producers x 100 per transaction", "pgoutbox", sample{rate: rate, p50: p50, p99: p99})
		if err := b.reset(); err != nil {
			return err
		}
		lrate, lp50, lp99, err := b.continuousPgoutbox(relay.ModeLock)
		if err != nil {
			return err
		}
		b.r.add("continuous", "4 producers x 100 per transaction", "pgoutbox lock mode", sample{rate: lrate, p50: lp50, p99: lp99})
		if err := b.reset(); err != nil {
			return err
		}
		rrate, rp50, rp99, err := riverContinuous(b.ctx, b.pool, b.o.riverWorkers, b.o.duration*3)
		if err != nil {
			return err
		}
		b.r.add("continuous", "4 producers x 100 per transaction", "River", sample{rate: rrate, p50: rp50, p99: rp99})
		fmt.Fprintf(b.log, "  continuous run %d: pgoutbox %.0f/s p99 %s, lock mode %.0f/s p99 %s, River %.0f/s p99 %s\n",
			run+1, rate, p99, lrate, lp99, rrate, rp99)
	}
	return nil
}

func (b *bencher) continuousPgoutbox(mode relay.Mode) (float64, time.Duration, time.Duration, error) {
	store := outbox.NewPostgresStore(b.pool)
	lat := newLatencies()
	var handled atomic.Int64
	notifier := relay.NewNotifier(b.pool, nil)
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
				id, _ := strconv.ParseInt(m.ID, 10, 64)
				lat.handled(id)
				handled.Add(1)
				return nil
			},
		})
		if err != nil {
			return 0, 0, 0, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(ctx) }()
	}
	d := b.o.duration * 3
	prodCtx, prodCancel := context.WithTimeout(b.ctx, d)
	defer prodCancel()
	var pw sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			drafts := make([]outbox.Draft, produceBatch)
			for i := range drafts {
				drafts[i] = outbox.Draft{Lane: lane, Target: target, Payload: payload(p*produceBatch + i)}
			}
			for prodCtx.Err() == nil {
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
			}
		}()
	}
	start := time.Now()
	before := handled.Load()
	pw.Wait()
	rate := float64(handled.Load()-before) / time.Since(start).Seconds()
	cancel()
	wg.Wait()
	select {
	case err := <-errs:
		return 0, 0, 0, err
	default:
	}
	p50, p99 := lat.percentiles()
	return rate, p50, p99, nil
}

func (b *bencher) wakeUp() error {
	for range b.o.runs {
		for _, notify := range []bool{true, false} {
			res, err := benchkit.WakeUp(b.ctx, b.pool, notify, time.Second, b.o.wakeups, 50*time.Millisecond, discard{})
			if err != nil {
				return err
			}
			system := "pgoutbox, NOTIFY"
			if !notify {
				system = "pgoutbox, polling every 1s"
			}
			b.r.add("wake-up", "one message every 50 ms to an idle relay", system, sample{rate: res.PerSec, p50: res.P50, p99: res.P99})
		}
	}
	return nil
}

// growth measures claim+ack on 100k pending messages in a table that already
// holds n delivered ones, then again after purging them.
func (b *bencher) growth() error {
	for range b.o.runs {
		for _, n := range b.o.growthSizes {
			if err := b.reset(); err != nil {
				return err
			}
			if n > 0 {
				if _, err := b.pool.Exec(b.ctx, `INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
					SELECT $1, $2, $3, 'delivered', now() - interval '1 day', 1, 5, now() - interval '1 day', now() - interval '1 day'
					FROM generate_series(1, $4::int)`, lane, target, payload(0), n); err != nil {
					return err
				}
			}
			if _, err := b.pool.Exec(b.ctx, "VACUUM ANALYZE pgoutbox_message"); err != nil {
				return err
			}
			variant := fmt.Sprintf("%d delivered rows", n)
			if err := b.claimAckLoop("growth", variant); err != nil {
				return err
			}
			if n > 0 {
				store := outbox.NewPostgresStore(b.pool)
				if _, err := store.Purge(b.ctx, outbox.PurgeRequest{OlderThan: time.Hour}); err != nil {
					return err
				}
				if _, err := b.pool.Exec(b.ctx, "VACUUM ANALYZE pgoutbox_message"); err != nil {
					return err
				}
				if err := b.claimAckLoop("growth", fmt.Sprintf("%d delivered rows, after purge", n)); err != nil {
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
	store := outbox.NewPostgresStore(b.pool, outbox.WithNotify(false))
	if err := benchkit.Fill(b.ctx, store, b.o.growthPending); err != nil {
		return err
	}
	var (
		acks []outbox.Receipt
		lat  []time.Duration
		done int
	)
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
	elapsed := time.Since(start)
	slices.Sort(lat)
	b.r.add(scenario, variant, "pgoutbox", sample{rate: float64(done) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)]})
	fmt.Fprintf(b.log, "  growth %s: %.0f/s, claim p50 %s\n", variant, float64(done)/elapsed.Seconds(), lat[len(lat)/2])
	return nil
}

// memory runs a one-relay burn-down and reports allocations per message and
// the process's peak RSS.
func (b *bencher) memory() error {
	if err := b.reset(); err != nil {
		return err
	}
	store, err := outbox.NewPostgresStore(b.pool, outbox.WithNotify(false)).Scoped("memory")
	if err != nil {
		return err
	}
	if err := benchkit.Fill(b.ctx, store, b.o.messages); err != nil {
		return err
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := benchkit.Drain(b.ctx, store, b.o.messages, 1, b.o.concurrency, relay.ModeClaim, discard{})
	if err != nil {
		return err
	}
	runtime.ReadMemStats(&after)
	b.r.memory = memoryFigures{
		messages:      res.Messages,
		allocsPerMsg:  float64(after.Mallocs-before.Mallocs) / float64(res.Messages),
		bytesPerMsg:   float64(after.TotalAlloc-before.TotalAlloc) / float64(res.Messages),
		peakRSSBytes:  peakRSS(),
		heapInUseMiB:  float64(after.HeapInuse) / (1 << 20),
		ratePerSecond: res.PerSec,
	}
	return nil
}

// deadlocked reports the server aborting a statement as a deadlock victim.
// The store runs such a claim again (SKIP LOCKED does not make a claim
// wait-free), and so does the floor.
func deadlocked(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}
