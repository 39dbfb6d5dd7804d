package memstore_test

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(_ *testing.T, now func() time.Time) storetest.Store {
			return memstore.New(memstore.WithClock(now))
		},
		Scoped: func(s storetest.Store, scope string) (storetest.Store, error) {
			return s.(*memstore.Store).Scoped(scope)
		},
		NewSkippingDeadLetters: func(_ *testing.T, now func() time.Time) storetest.Store {
			return memstore.New(memstore.WithClock(now), memstore.WithSkipDeadLetters(true))
		},
		Features: storetest.Features{OrderingKeys: true, Headers: true},
	})
}
