// Package benchkit is pgoutbox's benchmark harness, the one that `make bench`
// (the bench module: pgoutbox beside River, PgQ and the raw-SQL floor) and
// `outboxctl bench` (the library's own scenarios on an operator's server)
// both run on. It provides:
//
//   - Open: the pool (sessions named SessionName), the migrated schema,
//     and the server's settings for the report (Settings.Summary);
//   - Reset: each system's reset scripts, then a checkpoint, before a run;
//   - Begin/End: a measured window, with the WAL the server wrote in it
//     (bytes from the WAL insert position, records and full-page images from
//     pg_stat_wal) and, with Config.Evidence, what explains the figure:
//     checkpoints, table scans and autovacuums, sampled wait events, the
//     costliest statements (pg_stat_statements);
//   - Table: a table's dead tuples and sizes;
//   - Progress and StartCPUProfile / WriteHeapProfile;
//   - pgoutbox's scenarios: Enqueue, Fill, BurnDown, Drain, WakeUp.
//
// Its SQL lives in .sql files (package directory sql/, run through SQL), not
// in the library's generated package: only a benchmark needs it. Starting a
// server with Testcontainers is package benchserver's, so that what links
// this package (the operator's outboxctl) does not link the container stack.
package benchkit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// Result is one measurement.
type Result struct {
	Scenario string `json:"scenario"`
	Variant  string `json:"variant"`
	// Scope is the scope the run wrote its messages in.
	Scope    string        `json:"scope,omitempty"`
	Messages int64         `json:"messages"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"per_sec"`
	P50      time.Duration `json:"p50_ns,omitempty"`
	P99      time.Duration `json:"p99_ns,omitempty"`
	// Enqueued and Delivered count the messages of the windows whose WAL
	// EnqueueWAL and DeliveryWAL hold: the window(s) in which the run
	// enqueued, and those in which it delivered. A run that does both at
	// once (continuous, wake-up) has one window, held in both.
	Enqueued    int64 `json:"enqueued"`
	Delivered   int64 `json:"delivered"`
	EnqueueWAL  WAL   `json:"enqueue_wal"`
	DeliveryWAL WAL   `json:"delivery_wal"`
	// Evidence is the measured window's (the drain's, for a burn-down).
	Evidence Evidence `json:"evidence"`
}

// Progress prints a counter once a second until stop is called (once or
// more).
func Progress(w io.Writer, label string, n *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start, last := time.Now(), int64(0)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				cur := n.Load()
				fmt.Fprintf(w, "  %s: %d messages, %d/s (%.0fs)\n", label, cur, cur-last, time.Since(start).Seconds())
				last = cur
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

// NewScope returns a fresh scope name with the given prefix.
func NewScope(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// Percentiles returns the median and 99th percentile of d (sorting it).
func Percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99)
}

func scoped(pool *pgxpool.Pool, scope string, opts ...outbox.Option) (*outbox.PostgresStore, error) {
	return outbox.NewPostgresStore(pool, opts...).Scoped(scope)
}

// Rate is n per second of d.
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
