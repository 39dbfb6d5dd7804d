package natssink_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	natssink "github.com/pgoutbox/pgoutbox/sink/nats"
)

func message(id, payload string) outbox.Message {
	return outbox.Message{ID: id, Lane: "canonical", Target: "orders", Payload: json.RawMessage(payload), AttemptCount: 1}
}

func TestPublishStoresWithIDSubjectAndHeaders(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	st := createStream(t, js, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	sink, err := natssink.New(t.Context(), js, natssink.Config{
		Subject: `orders.{{.Lane}}.{{or .OrderingKey "none"}}`, Stream: "ORDERS",
	})
	if err != nil {
		t.Fatal(err)
	}
	m := message("17", `{"order_id":17}`)
	m.OrderingKey = "customer-9"
	m.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "tenant=acme"}
	if err := sink.Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	unkeyed := message("18", `{"order_id":18}`)
	if err := sink.Publish(t.Context(), unkeyed); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "orders.canonical.customer-9" || string(got.Data) != `{"order_id":17}` {
		t.Errorf("stored %s %s", got.Subject, got.Data)
	}
	if got.Header.Get(jetstream.MsgIDHeader) != "17" || got.Header.Get("traceparent") != m.Headers["traceparent"] || got.Header.Get("baggage") != "tenant=acme" {
		t.Errorf("headers %v", got.Header)
	}
	if got, err := st.GetMsg(t.Context(), 2); err != nil || got.Subject != "orders.canonical.none" {
		t.Errorf("unkeyed message: %v, %v", got, err)
	}
}

// A redelivered message (same id) within the duplicate window is acked
// again, and JetStream stores it once.
func TestRedeliveryIsDeduplicated(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	st := createStream(t, js, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Duplicates: time.Minute})
	sink, err := natssink.New(t.Context(), js, natssink.Config{Subject: "orders.{{.Target}}"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := sink.Publish(t.Context(), message("5", `1`)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after three publishes of one id, want 1", info.State.Msgs)
	}
}

func TestPermanentAndRetryableErrors(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	createStream(t, js, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, MaxMsgSize: 64})
	createStream(t, js, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
	keyed, err := natssink.New(t.Context(), js, natssink.Config{Subject: `orders.{{or .OrderingKey "none"}}`, Stream: "ORDERS"})
	if err != nil {
		t.Fatal(err)
	}
	wrongStream, err := natssink.New(t.Context(), js, natssink.Config{Subject: "other.x", Stream: "ORDERS"})
	if err != nil {
		t.Fatal(err)
	}
	noStream, err := natssink.New(t.Context(), js, natssink.Config{Subject: "nowhere.x", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	spaced := message("1", `1`)
	spaced.OrderingKey = "has space"
	wild := message("2", `1`)
	wild.OrderingKey = "*"
	for _, tc := range []struct {
		name      string
		sink      *natssink.Sink
		m         outbox.Message
		permanent bool
	}{
		{"ordering key with a space", keyed, spaced, true},
		{"ordering key that is a wildcard", keyed, wild, true},
		{"larger than the stream's max_msg_size", keyed, message("3", `"`+strings.Repeat("x", 100)+`"`), true},
		{"captured by another stream than Config.Stream", wrongStream, message("4", `1`), true},
		{"no stream captures the subject (no responders)", noStream, message("5", `1`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sink.Publish(t.Context(), tc.m)
			if err == nil || relay.IsPermanent(err) != tc.permanent {
				t.Errorf("got %v; want an error, permanent %v", err, tc.permanent)
			}
		})
	}
	// A cancelled context (the relay lost the claim) ends a publish.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := keyed.Publish(ctx, message("6", `1`)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	createStream(t, js, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	for _, tc := range []struct {
		cfg   natssink.Config
		field string
	}{
		{natssink.Config{}, "subject"},
		{natssink.Config{Subject: "  "}, "subject"},
		{natssink.Config{Subject: "orders.{{.Target"}, "subject"},
		{natssink.Config{Subject: "orders.{{.Nope}}"}, "subject"},
		{natssink.Config{Subject: "orders.*"}, "subject"},
		{natssink.Config{Subject: "orders..x"}, "subject"},
		{natssink.Config{Subject: "orders.{{.OrderingKey}}"}, "subject"}, // empty token for unkeyed messages
		{natssink.Config{Subject: "orders.x", Stream: "MISSING"}, "stream"},
		{natssink.Config{Subject: "orders.x", Timeout: -time.Second}, "timeout"},
	} {
		_, err := natssink.New(t.Context(), js, tc.cfg)
		var ve *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: got %v, want a validation error on %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := natssink.New(t.Context(), nil, natssink.Config{Subject: "x"}); !errors.Is(err, outbox.ErrValidation) {
		t.Errorf("nil JetStream: %v", err)
	}
}
