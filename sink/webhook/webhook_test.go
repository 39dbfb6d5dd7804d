package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
	"github.com/pgoutbox/pgoutbox/sink/webhook"
)

// receiver verifies requests as the Standard Webhooks specification tells a
// consumer to (version 1.0.0, "Verifying signatures"), with code of its own:
// it shares nothing with the sink's signer. It accepts a request when any
// v1 signature in webhook-signature matches under its secret, compared in
// constant time, and the timestamp is within five minutes of its clock.
type receiver struct {
	key []byte
	now func() time.Time

	mu       sync.Mutex
	bodies   map[string][]byte // by webhook-id: what was accepted
	requests int
	rejected []string
	headers  []http.Header
	// respond, when set, answers a verified request instead of 204.
	respond func(w http.ResponseWriter, n int) bool
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	// "whsec_" followed by the base64 of the key (the spec's "secret
	// serialization").
	enc, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		t.Fatalf("secret %q lacks whsec_", secret)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return &receiver{key: key, now: time.Now, bodies: map[string][]byte{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	rc.headers = append(rc.headers, r.Header.Clone())
	if why := rc.verify(r, body); why != "" {
		rc.rejected = append(rc.rejected, why)
		http.Error(w, why, http.StatusUnauthorized)
		return
	}
	if rc.respond != nil && rc.respond(w, rc.requests) {
		return
	}
	// The id is the idempotency key: a repeat is acknowledged, not applied
	// twice.
	id := r.Header.Get("webhook-id")
	if _, dup := rc.bodies[id]; !dup {
		rc.bodies[id] = body
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) verify(r *http.Request, body []byte) string {
	if r.Method != http.MethodPost {
		return "method " + r.Method
	}
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return "missing webhook headers"
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "timestamp not an integer"
	}
	if d := rc.now().Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return "timestamp outside tolerance"
	}
	mac := hmac.New(sha256.New, rc.key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := mac.Sum(nil)
	for _, sig := range strings.Split(sigs, " ") {
		version, value, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(got, want) {
			return ""
		}
	}
	return "no valid signature"
}

func secret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func message(id, payload string) outbox.Message {
	return outbox.Message{ID: id, Lane: "l", Target: "t", Payload: json.RawMessage(payload), AttemptCount: 1}
}

func TestDeliverSignsAsTheSpecSays(t *testing.T) {
	current, old := secret(t), secret(t)
	for _, tc := range []struct {
		name        string
		receiverKey string
	}{{"current secret", current}, {"old secret during rotation", old}} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.receiverKey)
			srv := httptest.NewServer(rc)
			defer srv.Close()
			sink, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{current, old}})
			if err != nil {
				t.Fatal(err)
			}
			m := message("42", `{"order_id": 7, "note": "ü.€"}`)
			m.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=b"}
			if err := sink.Deliver(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if len(rc.rejected) > 0 {
				t.Fatalf("receiver rejected: %v", rc.rejected)
			}
			if got := string(rc.bodies["42"]); got != string(m.Payload) {
				t.Errorf("body %q, want the payload %q byte for byte", got, m.Payload)
			}
			h := rc.headers[0]
			if h.Get("traceparent") != m.Headers["traceparent"] || h.Get("tracestate") != "a=b" {
				t.Errorf("message headers not copied: %v", h)
			}
			if h.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", h.Get("Content-Type"))
			}
			if n := len(strings.Fields(h.Get("webhook-signature"))); n != 2 {
				t.Errorf("%d signatures, want one per secret", n)
			}
		})
	}
}

// A receiver rejects a tampered body, a wrong secret and a stale timestamp:
// the verifier above can fail, so its acceptance means something.
func TestReceiverRejectsWhatTheSpecRejects(t *testing.T) {
	s := secret(t)
	rc := newReceiver(t, s)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	wrong, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{secret(t)}})
	if err != nil {
		t.Fatal(err)
	}
	stale, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{s}, Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []*webhook.Sink{wrong, stale} {
		if err := sink.Deliver(t.Context(), message("1", `{}`)); !relay.IsPermanent(err) {
			t.Errorf("rejected delivery: %v, want a permanent 401", err)
		}
	}
	good, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{s}})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Unix()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader(`{"x":2}`))
	req.Header.Set("webhook-id", "1")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", good.Sign("1", ts, []byte(`{"x":1}`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if resp.StatusCode != http.StatusUnauthorized || len(rc.rejected) != 3 {
		t.Errorf("tampered body: status %d, rejections %v", resp.StatusCode, rc.rejected)
	}
}

