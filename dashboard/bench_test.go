package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fillSQL makes the table of the performance target: 1M delivered
// messages (history), 100k pending (a backlog) and 1,000 dead letters over
// four targets, written straight with generate_series so that filling takes
// seconds instead of a million enqueues. $1 and $2 are the first and last
// generated number, for the delivered rows.
const (
	fillDelivered = `
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
SELECT 'canonical', (ARRAY['order_webhook','email','search_index','billing'])[1 + g % 4],
       jsonb_build_object('order_id', g, 'event', 'order.created', 'total_cents', g % 10000),
       'delivered', now() - interval '2 hours', 1, 5, now() - interval '2 hours', now() - interval '1 hour'
FROM generate_series($1::int, $2::int) g`
	fillLive = `
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at)
SELECT 'canonical', (ARRAY['order_webhook','email','search_index','billing'])[1 + g % 4],
       jsonb_build_object('order_id', g), 'pending', now() - interval '10 minutes', 0, 5, now() - interval '10 minutes', now() - interval '10 minutes'
FROM generate_series(1, 100000) g;
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at, last_error)
SELECT 'canonical', 'order_webhook', jsonb_build_object('order_id', g), 'dead_letter', now(), 5, 5, now(), now(),
       (ARRAY['webhook unavailable: 503 Service Unavailable', '400 Bad Request: missing field customer'])[1 + g % 2]
FROM generate_series(1, 1000) g`
)

// BenchmarkDashboard measures the dashboard's requests and its sampler on
// a table of 1M delivered, 100k pending and 1,000 dead messages (see
// BENCHMARKS.md for figures):
//
//	go test -run '^$' -bench Dashboard -benchtime 20x ./dashboard
//
// Requests go straight to the handler (no network). "sample" is one
// sampler pass with nothing new; "sample/5k-new" one after 5,000 messages
// were enqueued and delivered (1,000 msg/s at a 5 s interval);
// "stats-with-delivered" is what counting delivered rows directly would
// cost each sample instead.
func BenchmarkDashboard(b *testing.B) {
	f := newFixture(b)
	ctx := b.Context()
	start := time.Now()
	if _, err := f.db.Pool.Exec(ctx, fillDelivered, 1, 1_000_000); err != nil {
		b.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, fillLive); err != nil {
		b.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, "VACUUM ANALYZE pgoutbox_message"); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled 1.1M rows in %s", time.Since(start).Round(time.Millisecond))
	f.sample()
	next := 1_000_001

	get := func(path string) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				rec := httptest.NewRecorder()
				f.dash.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s: %d\n%s", path, rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		}
	}
	b.Run("overview", get("/"))
	b.Run("overview-live", get("/live"))
	b.Run("api-overview", get("/api/overview"))
	b.Run("metrics", get("/metrics"))
	b.Run("list/all", get("/messages"))
	b.Run("list/pending", get("/messages?status=pending"))
	b.Run("list/pending+target", get("/messages?status=pending&target=email"))
	b.Run("list/claimed", get("/messages?status=claimed"))
	b.Run("list/dead+error", get("/messages?status=dead_letter&error=503"))
	b.Run("list/delivered+target", get("/messages?status=delivered&target=billing"))
	b.Run("list/target", get("/messages?target=billing"))
	b.Run("list/pending-page-50", get("/messages?status=pending&after=1050000"))
	b.Run("dead-letters", get("/dead-letters"))
	b.Run("detail", get("/messages/1050000"))

	b.Run("sample", func(b *testing.B) {
		for b.Loop() {
			f.sample()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
	b.Run("sample/5k-new", func(b *testing.B) {
		var took time.Duration
		for i := 0; i < b.N; i++ {
			if _, err := f.db.Pool.Exec(ctx, fillDelivered, next, next+4999); err != nil {
				b.Fatal(err)
			}
			next += 5000
			t0 := time.Now()
			f.sample()
			took += time.Since(t0)
		}
		b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "ms/op")
	})
	b.Run("stats-with-delivered", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.store.Stats(ctx, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
}

// fillKeyed adds the worst case of the dead-letter page's ordering-key
// lookups next to unkeyed dead letters: 50 dead letters on canonical/ledger,
// each the head of its own key and holding it, with 200 pending messages
// waiting behind each (10,000).
const fillKeyed = `
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at, last_error, ordering_key)
SELECT 'canonical', 'ledger', jsonb_build_object('entry', g), 'dead_letter', now(), 5, 5, now(), now(),
       'ledger rejected: 409 Conflict', 'account-' || g
FROM generate_series(1, 50) g;
INSERT INTO pgoutbox_message (lane, target, payload, status, available_at, attempt_count, max_attempts, created_at, updated_at, ordering_key)
SELECT 'canonical', 'ledger', jsonb_build_object('entry', g), 'pending', now(), 0, 5, now(), now(), 'account-' || (1 + g % 50)
FROM generate_series(1, 10000) g`

// BenchmarkDeadLettersHoldingKeys measures what marking the dead letters
// that hold their ordering key costs a page: a page of 50 dead letters that
// each hold a key with 200 messages waiting (the listing says which hold
// their key; a message's page and the release's confirmation also count up
// to 100 waiting messages) against a page of 50 unkeyed dead letters, in
// the same run:
//
//	go test -run '^$' -bench DeadLettersHoldingKeys -benchtime 50x ./dashboard
func BenchmarkDeadLettersHoldingKeys(b *testing.B) {
	f := newFixture(b)
	ctx := b.Context()
	if _, err := f.db.Pool.Exec(ctx, fillLive); err != nil {
		b.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, fillKeyed); err != nil {
		b.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, "VACUUM ANALYZE pgoutbox_message"); err != nil {
		b.Fatal(err)
	}
	f.sample()
	var held string
	if err := f.db.Pool.QueryRow(ctx, "SELECT min(id)::text FROM pgoutbox_message WHERE target = 'ledger'").Scan(&held); err != nil {
		b.Fatal(err)
	}
	var unkeyed string
	if err := f.db.Pool.QueryRow(ctx, "SELECT min(id)::text FROM pgoutbox_message WHERE status = 'dead_letter'").Scan(&unkeyed); err != nil {
		b.Fatal(err)
	}
	get := func(path, want string) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				rec := httptest.NewRecorder()
				f.dash.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil))
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
					b.Fatalf("GET %s: %d, want %q in\n%s", path, rec.Code, want, rec.Body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		}
	}
	b.Run("dead-letters/50-unkeyed", get("/dead-letters?target=order_webhook", "webhook unavailable"))
	b.Run("dead-letters/50-holding-keys", get("/dead-letters?target=ledger", `<span class="hold"`))
	b.Run("detail/unkeyed-dead-letter", get("/messages/"+unkeyed, `<pre class="error-text">`))
	b.Run("detail/holding-key", get("/messages/"+held, `<b class="waiting">100&#43;</b>`))
	b.Run("release-key-confirm", get("/dead-letters/release-key?lane=canonical&target=ledger&ordering_key=account-1", `<b class="waiting">100&#43;</b>`))
}
