// Package kafkasink is a relay sink that produces outbox messages to a Kafka
// topic with franz-go, and acks them only once every in-sync replica has
// them (acks=all).
//
//	sink, err := kafkasink.New(ctx, kafkasink.Config{
//		Brokers: []string{"kafka-1:9092", "kafka-2:9092"},
//		Topic:   "orders",
//	})
//	defer sink.Close()
//	r, err := relay.New(store, relay.Config{Lane: lane, Target: target, Handler: sink.Handler()})
//
// Each message becomes one record: the payload as its value, its headers
// copied, the message id in the pgoutbox-message-id header, and as the key
// its ordering key, or its id when it has none. Keyed records go to the
// partition the key hashes to (franz-go's default partitioner, murmur2 as in
// the Java client), so a relay, which hands out one message per ordering key
// at a time, keeps each key's order in its partition. Unkeyed messages are
// spread over partitions by their ids.
//
// The producer is idempotent (franz-go's default) with acks=all: a retry
// inside the client never writes a record twice. A redelivery by the relay
// (its ack to the store lost, its lease expired) is a new produce, and
// Kafka stores a second copy: consumers deduplicate by pgoutbox-message-id.
package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// HeaderMessageID is the record header that carries the outbox message id.
const HeaderMessageID = "pgoutbox-message-id"

// DefaultTimeout bounds each produce, from buffering the record to the
// acks=all response, when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config configures a Sink. Brokers and Topic are required.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topic receives every message. It must exist when New runs.
	Topic string
	// Timeout bounds each produce. Default DefaultTimeout. It is also the
	// client's record delivery timeout unless Options set one. The sink
	// also sets no linger (kgo.ProducerLinger(0)) unless Options do.
	Timeout time.Duration
	// Options are more franz-go client options: TLS, SASL, compression,
	// linger, a partitioner. Options that weaken what the sink promises
	// (kgo.DisableIdempotentWrite, kgo.RequiredAcks other than
	// kgo.AllISRAcks, a transactional id) are refused by New.
	Options []kgo.Opt
}

// Sink produces messages to one topic. It owns its Kafka client: Close it.
// It is safe for concurrent use, and a relay of concurrency N keeps up to N
// records in flight, batched by the client.
type Sink struct {
	cl      *kgo.Client
	topic   string
	timeout time.Duration
}

// New validates cfg, connects and checks that the topic exists. Missing
// brokers or topic, a topic the cluster does not have, and options that
// weaken the guarantees are errors that wrap outbox.ErrValidation and name
// the field (errors.As with *outbox.ValidationError); an unreachable cluster
// is a plain error. ctx bounds the topic lookup.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if len(cfg.Brokers) == 0 || slices.Contains(cfg.Brokers, "") {
		return nil, invalid("brokers", "at least one seed broker (host:port) is required, and none may be empty")
	}
	if strings.TrimSpace(cfg.Topic) == "" {
		return nil, invalid("topic", "is required")
	}
	if cfg.Timeout < 0 {
		return nil, invalid("timeout", "must not be negative, got %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	// No linger by default: every handler waits for its record's response,
	// so lingering only adds latency; records that arrive while a request
	// is in flight are batched into the next one anyway.
	opts := []kgo.Opt{kgo.RecordDeliveryTimeout(cfg.Timeout), kgo.ProducerLinger(0)}
	opts = append(opts, cfg.Options...)
	opts = append(opts, kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, invalid("options", "%v", err)
	}
	if off, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); off {
		cl.Close()
		return nil, invalid("options", "kgo.DisableIdempotentWrite: the sink needs the idempotent producer, so a retry inside the client never writes a record twice")
	}
	if vs := cl.OptValues(kgo.TransactionalID); len(vs) == 2 && vs[1] == true {
		cl.Close()
		return nil, invalid("options", "kgo.TransactionalID: the sink produces outside transactions")
	}
	s := &Sink{cl: cl, topic: cfg.Topic, timeout: cfg.Timeout}
	if err := s.checkTopic(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sink) checkTopic(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(s.topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		return fmt.Errorf("kafkasink: looking up topic %q: %w", s.topic, err)
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != s.topic {
			continue
		}
		switch err := kerr.ErrorForCode(rt.ErrorCode); {
		case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.InvalidTopicException):
			return invalid("topic", "%q: %v", s.topic, err)
		case err != nil:
			return fmt.Errorf("kafkasink: looking up topic %q: %w", s.topic, err)
		}
		return nil
	}
	return invalid("topic", "%q: not in the cluster's metadata", s.topic)
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("kafkasink: config: %w", &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Close flushes nothing (every produce already waited for its response) and
// closes the client.
func (s *Sink) Close() { s.cl.Close() }

// Handler returns the relay handler: it produces the message and returns nil
// once the partition's in-sync replicas have it.
func (s *Sink) Handler() relay.Handler { return s.Produce }

// Record returns the record the sink produces for m.
func (s *Sink) Record(m outbox.Message) *kgo.Record {
	key := m.OrderingKey
	if key == "" {
		key = m.ID
	}
	headers := make([]kgo.RecordHeader, 0, len(m.Headers)+1)
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		if k == HeaderMessageID {
			continue
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(m.Headers[k])})
	}
	headers = append(headers, kgo.RecordHeader{Key: HeaderMessageID, Value: []byte(m.ID)})
	return &kgo.Record{Topic: s.topic, Key: []byte(key), Value: m.Payload, Headers: headers}
}

// Produce produces m and waits for the acks=all response. It returns
// relay.Permanent when no retry can succeed (the record is larger than the
// broker or topic accepts, or the broker calls it invalid) and a plain error
// for everything else: timeouts, unreachable brokers, leader changes and
// unknown partitions are retried by the relay. ctx cancels a produce whose
// request has not been sent; once sent, an idempotent produce cannot be
// taken back, so the handler returns ctx's error and the record may still
// land (and a retry then writes a second copy).
func (s *Sink) Produce(ctx context.Context, m outbox.Message) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	done := make(chan error, 1)
	s.cl.Produce(ctx, s.Record(m), func(_ *kgo.Record, err error) { done <- err })
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("kafkasink: produce %s to %s: %w", m.ID, s.topic, err)
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord) {
		return relay.Permanent(err)
	}
	return err
}