func TestResponseStatuses(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		status     int
		retryAfter string
		want       string // ok, retry, permanent
		delay      time.Duration
	}{
		{200, "", "ok", 0},
		{204, "", "ok", 0},
		{299, "", "ok", 0},
		{408, "", "retry", 0},
		{429, "7", "retry", 7 * time.Second},
		{503, now.Add(90 * time.Second).Format(http.TimeFormat), "retry", 90 * time.Second},
		{503, "soon", "retry", 0},
		{500, "", "retry", 0},
		{502, "", "retry", 0},
		{400, "", "permanent", 0},
		{401, "", "permanent", 0},
		{404, "", "permanent", 0},
		{410, "", "permanent", 0},
		{422, "5", "permanent", 0},
		{301, "", "retry", 0},
		{302, "", "retry", 0},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.retryAfter), func(t *testing.T) {
			var followed atomic.Bool
			mux := http.NewServeMux()
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, _ *http.Request) { followed.Store(true); w.WriteHeader(http.StatusOK) })
			mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				if tc.status >= 300 && tc.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, "reason from the receiver")
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			sink, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{secret(t)}, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			err = sink.Deliver(t.Context(), message("9", `{}`))
			d, hasDelay := relay.RetryDelay(err)
			switch tc.want {
			case "ok":
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			case "retry":
				if err == nil || relay.IsPermanent(err) {
					t.Fatalf("got %v, want a retryable error", err)
				}
			case "permanent":
				if !relay.IsPermanent(err) {
					t.Fatalf("got %v, want relay.Permanent", err)
				}
			}
			if hasDelay != (tc.delay > 0) || d != tc.delay {
				t.Errorf("retry delay %s (%v), want %s", d, hasDelay, tc.delay)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status || !strings.Contains(err.Error(), "reason from the receiver") {
				t.Errorf("error %v does not carry the status and the body", err)
			}
			if followed.Load() {
				t.Error("the redirect was followed")
			}
		})
	}
}

func TestTimeoutPerRequest(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	sink, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{secret(t)}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = sink.Deliver(t.Context(), message("1", `{}`))
	if !errors.Is(err, context.DeadlineExceeded) || relay.IsPermanent(err) {
		t.Fatalf("got %v, want a retryable deadline error", err)
	}
	// Generous: the point is that it returns at all, long before the
	// test's own deadline.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s", took)
	}
	// The relay's context (cancelled when it loses the claim) ends a
	// request too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sink.Deliver(ctx, message("2", `{}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := secret(t)
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("too short"))
	for _, tc := range []struct {
		cfg   webhook.Config
		field string
	}{
		{webhook.Config{Secrets: []string{good}}, "url"},
		{webhook.Config{URL: "ftp://x", Secrets: []string{good}}, "url"},
		{webhook.Config{URL: "http://", Secrets: []string{good}}, "url"},
		{webhook.Config{URL: "http://x\x7f", Secrets: []string{good}}, "url"},
		{webhook.Config{URL: "https://x"}, "secrets"},
		{webhook.Config{URL: "https://x", Secrets: []string{""}}, "secrets[0]"},
		{webhook.Config{URL: "https://x", Secrets: []string{good, strings.TrimPrefix(good, "whsec_")}}, "secrets[1]"},
		{webhook.Config{URL: "https://x", Secrets: []string{"whsec_!!!"}}, "secrets[0]"},
		{webhook.Config{URL: "https://x", Secrets: []string{short}}, "secrets[0]"},
		{webhook.Config{URL: "https://x", Secrets: []string{good}, Timeout: -time.Second}, "timeout"},
	} {
		_, err := webhook.New(tc.cfg)
		var ve *outbox.ValidationError
		if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: got %v, want a validation error on %s", tc.cfg, err, tc.field)
		}
	}
}

func TestMessageIDWithFullStopIsPermanent(t *testing.T) {
	sink, err := webhook.New(webhook.Config{URL: "http://127.0.0.1:1", Secrets: []string{secret(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(t.Context(), message("1.2", `{}`)); !relay.IsPermanent(err) {
		t.Errorf("got %v", err)
	}
}

// End to end on the in-memory store: a relay delivers every message through
// the sink; the receiver throttles with 429 and Retry-After for a while and
// answers 400 to one poison message. Every good message arrives, verified,
// once per id; the poison one is dead-lettered after one attempt.
func TestRelayDeliversThroughTheSink(t *testing.T) {
	s := secret(t)
	rc := newReceiver(t, s)
	rc.respond = func(w http.ResponseWriter, n int) bool {
		if n <= 5 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}
	poison := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "poison") {
			http.Error(w, "cannot parse", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		rc.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(poison)
	defer srv.Close()
	sink, err := webhook.New(webhook.Config{URL: srv.URL, Secrets: []string{s}})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	r, err := relay.New(store, relay.Config{
		Lane: "l", Target: "t", Handler: sink.Handler(), Concurrency: 8, Wakeups: store,
		PollInterval: 20 * time.Millisecond,
		Backoff:      func(int) time.Duration { return 0 }, // the Retry-After the receiver sends is the delay
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	ids := map[string]string{}
	for i := range n {
		res, err := store.Enqueue(t.Context(), outbox.Draft{Lane: "l", Target: "t", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		ids[res.Message.ID] = string(res.Message.Payload)
	}
	bad, err := store.Enqueue(t.Context(), outbox.Draft{Lane: "l", Target: "t", Payload: json.RawMessage(`"poison"`)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		delivered, err := store.List(t.Context(), outbox.ListFilter{Status: outbox.StatusDelivered, Limit: outbox.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(delivered) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered after 60 s", len(delivered), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.rejected) > 0 {
		t.Errorf("signatures rejected: %v", rc.rejected)
	}
	for id, payload := range ids {
		if got, ok := rc.bodies[id]; !ok || string(got) != payload {
			t.Errorf("message %s: receiver has %q, want %q", id, got, payload)
		}
	}
	m, err := store.Get(t.Context(), bad.Message.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != outbox.StatusDeadLetter || m.AttemptCount != 1 || !strings.Contains(m.LastError, "400") {
		t.Errorf("poison message: %s after %d attempts, last error %q", m.Status, m.AttemptCount, m.LastError)
	}
}
