package amqpsink_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	amqpsink "github.com/pgoutbox/pgoutbox/sink/amqp"
)

// A relay that publishes every message of a lane and target to a RabbitMQ
// exchange, with publisher confirms. It needs a broker, so it has no
// output to check; the tests run the same calls on Debian's
// rabbitmq-server.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sink, err := amqpsink.New(ctx, amqpsink.Config{
		URL:        os.Getenv("AMQP_URL"), // amqp://user:password@host:5672/vhost
		Exchange:   "orders",              // must exist: declare it with your topology
		RoutingKey: "order.{{.Target}}",
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
	if err := r.Run(ctx); err != nil {
		panic(err)
	}
}

// Bad configuration fails at construction, naming the field.
func ExampleNew_unknownExchange() {
	_, err := amqpsink.New(context.Background(), amqpsink.Config{
		URL: broker.URL(), Exchange: "no-such-exchange", RoutingKey: "k",
	})
	var ve *outbox.ValidationError
	fmt.Println(errors.As(err, &ve), ve.Field)
	// Output: true exchange
}
