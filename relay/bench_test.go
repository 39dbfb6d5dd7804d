package relay_test

import (
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/memstore"
)

// BenchmarkRelayDrainMemstore measures what one relay allocates per
// delivered message while it drains a backlog at full speed, on the
// in-memory store: the figures hold the relay's own allocations and
// memstore's, but none of pgx's or the PostgreSQL store's. Its twin on
// PostgreSQL, with the same relay settings as the memory scenario of `make
// bench` (concurrency 256, notifications off, a no-op handler), is
// BenchmarkRelayDrain in ./integration; the difference between the two is
// what the PostgreSQL store and pgx add.
//
// One op is one delivered message: b.N messages are enqueued with the timer
// stopped, then one relay delivers and acks all of them. allocs/msg and
// B/msg count every allocation of the process during the drain (runtime
// MemStats), as the memory scenario does. Give b.N explicitly, so that the
// backlog is large enough to reach the steady state:
//
//	go test -run '^$' -bench RelayDrainMemstore -benchtime 20000x -count 3 ./relay
//
// For the allocation sites, add -memprofile mem.out and read it with
// `go tool pprof -sample_index=alloc_objects -top mem.out`.
func BenchmarkRelayDrainMemstore(b *testing.B) {
	store := memstore.New()
	benchkit.FillDrainBench(b, store, b.N)
	benchkit.DrainBench(b, store, b.N)
}
