// Package natssink is a relay sink that publishes outbox messages to NATS
// JetStream and acks them only once JetStream has stored them (its PubAck).
//
//	js, err := jetstream.New(nc)
//	sink, err := natssink.New(ctx, js, natssink.Config{
//		Subject: "orders.{{.Target}}",
//		Stream:  "ORDERS",
//	})
//	r, err := relay.New(store, relay.Config{Lane: lane, Target: target, Handler: sink.Handler()})
//
// Each message becomes one JetStream message: its payload as the data, its
// headers copied, and its id as the Nats-Msg-Id header, so JetStream's
// duplicate window (two minutes by default, the stream's duplicate_window)
// drops a second publish of the same message: a redelivery after a lost ack
// or an expired lease stores nothing new. A redelivery later than the window
// stores a second copy; keep the window longer than the relay's lease plus
// its longest backoff if consumers must never see one.
//
// The sink takes a jetstream.JetStream the caller owns: nats.go reconnects on
// its own, so a broker restart needs nothing from the sink, and Close is not
// needed.
package natssink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// DefaultTimeout bounds each publish, from sending to JetStream's PubAck,
// when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config configures a Sink. Subject is required.
type Config struct {
	// Subject is a text/template that renders each message's subject from
	// SubjectData: "orders.{{.Target}}" or
	// "orders.{{.Lane}}.{{or .OrderingKey \"none\"}}". The rendered subject
	// must be a valid NATS subject for publishing: dot-separated tokens,
	// none empty, no whitespace, no wildcards (* and >).
	Subject string
	// Stream, when set, names the stream the messages must land in: it
	// must exist when New runs, and every publish carries
	// Nats-Expected-Stream, so a subject captured by another stream is
	// refused (a permanent error) instead of stored in the wrong place.
	Stream string
	// Timeout bounds each publish. Default DefaultTimeout.
	Timeout time.Duration
}

// SubjectData is what Config.Subject renders.
type SubjectData struct {
	Lane, Target string
	// OrderingKey is "" for unordered messages.
	OrderingKey string
	// ID is the message id.
	ID string
}

// Sink publishes messages to JetStream. It is safe for concurrent use: a
// relay of concurrency N keeps up to N publishes waiting for their PubAck.
type Sink struct {
	js      jetstream.JetStream
	subject *template.Template
	stream  string
	timeout time.Duration
}

// New validates cfg and returns a Sink. A bad subject template (empty,
// unparsable, or rendering an invalid subject for a sample message with and
// without an ordering key) and a Stream that does not exist are errors that
// wrap outbox.ErrValidation and name the field (errors.As with
// *outbox.ValidationError); other errors are the server's (unreachable,
// JetStream disabled). ctx bounds the stream lookup.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Sink, error) {
	if strings.TrimSpace(cfg.Subject) == "" {
		return nil, invalid("subject", "is required (a template such as \"orders.{{.Target}}\")")
	}
	tmpl, err := template.New("subject").Option("missingkey=error").Parse(cfg.Subject)
	if err != nil {
		return nil, invalid("subject", "%v", err)
	}
	if js == nil {
		return nil, invalid("jetstream", "is required")
	}
	s := &Sink{js: js, subject: tmpl, stream: cfg.Stream, timeout: cfg.Timeout}
	for _, sample := range []SubjectData{
		{Lane: "lane", Target: "target", OrderingKey: "key", ID: "1"},
		{Lane: "lane", Target: "target", ID: "1"},
	} {
		if _, err := s.render(sample); err != nil {
			return nil, invalid("subject", "for a message with lane %q, target %q and ordering key %q: %v",
				sample.Lane, sample.Target, sample.OrderingKey, err)
		}
	}
	if cfg.Timeout < 0 {
		return nil, invalid("timeout", "must not be negative, got %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if cfg.Stream != "" {
		if _, err := js.Stream(ctx, cfg.Stream); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrInvalidStreamName) {
				return nil, invalid("stream", "%q: %v", cfg.Stream, err)
			}
			return nil, fmt.Errorf("natssink: looking up stream %q: %w", cfg.Stream, err)
		}
	}
	return s, nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("natssink: config: %w", &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// render executes the subject template and checks the result.
func (s *Sink) render(d SubjectData) (string, error) {
	var b bytes.Buffer
	if err := s.subject.Execute(&b, d); err != nil {
		return "", err
	}
	subj := b.String()
	if err := checkSubject(subj); err != nil {
		return "", fmt.Errorf("subject %q: %w", subj, err)
	}
	return subj, nil
}

// checkSubject applies NATS's rules for a subject one publishes to.
func checkSubject(subj string) error {
	if subj == "" {
		return errors.New("is empty")
	}
	if strings.ContainsFunc(subj, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("contains whitespace or a control character")
	}
	for tok := range strings.SplitSeq(subj, ".") {
		switch tok {
		case "":
			return errors.New("has an empty token")
		case "*", ">":
			return errors.New("has a wildcard token; publish subjects must be literal")
		}
	}
	return nil
}

// Handler returns the relay handler: it publishes the message and returns
// nil once JetStream acknowledged it.
func (s *Sink) Handler() relay.Handler { return s.Publish }

// Publish publishes m and waits for JetStream's PubAck. It returns nil when
// the message is stored, or was already stored under its Nats-Msg-Id within
// the duplicate window. It returns relay.Permanent when no retry can succeed:
// the subject the template renders for m is invalid, the message exceeds the
// server's max_payload, or JetStream rejects it with a 4xx API error (larger
// than the stream's max_msg_size, another stream than Config.Stream, ...).
// Everything else (timeouts, a disconnected client, "no responders") is a
// plain error the relay retries. "No responders" is retried because
// JetStream gives it both when no stream captures the subject and while a
// restarting server has not yet recovered its streams; the message's
// MaxAttempts bounds the first case.
func (s *Sink) Publish(ctx context.Context, m outbox.Message) error {
	subj, err := s.render(SubjectData{Lane: m.Lane, Target: m.Target, OrderingKey: m.OrderingKey, ID: m.ID})
	if err != nil {
		return relay.Permanent(fmt.Errorf("natssink: message %s: %w", m.ID, err))
	}
	msg := &nats.Msg{Subject: subj, Data: m.Payload, Header: make(nats.Header, len(m.Headers)+2)}
	for k, v := range m.Headers {
		msg.Header[k] = []string{v}
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
	if s.stream != "" {
		opts = append(opts, jetstream.WithExpectStream(s.stream))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, msg, opts...); err != nil {
		err = fmt.Errorf("natssink: publish %s to %s: %w", m.ID, subj, err)
		if permanent(err) {
			return relay.Permanent(err)
		}
		return err
	}
	return nil
}

func permanent(err error) bool {
	if errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadHeaderMsg) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		// JetStream's API errors carry HTTP-like codes: a 4xx judges the
		// message itself, and sending it again changes nothing (408 and
		// 429, as in HTTP, are about timing).
		return api.Code >= 400 && api.Code < 500 && api.Code != 408 && api.Code != 429
	}
	return false
}
