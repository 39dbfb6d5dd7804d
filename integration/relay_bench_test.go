package integration

import (
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// BenchmarkRelayDrain measures what one relay allocates per delivered
// message while it drains a backlog at full speed on PostgreSQL, as the
// memory scenario of `make bench` does (BENCHMARKS.md, memory): claim mode,
// concurrency 256, notifications off, a no-op handler. The figures hold the
// relay's allocations, the PostgreSQL store's and pgx's; its twin on the
// in-memory store, BenchmarkRelayDrainMemstore in ./relay, leaves out the
// last two.
//
// One op is one delivered message: b.N messages are enqueued with the timer
// stopped, then one relay delivers and acks all of them. allocs/msg and
// B/msg count every allocation of the process during the drain (runtime
// MemStats), as the memory scenario does; msg/s is the drain's rate, on the
// test server (fsync and synchronous_commit off), so compare it only with a
// run on the same machine at the same time. Give b.N explicitly, so that the
// backlog is large enough to reach the steady state:
//
//	go test -run '^$' -bench RelayDrain -benchtime 20000x -count 3 ./integration
//
// For the allocation sites, add -memprofile mem.out and read it with
// `go tool pprof -sample_index=alloc_objects -top mem.out`.
func BenchmarkRelayDrain(b *testing.B) {
	d := pgtest.NewDB(b)
	ctx := b.Context()
	store := outbox.NewPostgresStore(d.Pool, outbox.WithNotify(false))
	benchkit.FillDrainBench(b, store, b.N)
	if _, err := d.Pool.Exec(ctx, "VACUUM ANALYZE pgoutbox_message"); err != nil {
		b.Fatal(err)
	}
	benchkit.DrainBench(b, store, b.N)
	left, err := store.List(ctx, outbox.ListFilter{Status: outbox.StatusPending, Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	claimed, err := store.List(ctx, outbox.ListFilter{Status: outbox.StatusClaimed, Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	if len(left)+len(claimed) > 0 {
		b.Fatalf("drain: messages left pending (%d) or claimed (%d) after the relay returned", len(left), len(claimed))
	}
}
