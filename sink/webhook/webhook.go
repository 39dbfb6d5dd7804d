// Package webhook is a relay sink that POSTs each outbox message to an HTTP
// endpoint, signed as the Standard Webhooks specification describes
// (https://www.standardwebhooks.com, version 1.0.0), and acks it only on a
// 2xx response.
//
//	sink, err := webhook.New(webhook.Config{
//		URL:     "https://hooks.example.com/orders",
//		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
//	})
//	r, err := relay.New(store, relay.Config{Lane: lane, Target: target, Handler: sink.Handler()})
//
// Each request carries the message's payload as its body
// (Content-Type: application/json) and the specification's headers:
// webhook-id (the outbox message id, the same on every attempt, so receivers
// can deduplicate), webhook-timestamp (this attempt's Unix time in seconds)
// and webhook-signature ("v1," and the base64 HMAC-SHA256 of
// "{id}.{timestamp}.{body}" under each secret, space-separated). The
// message's own headers (trace context among them) are sent too.
//
// What a response does:
//
//   - 2xx: the handler returns nil and the relay acks the message;
//   - 408, 429 and 5xx: an error, retried by the relay; a Retry-After header
//     (seconds or an HTTP date) is honoured through relay.RetryAfter: the
//     next attempt comes no sooner than it says (nor sooner than the
//     relay's backoff);
//   - any other 4xx (400, 401, 404, 410 Gone, ...): relay.Permanent, so the
//     message is dead-lettered at once (redrive it once the endpoint is
//     fixed);
//   - 1xx and 3xx: an error, retried. Redirects are not followed: the
//     specification calls them failures, and a POST that follows a 301 or
//     302 turns into a GET.
//
// Transport errors and timeouts (Config.Timeout per request) are retried.
//
// This package needs only the standard library, which is why it lives in
// pgoutbox's core module while the broker sinks have modules of their own.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret, as the specification serializes them.
const SecretPrefix = "whsec_"

// Limits from the specification: a secret is 24 to 64 random bytes (192 to
// 512 bits).
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// DefaultTimeout bounds each request when Config.Timeout is zero. The
// specification recommends 15 to 30 seconds.
const DefaultTimeout = 15 * time.Second

// maxErrorBody caps how much of a failed response's body goes into the
// error (and so into the message's last error).
const maxErrorBody = 512

// Config configures a Sink. URL and Secrets are required.
type Config struct {
	// URL is the endpoint every message is POSTed to: absolute, http or
	// https.
	URL string
	// Secrets sign each request, the first being the current one. During a
	// rotation list the new secret and the old one: every request then
	// carries a signature under each, and receivers accept either. Each is
	// "whsec_" and the base64 (standard alphabet) of 24 to 64 bytes.
	Secrets []string
	// Timeout bounds each request, from connecting to reading the
	// response's status and headers. Default DefaultTimeout.
	Timeout time.Duration
	// Client sends the requests. Default: a client of its own on
	// http.DefaultTransport. The sink uses a copy that does not follow
	// redirects; Client itself is not changed.
	Client *http.Client
	// Header is sent with every request, after the message's own headers
	// and before the webhook-* headers, which always win. Use it for an
	// API key or a User-Agent.
	Header http.Header
	// Now is the clock for webhook-timestamp. Default time.Now.
	Now func() time.Time
}

// Sink POSTs messages to one endpoint. It is safe for concurrent use: a relay
// of concurrency N keeps up to N requests in flight.
type Sink struct {
	url     string
	keys    [][]byte
	timeout time.Duration
	client  *http.Client
	header  http.Header
	now     func() time.Time
}

// New validates cfg and returns a Sink. Errors wrap outbox.ErrValidation and
// name the field (errors.As with *outbox.ValidationError).
func New(cfg Config) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		return nil, invalid("url", "is required")
	case err != nil:
		return nil, invalid("url", "does not parse: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, invalid("url", "must be http or https, got %q", u.Scheme)
	case u.Host == "":
		return nil, invalid("url", "has no host")
	}
	if len(cfg.Secrets) == 0 {
		return nil, invalid("secrets", "at least one secret is required")
	}
	keys := make([][]byte, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		if keys[i], err = DecodeSecret(s); err != nil {
			return nil, invalid(fmt.Sprintf("secrets[%d]", i), "%v", err)
		}
	}
	if cfg.Timeout < 0 {
		return nil, invalid("timeout", "must not be negative, got %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	client := &http.Client{}
	if cfg.Client != nil {
		c := *cfg.Client
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sink{url: cfg.URL, keys: keys, timeout: cfg.Timeout, client: client, header: cfg.Header.Clone(), now: cfg.Now}, nil
}

// DecodeSecret returns the key bytes of a "whsec_"-prefixed secret.
func DecodeSecret(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("must start with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("is not base64 after %q: %w", SecretPrefix, err)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("must hold %d to %d bytes, got %d", MinSecretBytes, MaxSecretBytes, len(key))
	}
	return key, nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("webhook: config: %w", &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Handler returns the relay handler: it POSTs the message and returns nil on
// a 2xx response.
func (s *Sink) Handler() relay.Handler { return s.Deliver }

// Sign returns the webhook-signature header value for one attempt: a
// "v1,<base64 HMAC-SHA256>" signature of "{id}.{timestamp}.{body}" per
// secret, space-separated.
func (s *Sink) Sign(id string, timestamp int64, body []byte) string {
	var b strings.Builder
	for i, key := range s.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write(strconv.AppendInt(nil, timestamp, 10))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return b.String()
}

// StatusError is a non-2xx response.
type StatusError struct {
	StatusCode int
	// Body is the start of the response body, for the message's last
	// error.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Deliver POSTs m and reports the outcome as a relay handler does: nil on
// 2xx, relay.Permanent for a 4xx other than 408 and 429, relay.RetryAfter
// when a retryable response carried Retry-After, and a plain error
// otherwise.
func (s *Sink) Deliver(ctx context.Context, m outbox.Message) error {
	// The id is signed between full stops; one inside it would let a
	// signature be reinterpreted (the specification forbids it).
	if strings.Contains(m.ID, ".") {
		return relay.Permanent(fmt.Errorf("webhook: message id %q contains a full stop", m.ID))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	body := []byte(m.Payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: request: %w", err)
	}
	for k, v := range m.Headers {
		req.Header.Set(k, v)
	}
	for k, vs := range s.header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	ts := s.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, m.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, s.Sign(m.ID, ts, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: post %s: %w", m.ID, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain a little so the connection can be reused; a receiver that
		// answers 2xx has done its part whatever follows.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	serr := &StatusError{StatusCode: resp.StatusCode, Body: strings.ToValidUTF8(strings.TrimSpace(string(head)), "?")}
	code := resp.StatusCode
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
			return relay.RetryAfter(serr, d)
		}
		return serr
	case code >= 400 && code < 500:
		return relay.Permanent(serr)
	}
	return serr
}

// retryAfter parses a Retry-After value (RFC 9110, section 10.2.3): a number
// of seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(outbox.MaxRetryDelay/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
