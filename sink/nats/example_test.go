package natssink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	natssink "github.com/pgoutbox/pgoutbox/sink/nats"
)

// A relay that publishes every message of a lane and target to JetStream.
// The example embeds a nats-server so that it runs anywhere; a service
// connects to its own.
func Example() {
	dir, _ := os.MkdirTemp("", "natssink-example")
	defer func() { _ = os.RemoveAll(dir) }()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	if err != nil {
		panic(err)
	}

	sink, err := natssink.New(ctx, js, natssink.Config{
		Subject: `orders.{{.Target}}.{{or .OrderingKey "unordered"}}`,
		Stream:  "ORDERS",
	})
	if err != nil {
		panic(err)
	}
	store := memstore.New() // outbox.NewPostgresStore(pool) in a service
	r, err := relay.New(store, relay.Config{
		Lane: outbox.LaneCanonical, Target: "order_events",
		Handler: sink.Handler(), Wakeups: store,
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	res, err := store.Enqueue(ctx, outbox.Draft{
		Lane: outbox.LaneCanonical, Target: "order_events",
		Payload: json.RawMessage(`{"order_id":42}`),
	})
	if err != nil {
		panic(err)
	}
	// The relay publishes in the background; wait for the message.
	msg, err := stream.GetLastMsgForSubject(ctx, "orders.order_events.>")
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		msg, err = stream.GetLastMsgForSubject(ctx, "orders.order_events.>")
	}
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.Subject, string(msg.Data), msg.Header.Get("Nats-Msg-Id") == res.Message.ID)
	cancel()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output: orders.order_events.unordered {"order_id":42} true
}

// Bad configuration fails at construction, naming the field.
func ExampleNew_emptySubject() {
	_, err := natssink.New(context.Background(), nil, natssink.Config{})
	fmt.Println(err)
	// Output: natssink: config: invalid subject: is required (a template such as "orders.{{.Target}}")
}
