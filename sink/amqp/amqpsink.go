// Package amqpsink is a relay sink that publishes outbox messages to
// RabbitMQ (AMQP 0-9-1) with publisher confirms, and acks them only once the
// broker confirmed them.
//
//	sink, err := amqpsink.New(ctx, amqpsink.Config{
//		URL:        "amqp://app:secret@rabbitmq:5672/orders",
//		Exchange:   "orders",
//		RoutingKey: "order.{{.Target}}",
//	})
//	defer sink.Close()
//	r, err := relay.New(store, relay.Config{Lane: lane, Target: target, Handler: sink.Handler()})
//
// Each message is published persistent (delivery mode 2), mandatory, with
// its id as the message-id property, its headers in the headers table,
// content-type application/json and its creation time as the timestamp. The
// broker confirms a persistent message routed to durable queues once they
// have written it to disk, so an acked message survives a broker restart.
//
// A message no queue is bound to receive is returned by the broker
// (mandatory publishing) before its confirm; the sink treats it as a
// failure, and a plain one, which the relay retries with backoff until the
// message's MaxAttempts: a missing binding is usually a consumer not yet
// deployed, and dead-lettering on the first return would make every
// deployment order matter. Redrive dead letters once the binding exists.
//
// RabbitMQ does not deduplicate: a redelivery by the relay (its ack to the
// store lost, its lease expired) is published again, and consumers
// deduplicate by message-id.
//
// The sink owns its connection and channel: amqp091-go does not reconnect,
// so after the connection or channel closes (a broker restart, a channel
// error) the next publish dials again. Close it when done.
package amqpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"text/template"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// DefaultTimeout bounds each publish, from sending to the broker's confirm,
// and each dial, when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// maxRoutingKey is AMQP 0-9-1's limit on a routing key (a short string).
const maxRoutingKey = 255

// Config configures a Sink. URL is required, and RoutingKey is required
// with the default exchange.
type Config struct {
	// URL is the broker's AMQP URL, amqp:// or amqps://.
	URL string
	// AMQP configures the connection (TLS, heartbeat, SASL, vhost,
	// properties). Default: amqp091-go's defaults. Dial, when nil, is a
	// dialer bounded by Timeout.
	AMQP *amqp.Config
	// Exchange receives the messages. It must exist when New runs. ""
	// is the default exchange, which routes to the queue named by the
	// routing key.
	Exchange string
	// RoutingKey is a text/template over RoutingData, such as
	// "order.{{.Target}}" or "{{.Lane}}.{{.OrderingKey}}". At most 255
	// bytes once rendered.
	RoutingKey string
	// Timeout bounds each publish and each dial. Default DefaultTimeout.
	Timeout time.Duration
}

// RoutingData is what Config.RoutingKey renders.
type RoutingData struct {
	Lane, Target string
	// OrderingKey is "" for unordered messages.
	OrderingKey string
	// ID is the message id.
	ID string
}

// Sink publishes messages to one exchange. It is safe for concurrent use: a
// relay of concurrency N keeps up to N publishes waiting for their confirm,
// all on one channel.
type Sink struct {
	url      string
	cfg      amqp.Config
	exchange string
	key      *template.Template
	timeout  time.Duration

	mu     sync.Mutex
	cur    *session
	closed bool
}

// ErrReturned is wrapped by the error of a message the broker returned as
// unroutable.
var ErrReturned = errors.New("amqpsink: message returned unroutable")

// ErrNacked is wrapped by the error of a message the broker nacked (an
// internal error in the broker; retried).
var ErrNacked = errors.New("amqpsink: broker nacked the message")

// ErrClosed is returned by a Sink after Close.
var ErrClosed = errors.New("amqpsink: sink closed")

