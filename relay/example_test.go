package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// A relay delivering the events of one order in the order they happened: the
// ordering key makes the relay hand them out one at a time, in enqueue
// order, even with 16 handlers running. The in-memory store stands in for
// PostgreSQL here (as in unit tests of a handler); a relay runs on an
// outbox.PostgresStore unchanged.
func Example() {
	store := memstore.New()
	var (
		mu        sync.Mutex
		delivered []string
		done      = make(chan struct{})
	)
	r, err := relay.New(store, relay.Config{
		Lane: "orders", Target: "projector", Concurrency: 16,
		Wakeups: store, // memstore wakes relays on enqueue, as NOTIFY does
		Handler: func(_ context.Context, m outbox.Message) error {
			var event string
			if err := json.Unmarshal(m.Payload, &event); err != nil {
				return relay.Permanent(err) // a malformed payload never gets better
			}
			mu.Lock()
			defer mu.Unlock()
			delivered = append(delivered, event)
			if len(delivered) == 3 {
				close(done)
			}
			return nil // acks the message
		},
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- r.Run(ctx) }()

	for _, event := range []string{"placed", "paid", "shipped"} {
		payload, _ := json.Marshal(event)
		_, err := store.Enqueue(context.Background(), outbox.Draft{
			Lane: "orders", Target: "projector", OrderingKey: "order-42", Payload: payload,
		})
		if err != nil {
			panic(err)
		}
	}
	<-done
	stop()
	if err := <-stopped; err != nil {
		panic(err)
	}
	fmt.Println(delivered)
	// Output: [placed paid shipped]
}
