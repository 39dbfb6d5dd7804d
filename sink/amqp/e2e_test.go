package amqpsink_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	amqpsink "github.com/pgoutbox/pgoutbox/sink/amqp"
)

// End to end: producers enqueue drafts with a tenant header and ordering
// keys inside their spans, a relay of concurrency 8 publishes them through
// the sink to a topic exchange, one confirm in five is lost on its way to
// the store (so the relay publishes those again), and the durable queue
// bound to it holds every message at least once (RabbitMQ does not
// deduplicate) with the producer's headers, its traceparent and baggage,
// routed by its ordering key, and each key's messages in enqueue order.
func TestEndToEndHeadersTraceAndOrder(t *testing.T) {
	exchange, queue, ch := topology(t, broker.URL(), "topic", "e2e.#")
	sink := newSink(t, amqpsink.Config{Exchange: exchange, RoutingKey: `e2e.{{or .OrderingKey "none"}}`})
	var deliveries []amqp.Delivery
	res := sinktest.RunEndToEnd(t, sinktest.EndToEnd{
		Handler:          sink.Handler(),
		LostConfirmEvery: 5,
		Read: func(context.Context) ([]sinktest.Received, error) {
			var out []sinktest.Received
			for {
				d, ok, err := ch.Get(queue, true)
				if err != nil {
					return nil, err
				}
				if !ok {
					return out, nil
				}
				deliveries = append(deliveries, d)
				h := make(map[string]string, len(d.Headers))
				for k, v := range d.Headers {
					h[k] = fmt.Sprint(v)
				}
				out = append(out, sinktest.Received{ID: d.MessageId, Headers: h, Payload: d.Body})
			}
		},
	})
	for _, d := range deliveries {
		s, ok := res.Sent[d.MessageId]
		if !ok {
			continue // reported by the run
		}
		want := "none"
		if s.OrderingKey != "" {
			want = s.OrderingKey
		}
		if got, _ := strings.CutPrefix(d.RoutingKey, "e2e."); got != want {
			t.Errorf("message %s routed with %q, want its key %q", s.ID, d.RoutingKey, want)
		}
	}
}
