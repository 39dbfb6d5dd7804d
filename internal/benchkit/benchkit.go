// Package benchkit holds pgoutbox's benchmark scenarios, shared by
// `outboxctl bench` and the comparison in the bench module. Every scenario
// runs in a scope of its own, so runs against one database never mix.
package benchkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// Result is one measurement.
type Result struct {
	Scenario string        `json:"scenario"`
	Variant  string        `json:"variant"`
	Messages int64         `json:"messages"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"per_sec"`
	P50      time.Duration `json:"p50_ns,omitempty"`
	P99      time.Duration `json:"p99_ns,omitempty"`
}

// Settings are the server settings a figure depends on.
type Settings = db.ServerSettingsRow

// ServerSettings reads them.
func ServerSettings(ctx context.Context, pool *pgxpool.Pool) (Settings, error) {
	return db.New(pool).ServerSettings(ctx)
}

// Durability names the commit mode of a server for reports.
func Durability(s Settings) string {
	if s.Fsync == "on" && s.SynchronousCommit != "off" {
		return "durable (fsync on, synchronous_commit " + s.SynchronousCommit + ")"
	}
	return fmt.Sprintf("not durable (fsync %s, synchronous_commit %s)", s.Fsync, s.SynchronousCommit)
}

// Progress prints a counter once a second until stop is called.
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
	return func() { close(done); <-finished }
}

func scope(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99)
}

func scoped(pool *pgxpool.Pool, prefix string, opts ...outbox.Option) (*outbox.PostgresStore, error) {
	return outbox.NewPostgresStore(pool, opts...).Scoped(scope(prefix))
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
