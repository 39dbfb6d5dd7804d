package benchkit

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// FillDrainBench enqueues total messages (order events of a few dozen
// bytes) for DrainBench into store, in batches of 1,000.
func FillDrainBench(b *testing.B, store interface {
	EnqueueMany(context.Context, []outbox.Draft) ([]outbox.EnqueueResult, error)
}, total int,
) {
	b.Helper()
	const batch = 1000
	drafts := make([]outbox.Draft, 0, batch)
	for i := range total {
		drafts = append(drafts, outbox.Draft{Lane: "bench", Target: "drain",
			Payload: json.RawMessage(`{"order_id":` + strconv.Itoa(i) + `,"event":"order_placed","total_cents":4200}`)})
		if len(drafts) == batch || i == total-1 {
			if _, err := store.EnqueueMany(b.Context(), drafts); err != nil {
				b.Fatal(err)
			}
			drafts = drafts[:0]
		}
	}
}

// DrainBench has one relay (claim mode, concurrency 256, a no-op handler)
// deliver total messages already in store (lane "bench", target "drain"), timed from its start until Run
// has returned (every ack flushed), and reports allocations, bytes and
// messages per second.
func DrainBench(b *testing.B, store relay.Store, total int) {
	b.Helper()
	var handled atomic.Int64
	all := make(chan struct{})
	r, err := relay.New(store, relay.Config{
		Lane: "bench", Target: "drain", Concurrency: 256, ConsumerID: "bench", PollInterval: 50 * time.Millisecond,
		Handler: func(context.Context, outbox.Message) error {
			if handled.Add(1) == int64(total) {
				close(all)
			}
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(b.Context())
	defer cancel()
	ran := make(chan error, 1)
	var before, after runtime.MemStats
	b.ReportAllocs()
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	go func() { ran <- r.Run(runCtx) }()
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		b.Fatalf("drain: %d of %d messages delivered after 10 minutes", handled.Load(), total)
	}
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	n := float64(total)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/msg")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/msg")
	b.ReportMetric(n/elapsed.Seconds(), "msg/s")
}
