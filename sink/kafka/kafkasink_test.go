package kafkasink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	kafkasink "github.com/pgoutbox/pgoutbox/sink/kafka"
)

func message(id, payload string) outbox.Message {
	return outbox.Message{ID: id, Lane: "canonical", Target: "orders", Payload: json.RawMessage(payload), AttemptCount: 1}
}

func newSink(t *testing.T, c *cluster, topic string, opts ...kgo.Opt) *kafkasink.Sink {
	t.Helper()
	s, err := kafkasink.New(t.Context(), kafkasink.Config{Brokers: []string{c.Addr()}, Topic: topic, Timeout: 5 * time.Second, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// consume reads n records of topic from the start.
func consume(t *testing.T, c *cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addr()), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d records read", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestProduceKeysHeadersAndValue(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(4, "orders"))
	sink := newSink(t, c, "orders")
	keyed := message("17", `{"order_id":17}`)
	keyed.OrderingKey = "customer-9"
	keyed.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "tenant=acme"}
	for _, m := range []outbox.Message{keyed, message("18", `{"order_id":18}`)} {
		if err := sink.Produce(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	recs := consume(t, c, "orders", 2)
	byID := map[string]*kgo.Record{}
	for _, r := range recs {
		byID[header(r, kafkasink.HeaderMessageID)] = r
	}
	r := byID["17"]
	if r == nil || string(r.Key) != "customer-9" || string(r.Value) != `{"order_id":17}` ||
		header(r, "traceparent") != keyed.Headers["traceparent"] || header(r, "baggage") != "tenant=acme" {
		t.Errorf("keyed record: %+v", r)
	}
	if r := byID["18"]; r == nil || string(r.Key) != "18" {
		t.Errorf("unkeyed record is not keyed by its id: %+v", r)
	}
}

// Messages of one ordering key, delivered one at a time as a relay does,
// land in one partition in their order.
func TestOrderingKeyKeepsOrderInItsPartition(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(8, "orders"))
	sink := newSink(t, c, "orders")
	const n = 40
	for i := range n {
		m := message(fmt.Sprint(i+1), fmt.Sprintf(`{"seq":%03d}`, i))
		m.OrderingKey = fmt.Sprintf("customer-%d", i%3)
		if err := sink.Produce(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	partition := map[string]int32{}
	last := map[string]string{}
	for _, r := range consume(t, c, "orders", n) {
		k := string(r.Key)
		if p, ok := partition[k]; ok && p != r.Partition {
			t.Errorf("key %s in partitions %d and %d", k, p, r.Partition)
		}
		partition[k] = r.Partition
		if string(r.Value) <= last[k] {
			t.Errorf("key %s: %s after %s", k, r.Value, last[k])
		}
		last[k] = string(r.Value)
	}
}

func TestErrors(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(1, "orders"), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2048"}))
	sink := newSink(t, c, "orders")
	// Random bytes, so the client's compression cannot shrink them.
	noise := make([]byte, 4096)
	_, _ = rand.Read(noise)
	big := message("1", `"`+hex.EncodeToString(noise)+`"`)
	if err := sink.Produce(t.Context(), big); !relay.IsPermanent(err) {
		t.Errorf("record larger than message.max.bytes: %v, want permanent", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sink.Produce(ctx, message("2", `1`)); err == nil || relay.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// The broker gone: a retryable error within the timeout.
	short, err := kafkasink.New(t.Context(), kafkasink.Config{Brokers: []string{c.Addr()}, Topic: "orders", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	_ = c.Stop()
	if err := short.Produce(t.Context(), message("3", `1`)); err == nil || relay.IsPermanent(err) {
		t.Errorf("broker down: %v, want a retryable error", err)
	}
}

func TestConfigErrors(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(1, "orders"))
	for _, tc := range []struct {
		cfg   kafkasink.Config
		field string
	}{
		{kafkasink.Config{Topic: "orders"}, "brokers"},
		{kafkasink.Config{Brokers: []string{""}, Topic: "orders"}, "brokers"},
		{kafkasink.Config{Brokers: []string{c.Addr()}}, "topic"},
		{kafkasink.Config{Brokers: []string{c.Addr()}, Topic: "missing"}, "topic"},
		{kafkasink.Config{Brokers: []string{c.Addr()}, Topic: "orders", Timeout: -1}, "timeout"},
		{kafkasink.Config{Brokers: []string{c.Addr()}, Topic: "orders", Options: []kgo.Opt{kgo.DisableIdempotentWrite()}}, "options"},
		{kafkasink.Config{Brokers: []string{c.Addr()}, Topic: "orders", Options: []kgo.Opt{kgo.TransactionalID("x")}}, "options"},
	} {
		s, err := kafkasink.New(t.Context(), tc.cfg)
		var ve *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: got %v, want a validation error on %s", tc.cfg, err, tc.field)
		}
		if s != nil {
			s.Close()
		}
	}
}

// The kfake cluster closes mid-run (kfake's own Close: every connection
// dropped) and starts again on the same port from its data directory, while
// a relay produces through the sink and one confirm in ten is lost on its
// way to the store. Nothing is acked without an acks=all response, and every
// committed message is in the topic; Kafka has no deduplication across
// produces, so the republished ones are duplicates, counted.
func TestFaultBrokerRestart(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(4, "fault"))
	sink := newSink(t, c, "fault")
	l := sinktest.Run(t, sinktest.Fault{
		Handler: sink.Handler(),
		Broker: sinktest.Broker{
			Stop:  c.Stop,
			Start: c.Start,
			Holds: func(ctx context.Context) (map[string]int, error) {
				for {
					h, err := holds(ctx, c.Addr(), "fault")
					if err == nil || ctx.Err() != nil {
						return h, err
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
		},
		LostConfirmEvery: 10,
	})
	t.Log(l.Row("Kafka (kfake) restarted",
		"kfake cluster closed 1 s into the run, started again 2 s later on the same port and data directory; 1 confirm in 10 lost on its way to the store"))
	if l.Duplicated < l.Republished {
		t.Logf("%d republished, %d duplicates", l.Republished, l.Duplicated)
	}
}

// kfake's fault injection answers five produce requests with
// NOT_ENOUGH_REPLICAS_AFTER_APPEND after appending them, as a broker that
// lost its in-sync replicas mid-write does. The idempotent producer retries
// those batches inside the client, and the broker drops the repeats by their
// sequence numbers: every handler call succeeds, and each record is stored
// once.
func TestIdempotentProducerRetriesWriteOnce(t *testing.T) {
	c := startCluster(t, kfake.SeedTopics(1, "orders"))
	sink := newSink(t, c, "orders")
	h := c.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicasAfterAppend, Count: 5})
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sink.Produce(t.Context(), message(fmt.Sprint(i), `1`))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if hits := h.Hits(); hits == 0 {
		t.Fatal("the fault never fired")
	}
	got, err := holds(t.Context(), c.Addr(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if k := got[fmt.Sprint(i)]; k != 1 {
			t.Errorf("message %d stored %d times", i, k)
		}
	}
}
