package natssink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgoutbox/pgoutbox/internal/sinktest"
	natssink "github.com/pgoutbox/pgoutbox/sink/nats"
)

// End to end: producers enqueue drafts with a tenant header and ordering
// keys inside their spans, a relay of concurrency 8 publishes them through
// the sink, one confirm in five is lost on its way to the store (so the relay
// publishes those again), and the stream holds each message exactly once
// (Nats-Msg-Id),
// with the producer's headers, its traceparent and baggage, on the subject
// of its ordering key, and each key's messages in enqueue order by stream
// sequence.
func TestEndToEndHeadersTraceAndOrder(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	createStream(t, js, jetstream.StreamConfig{Name: "E2E", Subjects: []string{"e2e.>"}, Duplicates: 2 * time.Minute})
	sink, err := natssink.New(t.Context(), js, natssink.Config{Subject: `e2e.{{.Lane}}.{{or .OrderingKey "none"}}`, Stream: "E2E"})
	if err != nil {
		t.Fatal(err)
	}
	res := sinktest.RunEndToEnd(t, sinktest.EndToEnd{
		Handler:          sink.Handler(),
		ExactlyOnce:      true,
		LostConfirmEvery: 5,
		Read: func(ctx context.Context) ([]sinktest.Received, error) {
			msgs, err := streamMessages(ctx, js, "E2E")
			if err != nil {
				return nil, err
			}
			out := make([]sinktest.Received, 0, len(msgs))
			for _, m := range msgs {
				h := make(map[string]string, len(m.Header))
				for k := range m.Header {
					h[k] = m.Header.Get(k)
				}
				out = append(out, sinktest.Received{ID: m.Header.Get(jetstream.MsgIDHeader), Headers: h, Payload: m.Data})
			}
			return out, nil
		},
	})
	// The subject carries the ordering key, as the template says.
	msgs, err := streamMessages(t.Context(), js, "E2E")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		s := res.Sent[m.Header.Get(jetstream.MsgIDHeader)]
		want := "none"
		if s.OrderingKey != "" {
			want = s.OrderingKey
		}
		if tok := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]; tok != want {
			t.Errorf("message %s on subject %q, want its key %q last", s.ID, m.Subject, want)
		}
	}
}

// streamMessages reads every message of the stream in sequence order.
func streamMessages(ctx context.Context, js jetstream.JetStream, name string) ([]*jetstream.RawStreamMsg, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s, sequence %d: %w", name, seq, err)
		}
		out = append(out, m)
	}
	return out, nil
}
