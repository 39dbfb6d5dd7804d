package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

const (
	testToken = "s3cret-token-0123456789"
	testUser  = "ada"
	errDown   = "webhook unavailable: 503 Service Unavailable"
	errBad    = "400 Bad Request: missing field customer"
	xssError  = `<img src=x onerror="alert(2)">`
)

// xssPayload is a payload an attacker controls; every page must show it as text.
const xssPayload = `{"note":"</script><script>alert(1)</script>","html":"<b onmouseover=alert(3)>x</b>"}`

// syncBuffer collects the dashboard's log lines (JSON) from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log records whose msg is msg.
func (b *syncBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// fixture is a dashboard over a fresh database, served by httptest.
type fixture struct {
	t     testing.TB
	ctx   context.Context
	db    *pgtest.DB
	store *outbox.PostgresStore
	dash  *Dashboard
	srv   *httptest.Server
	logs  *syncBuffer
}

type option func(*Config)

func withWrites(c *Config) {
	c.EnableWrites = true
	c.Tokens = map[string]string{testUser: testToken}
}

func newFixture(t testing.TB, opts ...option) *fixture {
	t.Helper()
	d := pgtest.NewDB(t)
	f := &fixture{t: t, ctx: context.Background(), db: d, store: outbox.NewPostgresStore(d.Pool), logs: &syncBuffer{}}
	cfg := Config{DB: d.Pool, Logger: slog.New(slog.NewJSONHandler(f.logs, nil)), SampleInterval: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	dash, err := New(f.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.dash = dash
	f.srv = httptest.NewServer(dash)
	t.Cleanup(func() {
		f.srv.Close()
		if err := dash.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func (f *fixture) enqueue(s *outbox.PostgresStore, lane, target string, n int, payload string) []string {
	f.t.Helper()
	drafts := make([]outbox.Draft, n)
	for i := range drafts {
		drafts[i] = outbox.Draft{Lane: lane, Target: target, Payload: json.RawMessage(payload)}
	}
	res, err := s.EnqueueMany(f.ctx, drafts)
	if err != nil {
		f.t.Fatal(err)
	}
	ids := make([]string, n)
	for i, r := range res {
		ids[i] = r.Message.ID
	}
	return ids
}

func (f *fixture) claim(s *outbox.PostgresStore, lane, target string, n int, lease time.Duration) []outbox.Message {
	f.t.Helper()
	msgs, err := s.Claim(f.ctx, outbox.ClaimRequest{Lane: lane, Target: target, Limit: n, Lease: lease, ConsumerID: "relay-7"})
	if err != nil || len(msgs) != n {
		f.t.Fatalf("claimed %d of %d: %v", len(msgs), n, err)
	}
	return msgs
}

func (f *fixture) deliver(s *outbox.PostgresStore, lane, target string, n int) {
	f.t.Helper()
	var rc []outbox.Receipt
	for _, m := range f.claim(s, lane, target, n, time.Minute) {
		rc = append(rc, m.Receipt())
	}
	if _, err := s.AckMany(f.ctx, rc); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) kill(s *outbox.PostgresStore, lane, target string, n int, reason string) []string {
	f.t.Helper()
	var ids []string
	for _, m := range f.claim(s, lane, target, n, time.Minute) {
		if ok, err := s.DeadLetter(f.ctx, m.ID, m.ClaimToken, reason); err != nil || !ok {
			f.t.Fatalf("dead letter %s: %v %v", m.ID, ok, err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

// seeded names what seed made.
type seeded struct {
	down, bad []string // dead letters of order_webhook by error
	xss       string   // the dead letter with a hostile payload and error
	tenant    *outbox.PostgresStore
}

// seed fills the outbox with a bit of everything: deliveries, pending and
// delayed messages, expired leases, dead letters with two errors, a hostile
// payload, and a second scope.
func (f *fixture) seed() seeded {
	f.t.Helper()
	var s seeded
	st := f.store
	f.enqueue(st, "canonical", "order_webhook", 41, `{"order_id":1042,"event":"order.created","total_cents":4200}`)
	f.deliver(st, "canonical", "order_webhook", 25)
	s.down = f.kill(st, "canonical", "order_webhook", 4, errDown)
	s.bad = f.kill(st, "canonical", "order_webhook", 2, errBad)
	f.enqueue(st, "canonical", "email", 12, `{"to":"ada@example.com","template":"receipt"}`)
	f.deliver(st, "canonical", "email", 6)
	f.claim(st, "canonical", "email", 2, time.Millisecond) // their leases expire at once
	if _, err := st.Enqueue(f.ctx, outbox.Draft{Lane: "canonical", Target: "email", Payload: json.RawMessage(`{"later":true}`),
		AvailableAt: time.Now().Add(time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	f.enqueue(st, outbox.LaneProtocolReplay, outbox.TargetProtocolProjector, 1, xssPayload)
	s.xss = f.kill(st, outbox.LaneProtocolReplay, outbox.TargetProtocolProjector, 1, xssError)[0]
	f.enqueue(st, outbox.LaneProtocolReplay, outbox.TargetProtocolProjector, 8, `{"replay":7}`)
	tenant, err := st.Scoped("tenant-42")
	if err != nil {
		f.t.Fatal(err)
	}
	s.tenant = tenant
	f.enqueue(tenant, "canonical", "a2a_webhook", 4, `{"tenant":42}`)
	f.kill(tenant, "canonical", "a2a_webhook", 1, "agent refused: 410 Gone")
	return s
}

// sample takes a sample now, failing the test on error.
func (f *fixture) sample() {
	f.t.Helper()
	if err := f.dash.Sample(f.ctx); err != nil {
		f.t.Fatal(err)
	}
}

type request struct {
	header http.Header
	form   url.Values
}

func (f *fixture) do(method, path string, req request) (*http.Response, string) {
	f.t.Helper()
	var body io.Reader
	if req.form != nil {
		body = strings.NewReader(req.form.Encode())
	}
	r, err := http.NewRequestWithContext(f.ctx, method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if req.form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range req.header {
		r.Header[k] = v
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(r)
	if err != nil {
		f.t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return res, string(b)
}

func (f *fixture) get(path string) (*http.Response, string) {
	f.t.Helper()
	return f.do(http.MethodGet, path, request{})
}

// bearer is the header of an authenticated script.
func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

func (f *fixture) status(id string) outbox.Status {
	f.t.Helper()
	m, err := f.store.Get(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return m.Status
}

func (f *fixture) countStatus(st *outbox.PostgresStore, status outbox.Status) int {
	f.t.Helper()
	n, after := 0, ""
	for {
		l, err := st.List(f.ctx, outbox.ListFilter{Status: status, Limit: outbox.MaxListLimit, AfterID: after})
		if err != nil {
			f.t.Fatal(err)
		}
		n += len(l)
		if len(l) < outbox.MaxListLimit {
			return n
		}
		after = l[len(l)-1].ID
	}
}

func testContext(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx, cancel
}

// The keyed messages seedKeyed makes.
const (
	keyHeld     = "account-42"                   // its head is a dead letter that holds the key; 3 wait behind it
	keyReleased = "account-9"                    // its head died and the key was released; 1 pending
	keyHostile  = `<img src=x onerror=alert(6)>` // a key an attacker chose, on target "audit"
	errConflict = "ledger rejected: 409 Conflict"
	// A header an attacker chose, name and value.
	hostileHeaderName  = `<svg onload=alert(7)>`
	hostileHeaderValue = `"><script>alert(8)</script>`
)

// keyed names what seedKeyed made.
type keyed struct {
	held, released, hostile []string // ids of each key, in order; the first of each is a dead letter
}

// seedKeyed adds ordered messages with headers on canonical/ledger (keys
// keyHeld and keyReleased) and canonical/audit (keyHostile): the head of
// each key is dead-lettered, and keyReleased is released, so keyHeld's and
// keyHostile's dead letters hold their keys and keyReleased's does not.
func (f *fixture) seedKeyed() keyed {
	f.t.Helper()
	var k keyed
	st := f.store
	headers := func(i int) map[string]string {
		return map[string]string{
			"traceparent":     fmt.Sprintf("00-4bf92f3577b34da6a3ce929d0e0e47%02d-00f067aa0ba902b7-01", i),
			"content-type":    "application/json",
			"idempotency-key": fmt.Sprintf("ledger-entry-%d", 7100+i),
		}
	}
	enqueue := func(target, key string, n int, h func(int) map[string]string) []string {
		var ids []string
		for i := range n {
			res, err := st.Enqueue(f.ctx, outbox.Draft{Lane: "canonical", Target: target, OrderingKey: key, Headers: h(i),
				Payload: json.RawMessage(fmt.Sprintf(`{"account":%q,"entry":%d,"amount_cents":%d}`, key, 7100+i, 1500*(i+1)))})
			if err != nil {
				f.t.Fatal(err)
			}
			ids = append(ids, res.Message.ID)
		}
		return ids
	}
	k.held = enqueue("ledger", keyHeld, 4, headers)
	k.released = enqueue("ledger", keyReleased, 2, headers)
	k.hostile = enqueue("audit", keyHostile, 2, func(int) map[string]string {
		return map[string]string{hostileHeaderName: hostileHeaderValue, "content-type": "application/json"}
	})
	// One claim per target hands out each key's head only.
	for target, heads := range map[string][]string{"ledger": {k.held[0], k.released[0]}, "audit": {k.hostile[0]}} {
		got := f.claim(st, "canonical", target, len(heads), time.Minute)
		reason := errConflict
		if target == "audit" {
			reason = "audit log refused: 422 Unprocessable Entity"
		}
		for _, m := range got {
			if !slices.Contains(heads, m.ID) {
				f.t.Fatalf("claim on %s handed out %s, not a key's head %v", target, m.ID, heads)
			}
			if ok, err := st.DeadLetter(f.ctx, m.ID, m.ClaimToken, reason); err != nil || !ok {
				f.t.Fatalf("dead letter %s: %v %v", m.ID, ok, err)
			}
		}
	}
	if n, err := st.ReleaseOrderingKey(f.ctx, "canonical", "ledger", keyReleased); err != nil || n != 1 {
		f.t.Fatalf("release %s: %d %v", keyReleased, n, err)
	}
	return k
}

// released reads whether a keyed dead letter was released (the store's
// Message does not say).
func (f *fixture) released(id string) bool {
	f.t.Helper()
	var released bool
	if err := f.db.Pool.QueryRow(f.ctx, "SELECT ordering_key_released FROM pgoutbox_message WHERE id = $1::bigint", id).Scan(&released); err != nil {
		f.t.Fatal(err)
	}
	return released
}
