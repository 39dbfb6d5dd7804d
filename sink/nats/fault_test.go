package natssink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	natssink "github.com/pgoutbox/pgoutbox/sink/nats"
)

// The nats-server stops mid-run and starts again on the same port and
// store, while a relay publishes through the sink and one confirm in ten is
// lost on its way to the store. Nothing is acked without a PubAck, every
// committed message ends up in the stream, and the republished ones are
// absorbed by the duplicate window: the stream holds each message once.
func TestFaultBrokerRestart(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	createStream(t, js, jetstream.StreamConfig{Name: "FAULT", Subjects: []string{"fault.>"}, Duplicates: 2 * time.Minute})
	sink, err := natssink.New(t.Context(), js, natssink.Config{Subject: "fault.{{.Target}}", Stream: "FAULT", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l := sinktest.Run(t, sinktest.Fault{
		Handler: sink.Handler(),
		Broker: sinktest.Broker{
			Stop:  srv.Stop,
			Start: srv.Start,
			Holds: func(ctx context.Context) (map[string]int, error) { return holds(ctx, js, "FAULT") },
		},
		LostConfirmEvery: 10,
	})
	t.Log(l.Row("nats-server restarted (JetStream)",
		"embedded nats-server shut down 1 s into the run, started again 2 s later on the same port and store; 1 confirm in 10 lost on its way to the store"))
	if l.Duplicated != 0 {
		t.Errorf("%d duplicates in the stream; Nats-Msg-Id within the duplicate window should make them zero", l.Duplicated)
	}
	if l.Republished == 0 {
		t.Error("no message was published twice, so the run did not exercise deduplication")
	}
}

// holds reads every message of the stream and counts them by Nats-Msg-Id,
// retrying while a restarted server recovers the stream.
func holds(ctx context.Context, js jetstream.JetStream, name string) (map[string]int, error) {
	var lastErr error
	for ctx.Err() == nil {
		out, err := readStream(ctx, js, name)
		if err == nil {
			return out, nil
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return nil, errors.Join(ctx.Err(), lastErr)
}

func readStream(ctx context.Context, js jetstream.JetStream, name string) (map[string]int, error) {
	msgs, err := streamMessages(ctx, js, name)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return out, nil
}
