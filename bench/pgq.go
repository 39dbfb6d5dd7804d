package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
)

// PgQ is the log-based design beside pgoutbox's row-per-message one:
// producers append events to the queue's current table with
// pgq.insert_event; a ticker cuts the stream into batches at ticks (a
// snapshot of what committed); a consumer takes a whole batch
// (pgq.next_batch), reads its events (pgq.get_batch_events) and closes it
// (pgq.finish_batch), one transaction per batch. Consuming writes no row per
// event: an event is never updated or deleted, and old event tables are
// rotated out whole.
//
// The ticker is the harness calling pgq.ticker() every -pgq-tick (default
// 1 s), which is exactly what pgqd does every ticker_period (default 1 s):
// the daemon would need its own configuration and a process beside every
// server the bench runs on, DATABASE_URL ones included, and the harness must
// stop ticking before it reads a window's WAL. pgqd's other duties (table
// rotation every 2 hours, the retry queue) do not arise in a run of seconds.
// The consumer follows PgQ's own Python consumer: when there is no batch it
// sleeps for its loop delay, which defaults to the tick period as there.
type pgq struct {
	version string
	reason  string // why PgQ is not available
	b       *bencher
}

func setupPgQ(ctx context.Context, b *bencher) (*pgq, error) {
	q := &pgq{b: b}
	avail, err := benchkit.QueryOne[struct {
		Available bool `db:"available"`
	}](ctx, b.sql, b.h.Pool, "pgq_available", nil)
	if err != nil {
		return nil, err
	}
	if !avail.Available {
		q.reason = "not available: the server has no pgq extension (Debian's postgresql-15-pgq3, in the image scripts/postgres-image.sh builds)"
		return q, nil
	}
	if err := b.sql.Exec(ctx, b.h.Pool, "pgq_install", nil); err != nil {
		return nil, err
	}
	v, err := benchkit.QueryOne[struct {
		Version string `db:"version"`
	}](ctx, b.sql, b.h.Pool, "pgq_version", nil)
	if err != nil {
		return nil, err
	}
	q.version = v.Version
	return q, nil
}

func (q *pgq) available() bool { return q.version != "" }

func (q *pgq) status() string {
	if q.available() {
		return "PgQ " + q.version
	}
	return q.reason
}

// ticker calls pgq.ticker() every period until stop is called; only one
// ticker may run at a time (PgQ: parallel calls are unsafe).
func (q *pgq) ticker(period time.Duration) (stop func() error) {
	ctx, cancel := context.WithCancel(q.b.ctx)
	var (
		wg       sync.WaitGroup
		firstErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := q.b.sql.Exec(ctx, q.b.h.Pool, "pgq_ticker", nil); err != nil && ctx.Err() == nil {
				firstErr = err
				return
			}
		}
	}()
	return func() error { cancel(); wg.Wait(); return firstErr }
}

// insert enqueues payloads in one statement and returns their event ids.
func (q *pgq) insert(ctx context.Context, sqlText string, payloads []string) ([]int64, error) {
	rows, err := q.b.h.Pool.Query(ctx, sqlText, payloads)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// waitTicked waits until a tick covers every event committed so far, the
// way PgQ documents for pgq.force_tick: call it until the last tick changes.
func (q *pgq) waitTicked(ctx context.Context) error {
	type last struct {
		LastTick int64 `db:"last_tick"`
	}
	first, err := benchkit.QueryOne[last](ctx, q.b.sql, q.b.h.Pool, "pgq_force_tick", nil)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(q.b.o.pgqTick / 4)
		cur, err := benchkit.QueryOne[last](ctx, q.b.sql, q.b.h.Pool, "pgq_force_tick", nil)
		if err != nil {
			return err
		}
		if cur.LastTick != first.LastTick {
			return nil
		}
	}
	return errors.New("pgq: no tick within a minute of pgq.force_tick")
}

// consume runs the consumer until ctx ends or want events were handled
// (want 0: until ctx ends), calling handled for each event.
func (q *pgq) consume(ctx context.Context, want int64, handled func(id int64)) (int64, error) {
	texts := map[string]string{}
	for _, name := range []string{"pgq_batch_events", "pgq_finish_batch"} {
		t, err := q.b.sql.Text(name)
		if err != nil {
			return 0, err
		}
		texts[name] = t
	}
	var n int64
	for ctx.Err() == nil && (want == 0 || n < want) {
		got, none, err := q.batch(ctx, texts, handled)
		if err != nil {
			if ctx.Err() != nil {
				return n, nil
			}
			return n, err
		}
		n += got
		if none {
			select {
			case <-ctx.Done():
			case <-time.After(q.b.o.pgqTick):
			}
		}
	}
	return n, nil
}

