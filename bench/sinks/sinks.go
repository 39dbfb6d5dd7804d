package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgoutbox/pgoutbox/internal/rabbitserver"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	amqpsink "github.com/pgoutbox/pgoutbox/sink/amqp"
	kafkasink "github.com/pgoutbox/pgoutbox/sink/kafka"
	natssink "github.com/pgoutbox/pgoutbox/sink/nats"
	"github.com/pgoutbox/pgoutbox/sink/webhook"
)

// sinkUnderTest is one column of the table.
type sinkUnderTest struct {
	name    string
	handler relay.Handler
	// stored counts what the broker holds, to check that every confirmed
	// message is there (nil for the baseline).
	stored func(ctx context.Context) (int64, error)
}

const baseline = "no-op handler (baseline)"

// startSinks starts every broker and returns the sinks, baseline first.
func startSinks(ctx context.Context, dir string, log io.Writer) ([]sinkUnderTest, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) ([]sinkUnderTest, func(), error) { closeAll(); return nil, nil, err }
	out := []sinkUnderTest{{name: baseline, handler: func(context.Context, outbox.Message) error { return nil }}}

	// NATS JetStream: an embedded nats-server, file storage.
	fmt.Fprintln(log, "starting nats-server (embedded, JetStream on file storage)")
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		return fail(err)
	}
	ns.Start()
	closers = append(closers, ns.Shutdown)
	if !ns.ReadyForConnections(30 * time.Second) {
		return fail(errors.New("nats-server not ready"))
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fail(err)
	}
	closers = append(closers, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		return fail(err)
	}
	ns2, err := natssink.New(ctx, js, natssink.Config{Subject: "bench.{{.Target}}", Stream: "BENCH"})
	if err != nil {
		return fail(err)
	}
	out = append(out, sinkUnderTest{name: "NATS JetStream", handler: ns2.Handler(), stored: func(ctx context.Context) (int64, error) {
		info, err := stream.Info(ctx)
		if err != nil {
			return 0, err
		}
		return int64(info.State.Msgs), nil //nolint:gosec // a message count, far below 2^63
	}})

	// Kafka: franz-go's kfake, in process.
	fmt.Fprintln(log, "starting kfake (franz-go's in-process Kafka cluster)")
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, kc.Close)
	ks, err := kafkasink.New(ctx, kafkasink.Config{Brokers: kc.ListenAddrs(), Topic: "bench"})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, ks.Close)
	admin, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, admin.Close)
	out = append(out, sinkUnderTest{name: "Kafka (kfake)", handler: ks.Handler(), stored: func(ctx context.Context) (int64, error) {
		ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, "bench")
		if err != nil {
			return 0, err
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n, ends.Error()
	}})

	// RabbitMQ: Debian's rabbitmq-server, a durable queue.
	fmt.Fprintln(log, "starting rabbitmq-server")
	rs, err := rabbitserver.Start(ctx, mkdir(dir, "rabbitmq"))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = rs.Close() })
	conn, err := amqp.Dial(rs.URL())
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		return fail(err)
	}
	if err := ch.ExchangeDeclare("bench", "direct", true, false, false, false, nil); err != nil {
		return fail(err)
	}
	if _, err := ch.QueueDeclare("bench", true, false, false, false, nil); err != nil {
		return fail(err)
	}
	if err := ch.QueueBind("bench", "bench", "bench", false, nil); err != nil {
		return fail(err)
	}
	as, err := amqpsink.New(ctx, amqpsink.Config{URL: rs.URL(), Exchange: "bench", RoutingKey: "bench"})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, as.Close)
	var amqpSeen atomic.Int64
	out = append(out, sinkUnderTest{name: "RabbitMQ", handler: as.Handler(), stored: func(context.Context) (int64, error) {
		// Purge as it counts, so the broker does not carry every run's
		// messages into the next.
		n, err := ch.QueuePurge("bench", false)
		return amqpSeen.Add(int64(n)), err
	}})

	// Webhooks: an HTTP receiver in this process that verifies nothing
	// and answers 204.
	var received atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	closers = append(closers, hook.Close)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ws, err := webhook.New(webhook.Config{URL: hook.URL, Secrets: []string{webhook.SecretPrefix + base64.StdEncoding.EncodeToString(key)},
		Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{}).DialContext}}})
	if err != nil {
		return fail(err)
	}
	out = append(out, sinkUnderTest{name: "HTTP webhook", handler: ws.Handler(), stored: func(context.Context) (int64, error) { return received.Load(), nil }})
	return out, closeAll, nil
}

type result struct {
	rate    float64
	elapsed time.Duration
}

// measure enqueues o.messages messages, then times one relay until the
// handler has succeeded for every one, and checks the broker gained them.
func measure(ctx context.Context, pool *pgxpool.Pool, s sinkUnderTest, o options, log io.Writer) (result, error) {
	store, err := outbox.NewPostgresStore(pool, outbox.WithNotify(false)).Scoped("bench-sinks")
	if err != nil {
		return result{}, err
	}
	const lane, target = "sinks", "bench"
	drafts := make([]outbox.Draft, 0, 1000)
	for i := range o.messages {
		drafts = append(drafts, outbox.Draft{Lane: lane, Target: target,
			Payload: json.RawMessage(`{"order_id":` + strconv.Itoa(i) + `,"event":"order_placed","total_cents":4200}`)})
		if len(drafts) == cap(drafts) || i == o.messages-1 {
			if _, err := store.EnqueueMany(ctx, drafts); err != nil {
				return result{}, err
			}
			drafts = drafts[:0]
		}
	}
	var before int64
	if s.stored != nil {
		if before, err = s.stored(ctx); err != nil {
			return result{}, err
		}
	}
	var (
		confirmed atomic.Int64
		failures  atomic.Int64
		once      sync.Once
		all       = make(chan struct{})
	)
	handler := func(ctx context.Context, m outbox.Message) error {
		if err := s.handler(ctx, m); err != nil {
			failures.Add(1)
			return err
		}
		if confirmed.Add(1) == int64(o.messages) {
			once.Do(func() { close(all) })
		}
		return nil
	}
	r, err := relay.New(store, relay.Config{
		Lane: lane, Target: target, Handler: handler, Concurrency: o.concurrency,
		PollInterval: 50 * time.Millisecond, Backoff: relay.ExponentialBackoff(10*time.Millisecond, time.Second),
	})
	if err != nil {
		return result{}, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- r.Run(runCtx) }()
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		cancel()
		<-done //nolint:errcheck // the timeout is the error to report
		return result{}, fmt.Errorf("%d of %d confirmed after 10 minutes", confirmed.Load(), o.messages)
	case <-ctx.Done():
		cancel()
		<-done //nolint:errcheck // the interruption is the error to report
		return result{}, ctx.Err()
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return result{}, err
	}
	if n := failures.Load(); n > 0 {
		fmt.Fprintf(log, "  %s: %d failed publishes, retried\n", s.name, n)
	}
	if s.stored != nil {
		after, err := s.stored(ctx)
		if err != nil {
			return result{}, err
		}
		if got := after - before; got < int64(o.messages) {
			return result{}, fmt.Errorf("the broker gained %d messages, %d were confirmed", got, o.messages)
		}
	}
	return result{rate: float64(o.messages) / elapsed.Seconds(), elapsed: elapsed}, nil
}

func mkdir(parent, name string) string {
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		panic(err)
	}
	return d
}