// New validates cfg, connects and checks that the exchange exists. An
// empty or invalid URL, an unparsable routing-key template, a missing
// routing key with the default exchange and an exchange the broker does not
// have are errors that wrap outbox.ErrValidation and name the field
// (errors.As with *outbox.ValidationError); an unreachable broker is a plain
// error. ctx bounds the set-up.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if cfg.URL == "" {
		return nil, invalid("url", "is required")
	}
	if _, err := amqp.ParseURI(cfg.URL); err != nil {
		return nil, invalid("url", "%v", err)
	}
	if cfg.Exchange == "" && strings.TrimSpace(cfg.RoutingKey) == "" {
		return nil, invalid("routing_key", "is required with the default exchange (it names the queue)")
	}
	tmpl, err := template.New("routing_key").Parse(cfg.RoutingKey)
	if err != nil {
		return nil, invalid("routing_key", "%v", err)
	}
	if cfg.Timeout < 0 {
		return nil, invalid("timeout", "must not be negative, got %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	s := &Sink{url: cfg.URL, exchange: cfg.Exchange, key: tmpl, timeout: cfg.Timeout}
	if cfg.AMQP != nil {
		s.cfg = *cfg.AMQP
	}
	if s.cfg.Dial == nil {
		s.cfg.Dial = amqp.DefaultDial(cfg.Timeout)
	}
	if _, err := s.routingKey(RoutingData{Lane: "lane", Target: "target", OrderingKey: "key", ID: "1"}); err != nil {
		return nil, invalid("routing_key", "%v", err)
	}
	sess, err := s.session(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Exchange != "" {
		// A passive declare fails with 404 when the exchange is missing;
		// the failure closes the channel, so it runs on one of its own.
		ch, err := sess.conn.Channel()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("amqpsink: opening a channel: %w", err)
		}
		err = ch.ExchangeDeclarePassive(cfg.Exchange, "", false, false, false, false, nil)
		var aerr *amqp.Error
		switch {
		case errors.As(err, &aerr) && aerr.Code == amqp.NotFound:
			s.Close()
			return nil, invalid("exchange", "%q does not exist: %v", cfg.Exchange, err)
		case err != nil:
			s.Close()
			return nil, fmt.Errorf("amqpsink: checking exchange %q: %w", cfg.Exchange, err)
		}
		_ = ch.Close()
	}
	return s, nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("amqpsink: config: %w", &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (s *Sink) routingKey(d RoutingData) (string, error) {
	var b bytes.Buffer
	if err := s.key.Execute(&b, d); err != nil {
		return "", err
	}
	if b.Len() > maxRoutingKey {
		return "", fmt.Errorf("routing key of %d bytes; AMQP allows %d", b.Len(), maxRoutingKey)
	}
	if s.exchange == "" && b.Len() == 0 {
		return "", errors.New("empty routing key with the default exchange")
	}
	return b.String(), nil
}

// Close closes the channel and the connection. Publishes after Close fail
// with ErrClosed.
func (s *Sink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
}

// Handler returns the relay handler: it publishes the message and returns
// nil once the broker confirmed it.
func (s *Sink) Handler() relay.Handler { return s.Publish }

// Publish publishes m and waits for the broker's confirm. It returns nil on
// an ack; an error wrapping ErrReturned when the broker returned the message
// as unroutable, ErrNacked on a nack, and plain errors for a closed
// connection or channel, a failed dial or a timeout: all retried by the
// relay. A routing key the template cannot render for m (too long, empty
// with the default exchange) is relay.Permanent.
func (s *Sink) Publish(ctx context.Context, m outbox.Message) error {
	key, err := s.routingKey(RoutingData{Lane: m.Lane, Target: m.Target, OrderingKey: m.OrderingKey, ID: m.ID})
	if err != nil {
		return relay.Permanent(fmt.Errorf("amqpsink: message %s: %w", m.ID, err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	headers := make(amqp.Table, len(m.Headers))
	for k, v := range m.Headers {
		headers[k] = v
	}
	sess.expect(m.ID)
	defer sess.forget(m.ID)
	dc, err := sess.ch.PublishWithDeferredConfirmWithContext(ctx, s.exchange, key, true, false, amqp.Publishing{
		Headers:      headers,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    m.CreatedAt,
		Body:         m.Payload,
	})
	if err != nil {
		s.drop(sess)
		return fmt.Errorf("amqpsink: publish %s: %w", m.ID, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("amqpsink: waiting for the confirm of %s: %w", m.ID, err)
	}
	if !acked {
		if sess.isClosed() {
			s.drop(sess)
			return fmt.Errorf("amqpsink: publish %s: channel closed before the confirm: %w", m.ID, sess.closeErr())
		}
		return fmt.Errorf("%w: %s", ErrNacked, m.ID)
	}
	if ret, ok := sess.returned(m.ID); ok {
		return fmt.Errorf("%w: %s to exchange %q with routing key %q: %d %s", ErrReturned, m.ID, ret.Exchange, ret.RoutingKey, ret.ReplyCode, ret.ReplyText)
	}
	return nil
}

// session returns the open session, dialing a new one if there is none or
// the last one closed.
func (s *Sink) session(ctx context.Context) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cur != nil && !s.cur.isClosed() {
		return s.cur, nil
	}
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := amqp.DialConfig(s.url, s.cfg)
	if err != nil {
		return nil, fmt.Errorf("amqpsink: dial: %w", err)
	}
	sess, err := newSession(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	s.cur = sess
	return sess, nil
}

// drop forgets sess so the next publish opens a new one.
func (s *Sink) drop(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == sess {
		s.cur.close()
		s.cur = nil
	}
}

// session is a connection and its one confirm-mode channel, with the
// messages the broker returned on it.
type session struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	// barrier lets a publisher wait until the return listener has stored
	// every return it received: see returned.
	barrier chan chan struct{}
	done    chan struct{} // closed when the channel or connection closes
	mu      sync.Mutex
	err     error
	pending map[string]int // ids being published, for returns to match
	back    map[string]amqp.Return
}

func newSession(conn *amqp.Connection) (*session, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqpsink: opening a channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("amqpsink: confirm mode: %w", err)
	}
	sess := &session{
		conn: conn, ch: ch,
		barrier: make(chan chan struct{}),
		done:    make(chan struct{}),
		pending: map[string]int{},
		back:    map[string]amqp.Return{},
	}
	// Unbuffered: amqp091-go hands a return to this listener before it
	// reads the confirm that follows it, so once a publisher has its
	// confirm, the return (if any) is already in the listener's hands.
	returns := ch.NotifyReturn(make(chan amqp.Return))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go sess.listen(returns, chClosed, connClosed)
	return sess, nil
}

func (s *session) listen(returns <-chan amqp.Return, chClosed, connClosed <-chan *amqp.Error) {
	for returns != nil || chClosed != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil // closed with the channel
				continue
			}
			s.mu.Lock()
			if s.pending[r.MessageId] > 0 {
				s.back[r.MessageId] = r
			}
			s.mu.Unlock()
		case reply := <-s.barrier:
			close(reply)
		case e, ok := <-chClosed:
			chClosed = nil
			s.markClosed(closeReason("channel", e, ok))
		case e, ok := <-connClosed:
			connClosed = nil
			s.markClosed(closeReason("connection", e, ok))
		}
	}
}

func closeReason(what string, e *amqp.Error, ok bool) error {
	if ok && e != nil {
		return fmt.Errorf("%s closed: %w", what, e)
	}
	return fmt.Errorf("%s closed", what)
}

func (s *session) markClosed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

func (s *session) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *session) closeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *session) expect(id string) {
	s.mu.Lock()
	s.pending[id]++
	s.mu.Unlock()
}

func (s *session) forget(id string) {
	s.mu.Lock()
	if s.pending[id]--; s.pending[id] <= 0 {
		delete(s.pending, id)
		delete(s.back, id)
	}
	s.mu.Unlock()
}

// returned reports whether the broker returned the message with this id.
// Called after its confirm: the barrier makes sure the listener stored any
// return it had received.
func (s *session) returned(id string) (amqp.Return, bool) {
	reply := make(chan struct{})
	select {
	case s.barrier <- reply:
		<-reply
	case <-s.done:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.back[id]
	return r, ok
}

func (s *session) close() {
	_ = s.ch.Close()
	_ = s.conn.Close()
}