// batch handles one batch in one transaction; none reports that there was
// no batch yet.
func (q *pgq) batch(ctx context.Context, texts map[string]string, handled func(id int64)) (n int64, none bool, err error) {
	tx, err := q.b.h.Pool.Begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	next, err := benchkit.QueryOne[struct {
		BatchID *int64 `db:"batch_id"`
	}](ctx, q.b.sql, tx, "pgq_next_batch", nil)
	if err != nil {
		return 0, false, err
	}
	if next.BatchID == nil {
		return 0, true, tx.Commit(ctx)
	}
	rows, err := tx.Query(ctx, texts["pgq_batch_events"], *next.BatchID)
	if err != nil {
		return 0, false, err
	}
	var (
		id   int64
		data []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &data}, func() error {
		handled(id)
		n++
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	if _, err := tx.Exec(ctx, texts["pgq_finish_batch"], *next.BatchID); err != nil {
		return 0, false, err
	}
	return n, false, tx.Commit(ctx)
}

// pgqPayloads are n payloads as text (PgQ's ev_data is text).
func pgqPayloads(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(payload(from + i))
	}
	return out
}

// burnDown fills the queue with total events (the ticker running, as pgqd
// would, so the fill is cut into batches as in production), waits for a tick
// covering them all, then times one consumer through every batch.
func (q *pgq) burnDown(total int) (sample, error) {
	insertSQL, err := q.b.sql.Text("pgq_insert")
	if err != nil {
		return sample{}, err
	}
	var s sample
	fill, err := q.b.window(func() error {
		stop := q.ticker(q.b.o.pgqTick)
		for from := 0; from < total; from += 1000 {
			if _, err := q.insert(q.b.ctx, insertSQL, pgqPayloads(from, min(1000, total-from))); err != nil {
				_ = stop()
				return err
			}
		}
		if err := q.waitTicked(q.b.ctx); err != nil {
			_ = stop()
			return err
		}
		return stop()
	})
	if err != nil {
		return sample{}, err
	}
	s.enqueued, s.enqWAL = int64(total), fill.WAL
	var elapsed time.Duration
	ev, err := q.b.window(func() error {
		stop := q.ticker(q.b.o.pgqTick)
		var done atomic.Int64
		stopProgress := benchkit.Progress(q.b.log, "PgQ burn-down", &done)
		start := time.Now()
		ctx, cancel := context.WithTimeout(q.b.ctx, 10*time.Minute)
		defer cancel()
		n, err := q.consume(ctx, int64(total), func(int64) { done.Add(1) })
		elapsed = time.Since(start)
		stopProgress()
		if tErr := stop(); err == nil {
			err = tErr
		}
		if err == nil && n != int64(total) {
			err = fmt.Errorf("pgq: consumed %d of %d events", n, total)
		}
		return err
	})
	if err != nil {
		return sample{}, err
	}
	s.rate = benchkit.Rate(int64(total), elapsed)
	s.delivered, s.delWAL, s.evidence = int64(total), ev.WAL, ev
	return s, nil
}

// continuous runs four producers inserting batches of 100 at full speed for
// d while the ticker and one consumer run.
func (q *pgq) continuous(d time.Duration) (sample, error) {
	insertSQL, err := q.b.sql.Text("pgq_insert")
	if err != nil {
		return sample{}, err
	}
	lat := newLatencies()
	var s sample
	ev, err := q.b.window(func() error {
		stopTicker := q.ticker(q.b.o.pgqTick)
		ctx, cancel := context.WithCancel(q.b.ctx)
		defer cancel()
		var handled, enqueued atomic.Int64
		consumed := make(chan error, 1)
		go func() {
			_, err := q.consume(ctx, 0, func(id int64) { lat.handled(id); handled.Add(1) })
			consumed <- err
		}()
		prodCtx, prodCancel := context.WithTimeout(q.b.ctx, d)
		defer prodCancel()
		var pw sync.WaitGroup
		errs := make(chan error, producers)
		start := time.Now()
		before := handled.Load()
		for p := range producers {
			pw.Add(1)
			go func() {
				defer pw.Done()
				payloads := pgqPayloads(p*produceBatch, produceBatch)
				for prodCtx.Err() == nil {
					ids, err := q.insert(q.b.ctx, insertSQL, payloads)
					if err != nil {
						errs <- err
						return
					}
					lat.commit(ids)
					enqueued.Add(int64(len(ids)))
				}
			}()
		}
		pw.Wait()
		s.rate = float64(handled.Load()-before) / time.Since(start).Seconds()
		cancel()
		cErr := <-consumed
		tErr := stopTicker()
		s.enqueued, s.delivered = enqueued.Load(), handled.Load()
		select {
		case err := <-errs:
			return err
		default:
		}
		return errors.Join(cErr, tErr)
	})
	if err != nil {
		return sample{}, err
	}
	s.p50, s.p99 = lat.percentiles()
	s.enqWAL, s.delWAL, s.evidence = ev.WAL, ev.WAL, ev
	return s, nil
}
