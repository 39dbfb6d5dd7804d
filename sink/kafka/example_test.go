package kafkasink_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	kafkasink "github.com/pgoutbox/pgoutbox/sink/kafka"
)

// A relay that produces every message of a lane and target to a Kafka topic.
// The example runs on franz-go's in-process kfake cluster so that it runs
// anywhere; a service names its own brokers.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sink, err := kafkasink.New(ctx, kafkasink.Config{
		Brokers: cluster.ListenAddrs(),
		Topic:   "orders",
	})
	if err != nil {
		panic(err)
	}
	defer sink.Close()
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
	consumer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		panic(err)
	}
	defer consumer.Close()
	var rec *kgo.Record
	for rec == nil {
		fetches := consumer.PollFetches(ctx)
		if err := fetches.Err0(); err != nil {
			panic(err)
		}
		if rs := fetches.Records(); len(rs) > 0 {
			rec = rs[0]
		}
	}
	// Unkeyed messages are keyed by their id.
	fmt.Println(string(rec.Value), string(rec.Key) == res.Message.ID)
	cancel()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output: {"order_id":42} true
}

// Bad configuration fails at construction, naming the field.
func ExampleNew_missingTopic() {
	_, err := kafkasink.New(context.Background(), kafkasink.Config{Brokers: []string{"localhost:9092"}})
	fmt.Println(err)
	// Output: kafkasink: config: invalid topic: is required
}
