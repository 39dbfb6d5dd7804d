package amqpsink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pgoutbox/pgoutbox/internal/rabbitserver"
	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	amqpsink "github.com/pgoutbox/pgoutbox/sink/amqp"
)

// rabbitmq-server is killed with SIGKILL mid-run and started again on the
// same port and data, while a relay publishes through the sink and one
// confirm in ten is lost on its way to the store. Nothing is acked without a
// publisher confirm, every committed message is in the durable queue after
// the crash, and RabbitMQ, which does not deduplicate, holds the republished
// ones twice: counted.
func TestFaultBrokerKilled(t *testing.T) {
	srv, err := rabbitserver.Start(t.Context(), t.TempDir())
	if err != nil {
		t.Fatalf("the fault test needs Debian's rabbitmq-server: %v", err)
	}
	defer func() { _ = srv.Close() }()
	exchange, queue, _ := topology(t, srv.URL(), "direct", "fault")
	sink, err := amqpsink.New(t.Context(), amqpsink.Config{URL: srv.URL(), Exchange: exchange, RoutingKey: "fault", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	seen := &queueReader{url: srv.URL(), queue: queue, counts: map[string]int{}}
	l := sinktest.Run(t, sinktest.Fault{
		Handler: sink.Handler(),
		Broker: sinktest.Broker{
			Stop:  srv.Kill,
			Start: func() error { return srv.Start(t.Context()) },
			Holds: seen.holds,
		},
		LostConfirmEvery: 10,
	})
	t.Log(l.Row("rabbitmq-server killed",
		"SIGKILL to rabbitmq-server 1 s into the run, started again 2 s later on the same port and data; durable queue, persistent messages; 1 confirm in 10 lost on its way to the store"))
}

// queueReader drains the queue, counting message ids across calls.
type queueReader struct {
	url, queue string
	mu         sync.Mutex
	counts     map[string]int
}

func (q *queueReader) holds(ctx context.Context) (map[string]int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var (
		conn *amqp.Connection
		err  error
	)
	// Right after a restart the node may still be starting its queues.
	for conn, err = amqp.Dial(q.url); err != nil; conn, err = amqp.Dial(q.url) {
		if ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	for {
		d, ok, err := ch.Get(q.queue, true)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		q.counts[d.MessageId]++
	}
	out := make(map[string]int, len(q.counts))
	for k, v := range q.counts {
		out[k] = v
	}
	return out, nil
}
