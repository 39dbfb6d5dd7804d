package amqpsink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	amqpsink "github.com/pgoutbox/pgoutbox/sink/amqp"
)

func message(id, payload string) outbox.Message {
	return outbox.Message{ID: id, Lane: "canonical", Target: "orders", Payload: json.RawMessage(payload), AttemptCount: 1,
		CreatedAt: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

// topology declares a durable exchange and queue, bound by key, unique to
// the test, on a connection of its own.
func topology(t *testing.T, url, kind, key string) (exchange, queue string, ch *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err = conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	exchange, queue = name+"-x", name+"-q"
	if err := ch.ExchangeDeclare(exchange, kind, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, key, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return exchange, queue, ch
}

func newSink(t *testing.T, cfg amqpsink.Config) *amqpsink.Sink {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = broker.URL()
	}
	s, err := amqpsink.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestPublishPropertiesAndHeaders(t *testing.T) {
	exchange, queue, ch := topology(t, broker.URL(), "direct", "order.orders.customer-9")
	sink := newSink(t, amqpsink.Config{Exchange: exchange, RoutingKey: "order.{{.Target}}.{{.OrderingKey}}"})
	m := message("17", `{"order_id":17}`)
	m.OrderingKey = "customer-9"
	m.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "tenant=acme"}
	if err := sink.Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get(queue, true)
	if err != nil || !ok {
		t.Fatalf("queue empty: %v", err)
	}
	if d.MessageId != "17" || d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" ||
		string(d.Body) != `{"order_id":17}` || !d.Timestamp.Equal(m.CreatedAt) || d.RoutingKey != "order.orders.customer-9" {
		t.Errorf("delivery %+v", d)
	}
	if d.Headers["traceparent"] != m.Headers["traceparent"] || d.Headers["baggage"] != "tenant=acme" {
		t.Errorf("headers %v", d.Headers)
	}
}

func TestDefaultExchangeRoutesToTheQueue(t *testing.T) {
	_, queue, ch := topology(t, broker.URL(), "direct", "unused")
	sink := newSink(t, amqpsink.Config{RoutingKey: queue})
	if err := sink.Publish(t.Context(), message("1", `1`)); err != nil {
		t.Fatal(err)
	}
	if d, ok, err := ch.Get(queue, true); err != nil || !ok || d.MessageId != "1" {
		t.Fatalf("got %v %v %v", d.MessageId, ok, err)
	}
}

// Concurrent publishes, one in five to a routing key no queue is bound to:
// exactly those fail, with ErrReturned (retryable), and the rest are
// confirmed and queued.
func TestReturnedMessagesFailUnderConcurrency(t *testing.T) {
	exchange, queue, ch := topology(t, broker.URL(), "direct", "bound")
	sink := newSink(t, amqpsink.Config{Exchange: exchange, RoutingKey: `{{if eq .OrderingKey "lost"}}unbound{{else}}bound{{end}}`})
	const n = 100
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := message(fmt.Sprint(i), `1`)
			if i%5 == 0 {
				m.OrderingKey = "lost"
			}
			errs[i] = sink.Publish(t.Context(), m)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%5 == 0 {
			if !errors.Is(err, amqpsink.ErrReturned) || relay.IsPermanent(err) {
				t.Errorf("unroutable %d: %v, want a retryable ErrReturned", i, err)
			}
		} else if err != nil {
			t.Errorf("routable %d: %v", i, err)
		}
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != n-n/5 {
		t.Errorf("queue holds %d, want %d", q.Messages, n-n/5)
	}
}

func TestPermanentAndContextErrors(t *testing.T) {
	exchange, _, _ := topology(t, broker.URL(), "direct", "x")
	sink := newSink(t, amqpsink.Config{Exchange: exchange, RoutingKey: "{{.OrderingKey}}"})
	long := message("1", `1`)
	long.OrderingKey = strings.Repeat("k", 300)
	if err := sink.Publish(t.Context(), long); !relay.IsPermanent(err) {
		t.Errorf("routing key over 255 bytes: %v, want permanent", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sink.Publish(ctx, message("2", `1`)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	sink.Close()
	if err := sink.Publish(t.Context(), message("3", `1`)); !errors.Is(err, amqpsink.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	exchange, _, _ := topology(t, broker.URL(), "direct", "x")
	for _, tc := range []struct {
		cfg   amqpsink.Config
		field string
	}{
		{amqpsink.Config{RoutingKey: "q"}, "url"},
		{amqpsink.Config{URL: "http://example.com", RoutingKey: "q"}, "url"},
		{amqpsink.Config{URL: broker.URL()}, "routing_key"},
		{amqpsink.Config{URL: broker.URL(), Exchange: exchange, RoutingKey: "{{.Nope"}, "routing_key"},
		{amqpsink.Config{URL: broker.URL(), Exchange: exchange, RoutingKey: "{{.Nope}}"}, "routing_key"},
		{amqpsink.Config{URL: broker.URL(), Exchange: "no-such-exchange", RoutingKey: "k"}, "exchange"},
		{amqpsink.Config{URL: broker.URL(), Exchange: exchange, Timeout: -1}, "timeout"},
	} {
		s, err := amqpsink.New(t.Context(), tc.cfg)
		var ve *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: got %v, want a validation error on %s", tc.cfg, err, tc.field)
		}
		if s != nil {
			s.Close()
		}
	}
	// Unreachable is not a configuration error.
	_, err := amqpsink.New(t.Context(), amqpsink.Config{URL: "amqp://guest:guest@127.0.0.1:1/", RoutingKey: "q", Timeout: time.Second})
	if err == nil || errors.Is(err, outbox.ErrValidation) {
		t.Errorf("unreachable broker: %v", err)
	}
}
