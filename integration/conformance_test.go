package integration

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/storetest"
)

// The conformance suite that memstore also passes, on PostgreSQL.
func TestPostgresStoreConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T, now func() time.Time) storetest.Store {
			return outbox.NewPostgresStore(pgtest.NewDB(t).Pool, outbox.WithClock(now))
		},
		Scoped: func(s storetest.Store, scope string) (storetest.Store, error) {
			return s.(*outbox.PostgresStore).Scoped(scope)
		},
		NewSkippingDeadLetters: func(t *testing.T, now func() time.Time) storetest.Store {
			return outbox.NewPostgresStore(pgtest.NewDB(t).Pool, outbox.WithClock(now), outbox.WithSkipDeadLetters(true))
		},
		Features: storetest.Features{OrderingKeys: true, Headers: true},
	})
}
