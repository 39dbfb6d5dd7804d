package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	"github.com/pgoutbox/pgoutbox/sink/webhook"
)

// A relay that POSTs every message of a lane and target to a webhook
// endpoint, here a test server standing in for the receiver.
func Example() {
	received := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received <- r.Header.Get(webhook.HeaderID)
		w.WriteHeader(http.StatusNoContent) // 2xx: the relay acks
	}))
	defer srv.Close()

	sink, err := webhook.New(webhook.Config{
		URL:     srv.URL,
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		Timeout: 15 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	store := memstore.New() // outbox.NewPostgresStore(pool) in a service
	r, err := relay.New(store, relay.Config{
		Lane: outbox.LaneCanonical, Target: "order_webhook",
		Handler: sink.Handler(), Wakeups: store,
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	res, err := store.Enqueue(ctx, outbox.Draft{
		Lane: outbox.LaneCanonical, Target: "order_webhook",
		Payload: json.RawMessage(`{"order_id": 42}`),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("webhook-id is the message id:", <-received == res.Message.ID)
	cancel()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output: webhook-id is the message id: true
}

// Bad configuration fails at construction, naming the field.
func ExampleNew_missingSecret() {
	_, err := webhook.New(webhook.Config{URL: "https://hooks.example.com/orders"})
	fmt.Println(err)
	// Output: webhook: config: invalid secrets: at least one secret is required
}
