package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
)

// benchArgs is River's job: the same payload as pgoutbox's messages.
type benchArgs struct {
	OrderID    int    `json:"order_id"`
	Event      string `json:"event"`
	TotalCents int    `json:"total_cents"`
}

func (benchArgs) Kind() string { return "bench" }

type noopWorker struct {
	river.WorkerDefaults[benchArgs]
	lat *latencies
}

func (w *noopWorker) Work(_ context.Context, j *river.Job[benchArgs]) error {
	if w.lat != nil {
		w.lat.handled(j.ID)
	}
	return nil
}

func migrateRiver(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// riverClient configures River as its own bench does (cmd/river bench):
// 2,000 workers, 2 ms fetch cooldown, 20 ms poll interval.
func riverClient(pool *pgxpool.Pool, workers int, lat *latencies) (*river.Client[pgx.Tx], error) {
	w := river.NewWorkers()
	river.AddWorker(w, &noopWorker{lat: lat})
	return river.NewClient(riverpgxv5.New(pool), &river.Config{
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            discardLogger(),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           w,
	})
}

func riverInsert(ctx context.Context, c *river.Client[pgx.Tx], from, n int) ([]int64, error) {
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: benchArgs{OrderID: from + i, Event: "order_placed", TotalCents: 4200}}
	}
	res, err := c.InsertMany(ctx, params)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	return ids, nil
}

// riverBurnDown inserts the backlog (a window of its own), starts a client
// and measures until the last job completes (counted from River's
// completion events, which follow its batched completer, as River's bench
// does).
func (b *bencher) riverBurnDown() (sample, error) {
	total := b.o.messages
	c, err := riverClient(b.h.Pool, b.o.riverWorkers, nil)
	if err != nil {
		return sample{}, err
	}
	var s sample
	fill, err := b.window(func() error {
		for from := 0; from < total; from += 5000 {
			if _, err := riverInsert(b.ctx, c, from, min(5000, total-from)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sample{}, err
	}
	s.enqueued, s.enqWAL = int64(total), fill.WAL
	ev, err := b.window(func() error {
		events, cancel := c.SubscribeConfig(&river.SubscribeConfig{
			ChanSize: total + 1,
			Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
		})
		defer cancel()
		start := time.Now()
		if err := c.Start(b.ctx); err != nil {
			return err
		}
		done := 0
		timeout := time.After(10 * time.Minute)
		for done < total {
			select {
			case e := <-events:
				if e.Kind != river.EventKindJobCompleted {
					return fmt.Errorf("river: job %d %s", e.Job.ID, e.Kind)
				}
				done++
			case <-timeout:
				return fmt.Errorf("river: %d of %d jobs completed in 10 minutes", done, total)
			}
		}
		s.rate = benchkit.Rate(int64(total), time.Since(start))
		stopCtx, stopCancel := context.WithTimeout(b.ctx, time.Minute)
		defer stopCancel()
		return c.Stop(stopCtx)
	}, "river_job")
	if err != nil {
		return sample{}, err
	}
	s.delivered, s.delWAL, s.evidence = int64(total), ev.WAL, ev
	return s, nil
}

// riverContinuous runs River with four producers inserting batches of 100
// at full speed for three times the scenario's duration, in one window.
func (b *bencher) riverContinuous() (sample, error) {
	lat := newLatencies()
	var s sample
	ev, err := b.window(func() error {
		c, err := riverClient(b.h.Pool, b.o.riverWorkers, lat)
		if err != nil {
			return err
		}
		events, cancel := c.SubscribeConfig(&river.SubscribeConfig{ChanSize: 1 << 20, Kinds: []river.EventKind{river.EventKindJobCompleted}})
		defer cancel()
		var completed, enqueued atomic.Int64
		go func() {
			for e := range events {
				if e == nil {
					return
				}
				completed.Add(1)
			}
		}()
		if err := c.Start(b.ctx); err != nil {
			return err
		}
		prodCtx, prodCancel := context.WithTimeout(b.ctx, b.o.duration*3)
		defer prodCancel()
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		before := completed.Load()
		start := time.Now()
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; prodCtx.Err() == nil; i++ {
					ids, err := riverInsert(b.ctx, c, p*1_000_000+i*produceBatch, produceBatch)
					if err != nil {
						errs <- err
						return
					}
					lat.commit(ids)
					enqueued.Add(int64(len(ids)))
				}
			}()
		}
		wg.Wait()
		s.rate = float64(completed.Load()-before) / time.Since(start).Seconds()
		stopCtx, stopCancel := context.WithTimeout(b.ctx, time.Minute)
		defer stopCancel()
		_ = c.Stop(stopCtx)
		s.enqueued, s.delivered = enqueued.Load(), completed.Load()
		select {
		case err := <-errs:
			return err
		default:
		}
		return nil
	}, "river_job")
	if err != nil {
		return sample{}, err
	}
	s.p50, s.p99 = lat.percentiles()
	s.enqWAL, s.delWAL, s.evidence = ev.WAL, ev.WAL, ev
	return s, nil
}
