package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
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

// riverBurnDown inserts total jobs, starts a client and measures until the
// last one completes (counted from River's completion events, which follow
// its batched completer, as River's bench does).
func riverBurnDown(ctx context.Context, pool *pgxpool.Pool, total, workers int) (float64, error) {
	c, err := riverClient(pool, workers, nil)
	if err != nil {
		return 0, err
	}
	for from := 0; from < total; from += 5000 {
		if _, err := riverInsert(ctx, c, from, min(5000, total-from)); err != nil {
			return 0, err
		}
	}
	events, cancel := c.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: total + 1,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	defer cancel()
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return 0, err
	}
	done := 0
	timeout := time.After(10 * time.Minute)
	for done < total {
		select {
		case e := <-events:
			if e.Kind != river.EventKindJobCompleted {
				return 0, fmt.Errorf("river: job %d %s", e.Job.ID, e.Kind)
			}
			done++
		case <-timeout:
			return 0, fmt.Errorf("river: %d of %d jobs completed in 10 minutes", done, total)
		}
	}
	elapsed := time.Since(start)
	stopCtx, stopCancel := context.WithTimeout(ctx, time.Minute)
	defer stopCancel()
	if err := c.Stop(stopCtx); err != nil {
		return 0, err
	}
	return float64(total) / elapsed.Seconds(), nil
}

// riverContinuous runs River with four producers inserting batches of 100
// at full speed for d.
func riverContinuous(ctx context.Context, pool *pgxpool.Pool, workers int, d time.Duration) (float64, time.Duration, time.Duration, error) {
	lat := newLatencies()
	c, err := riverClient(pool, workers, lat)
	if err != nil {
		return 0, 0, 0, err
	}
	events, cancel := c.SubscribeConfig(&river.SubscribeConfig{ChanSize: 1 << 20, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	defer cancel()
	var completed int64
	countDone := make(chan struct{})
	var mu sync.Mutex
	go func() {
		defer close(countDone)
		for e := range events {
			if e == nil {
				return
			}
			mu.Lock()
			completed++
			mu.Unlock()
		}
	}()
	if err := c.Start(ctx); err != nil {
		return 0, 0, 0, err
	}
	prodCtx, prodCancel := context.WithTimeout(ctx, d)
	defer prodCancel()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; prodCtx.Err() == nil; i++ {
				ids, err := riverInsert(ctx, c, p*1_000_000+i*produceBatch, produceBatch)
				if err != nil {
					errs <- err
					return
				}
				lat.commit(ids)
			}
		}()
	}
	mu.Lock()
	before := completed
	mu.Unlock()
	start := time.Now()
	wg.Wait()
	mu.Lock()
	rate := float64(completed-before) / time.Since(start).Seconds()
	mu.Unlock()
	stopCtx, stopCancel := context.WithTimeout(ctx, time.Minute)
	defer stopCancel()
	_ = c.Stop(stopCtx)
	cancel()
	select {
	case err := <-errs:
		return 0, 0, 0, err
	default:
	}
	p50, p99 := lat.percentiles()
	return rate, p50, p99, nil
}
