package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

func TestEveryPageRenders(t *testing.T) {
	f := newFixture(t)
	s := f.seed()
	f.sample()
	pages := map[string][]string{
		"/":                                      {"order_webhook", "email", "protocol_projector", "Delivered per second", "read-only"},
		"/live":                                  {"order_webhook", "<svg"},
		"/?scope=tenant-42":                      {"a2a_webhook"},
		"/messages":                              {"order_webhook", "Next page"},
		"/messages?status=pending&target=email":  {"email", "pending"},
		"/messages?status=dead_letter&error=503": {"webhook unavailable: 503"},
		"/messages/" + s.down[0]:                 {"Last error", errDown, "order_id"},
		"/messages/" + s.down[0] + "?scope=":     {errDown},
		"/dead-letters":                          {errDown, errBad, "By lane, target and error"},
		"/dead-letters?lane=canonical&target=order_webhook": {errDown},
		"/dead-letters?scope=tenant-42":                     {"agent refused: 410 Gone"},
		"/purge":                                            {"Purge"},
		"/login":                                            {"No operator tokens are configured"},
		"/static/app.js":                                    {"data-live"},
		"/static/style.css":                                 {"--accent"},
		"/metrics":                                          {`pgoutbox_messages_pending{lane="canonical",`, `target="order_webhook"`, "pgoutbox_messages_oldest_due_age_seconds", "pgoutbox_messages_dead_letters"},
	}
	for path, wants := range pages {
		res, body := f.get(path)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", path, res.StatusCode, body)
			continue
		}
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s lacks %q", path, want)
			}
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: security headers %v", path, res.Header)
		}
	}
	for path, want := range map[string]int{
		"/messages/999999":        http.StatusNotFound,
		"/messages/abc":           http.StatusNotFound,
		"/messages?status=nope":   http.StatusBadRequest,
		"/messages?after=x":       http.StatusBadRequest,
		"/?scope=%20":             http.StatusBadRequest,
		"/nope":                   http.StatusNotFound,
		"/dead-letters?lane=%00x": http.StatusBadRequest,
		"/messages/" + s.down[0] + "?scope=tenant-42": http.StatusNotFound,
	} {
		if res, body := f.get(path); res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d\n%s", path, res.StatusCode, want, body)
		}
	}
}

func TestMessageListPagesAndFilters(t *testing.T) {
	f := newFixture(t)
	f.seed()
	var seen []string
	next := "/messages?target=order_webhook"
	for next != "" {
		res, body := f.get(next)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", next, res.StatusCode)
		}
		seen = append(seen, ids(body)...)
		next = ""
		if i := strings.Index(body, `rel="next"`); i >= 0 {
			href := body[strings.LastIndex(body[:i], `href="`)+6:]
			next = strings.ReplaceAll(href[:strings.Index(href, `"`)], "&amp;", "&")
		}
	}
	if len(seen) != 41 {
		t.Errorf("paged through %d order_webhook messages, want 41: %v", len(seen), seen)
	}
	_, body := f.get("/messages?status=dead_letter&error=" + url.QueryEscape("400 Bad"))
	if got := ids(body); len(got) != 2 {
		t.Errorf("error filter: %v", got)
	}
}

// ids are the message ids linked from a list page.
func ids(body string) []string {
	var out []string
	for _, part := range strings.Split(body, `href="/messages/`)[1:] {
		out = append(out, part[:strings.IndexAny(part, `"?`)])
	}
	return out
}

func TestHostilePayloadRendersInert(t *testing.T) {
	f := newFixture(t)
	s := f.seed()
	for _, path := range []string{"/messages/" + s.xss, "/messages?lane=" + outbox.LaneProtocolReplay, "/dead-letters"} {
		_, body := f.get(path)
		if strings.Count(body, "<script") != 1 || strings.Contains(body, "<img") || strings.Contains(body, "<b onmouseover") {
			t.Errorf("%s carries live markup from the payload or error:\n%s", path, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(body, "&lt;img src=x onerror=") {
			t.Errorf("%s does not show the hostile text escaped", path)
		}
	}
}

func redriveOne(id string) url.Values { return url.Values{"one": {id}} }

func TestWriteWithoutTokenIsRefusedAndChangesNothing(t *testing.T) {
	f := newFixture(t, withWrites)
	s := f.seed()
	id := s.down[0]
	for name, h := range map[string]http.Header{
		"no credentials":        nil,
		"wrong bearer":          bearer("not-the-token-at-all"),
		"wrong basic":           {"Authorization": {"Basic " + basic(testUser, "wrong-token-0123456789")}},
		"basic of another user": {"Authorization": {"Basic " + basic("mallory", testToken)}},
		"forged cookie":         {"Cookie": {sessionCookie + "=" + "YWRh.9999999999.forged"}},
	} {
		res, _ := f.do(http.MethodPost, "/dead-letters/redrive", request{header: h, form: redriveOne(id)})
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %v, want 401", name, res.StatusCode, res.Header)
		}
	}
	if st := f.status(id); st != outbox.StatusDeadLetter {
		t.Fatalf("refused redrive changed the message: %s", st)
	}
	if n := len(f.logs.lines("dashboard: write refused: not authenticated")); n != 5 {
		t.Errorf("%d refusals logged, want 5", n)
	}

	// A read-only dashboard refuses even a valid operator.
	ro := newFixture(t, func(c *Config) { c.Tokens = map[string]string{testUser: testToken} })
	rs := ro.seed()
	res, _ := ro.do(http.MethodPost, "/dead-letters/redrive", request{header: bearer(testToken), form: redriveOne(rs.down[0])})
	if res.StatusCode != http.StatusForbidden || ro.status(rs.down[0]) != outbox.StatusDeadLetter {
		t.Errorf("read-only dashboard: %d, message %s", res.StatusCode, ro.status(rs.down[0]))
	}
	res, _ = ro.do(http.MethodPost, "/purge", request{header: bearer(testToken), form: url.Values{"older_than": {"0s"}}})
	if res.StatusCode != http.StatusForbidden || ro.countStatus(ro.store, outbox.StatusDelivered) == 0 {
		t.Errorf("read-only purge: %d", res.StatusCode)
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestCrossSitePostIsRefused(t *testing.T) {
	f := newFixture(t, withWrites)
	s := f.seed()
	for name, h := range map[string]http.Header{
		"sec-fetch-site": {"Sec-Fetch-Site": {"cross-site"}},
		"foreign origin": {"Origin": {"https://evil.example"}},
	} {
		h.Set("Authorization", "Bearer "+testToken) // even with the operator's credentials
		res, body := f.do(http.MethodPost, "/dead-letters/redrive", request{header: h, form: redriveOne(s.down[0])})
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Cross-origin request refused") {
			t.Errorf("%s: %d", name, res.StatusCode)
		}
		res, _ = f.do(http.MethodPost, "/login", request{header: h, form: url.Values{"name": {testUser}, "token": {testToken}}})
		if res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
			t.Errorf("%s login: %d %v", name, res.StatusCode, res.Cookies())
		}
	}
	if st := f.status(s.down[0]); st != outbox.StatusDeadLetter {
		t.Fatalf("cross-site redrive changed the message: %s", st)
	}
	// The same form from the dashboard's own page goes through.
	h := bearer(testToken)
	h.Set("Sec-Fetch-Site", "same-origin")
	if res, _ := f.do(http.MethodPost, "/dead-letters/redrive", request{header: h, form: redriveOne(s.down[0])}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin redrive: %d", res.StatusCode)
	}
}

func TestRedriveActions(t *testing.T) {
	f := newFixture(t, withWrites)
	s := f.seed()
	st := f.store
	f.enqueue(st, "canonical", "order_webhook", 3, `{}`)
	timeout := f.kill(st, "canonical", "order_webhook", 2, "timeout")
	longer := f.kill(st, "canonical", "order_webhook", 1, "timeout after 30s")
	post := func(form url.Values) string {
		t.Helper()
		form.Set("back", "/dead-letters?lane=canonical")
		res, body := f.do(http.MethodPost, "/dead-letters/redrive", request{header: bearer(testToken), form: form})
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("redrive %v: %d\n%s", form, res.StatusCode, body)
		}
		loc, err := url.Parse(res.Header.Get("Location"))
		if err != nil || loc.Path != "/dead-letters" || loc.Query().Get("lane") != "canonical" {
			t.Fatalf("redirect to %v", res.Header.Get("Location"))
		}
		_, page := f.get(loc.String())
		return loc.Query().Get("notice") + "|" + page
	}

	// One; then a selection holding one that is not a dead letter.
	if out := post(redriveOne(s.down[0])); !strings.HasPrefix(out, "Redrove 1 dead letter.|") || !strings.Contains(out, `class="notice"`) {
		t.Errorf("one: %.200s", out)
	}
	out := post(url.Values{"id": {s.down[1], s.down[2], s.down[0]}})
	if !strings.HasPrefix(out, "Redrove 2 dead letters. 1 were not dead letters and were left alone: "+s.down[0]) {
		t.Errorf("selection: %.200s", out)
	}
	// A group is its exact error: "timeout after 30s" stays.
	post(url.Values{"mode": {"group"}, "lane": {"canonical"}, "target": {"order_webhook"}, "group_error": {"timeout"}})
	if f.status(timeout[0]) != outbox.StatusPending || f.status(timeout[1]) != outbox.StatusPending || f.status(longer[0]) != outbox.StatusDeadLetter {
		t.Errorf("group: %s %s %s", f.status(timeout[0]), f.status(timeout[1]), f.status(longer[0]))
	}
	// All matching a text: contains.
	post(url.Values{"mode": {"matching"}, "lane": {"canonical"}, "target": {"order_webhook"}, "error_contains": {"time"}})
	if f.status(longer[0]) != outbox.StatusPending {
		t.Errorf("matching: %s", f.status(longer[0]))
	}
	for _, id := range append(s.down, s.bad...) {
		want := outbox.StatusPending
		if id == s.down[3] || id == s.bad[0] || id == s.bad[1] {
			want = outbox.StatusDeadLetter
		}
		if got := f.status(id); got != want {
			t.Errorf("message %s: %s, want %s", id, got, want)
		}
	}
	audit := f.logs.lines("dashboard: write")
	if len(audit) != 4 {
		t.Fatalf("%d audit lines, want 4", len(audit))
	}
	for i, want := range []float64{1, 2, 2, 1} {
		if a := audit[i]; a["who"] != testUser || a["auth"] != "bearer" || a["action"] != "redrive" || a["redriven"] != want {
			t.Errorf("audit %d: %v", i, a)
		}
	}

	for name, form := range map[string]url.Values{
		"nothing selected":   {},
		"no error text":      {"mode": {"matching"}, "lane": {"canonical"}, "target": {"order_webhook"}},
		"group without lane": {"mode": {"group"}, "target": {"order_webhook"}, "group_error": {"x"}},
		"bad id":             {"id": {" "}},
	} {
		if res, _ := f.do(http.MethodPost, "/dead-letters/redrive", request{header: bearer(testToken), form: form}); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, res.StatusCode)
		}
	}
	// A notice without its signature is not shown.
	if _, page := f.get("/dead-letters?notice=Your+token+expired"); strings.Contains(page, "Your token expired") {
		t.Error("unsigned notice shown")
	}
}

func TestPurgeCountsFirstThenPurges(t *testing.T) {
	f := newFixture(t, withWrites)
	f.seed()
	time.Sleep(10 * time.Millisecond)
	form := url.Values{"older_than": {"0s"}}
	want, err := f.store.PurgeCount(f.ctx, outbox.PurgeRequest{})
	if err != nil || want == 0 {
		t.Fatal(want, err)
	}
	res, body := f.do(http.MethodPost, "/purge/preview", request{header: bearer(testToken), form: form})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `<b class="count">`+fmtInt(want)+`</b>`) {
		t.Fatalf("preview: %d\n%s", res.StatusCode, body)
	}
	if n := f.countStatus(f.store, outbox.StatusDelivered); int64(n) != want {
		t.Fatalf("the dry run deleted: %d delivered left of %d", n, want)
	}
	res, body = f.do(http.MethodPost, "/purge", request{header: bearer(testToken), form: form})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("purge: %d\n%s", res.StatusCode, body)
	}
	if n := f.countStatus(f.store, outbox.StatusDelivered); n != 0 || f.countStatus(f.store, outbox.StatusDeadLetter) == 0 {
		t.Errorf("after purge: %d delivered; dead letters must stay", n)
	}
	audit := f.logs.lines("dashboard: write")
	if len(audit) != 2 || audit[1]["action"] != "purge" || audit[1]["deleted"] != float64(want) {
		t.Errorf("audit: %v", audit)
	}
	if res, _ := f.do(http.MethodPost, "/purge/preview", request{header: bearer(testToken), form: url.Values{"older_than": {"3 days"}}}); res.StatusCode != http.StatusBadRequest {
		t.Errorf("bad duration: %d", res.StatusCode)
	}
}

func TestSignInSession(t *testing.T) {
	f := newFixture(t, withWrites)
	s := f.seed()
	res, _ := f.do(http.MethodPost, "/login", request{form: url.Values{"name": {testUser}, "token": {"wrong-token-0123456789"}}})
	if res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 || len(f.logs.lines("dashboard: sign-in failed")) != 1 {
		t.Fatalf("wrong token: %d %v", res.StatusCode, res.Cookies())
	}
	// Browsers drop tabs and newlines from a URL: "/\t/evil.example/" would
	// lead to //evil.example/.
	for _, next := range []string{"//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/\n/evil.example/", "https://evil.example/"} {
		res, _ = f.do(http.MethodPost, "/login", request{form: url.Values{"name": {testUser}, "token": {testToken}, "next": {next}}})
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
			t.Fatalf("sign in with next %q: %d, redirect to %q", next, res.StatusCode, res.Header.Get("Location"))
		}
	}
	var c *http.Cookie
	for _, x := range res.Cookies() {
		if x.Name == sessionCookie {
			c = x
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v", c)
	}
	cookie := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	if res, _ := f.do(http.MethodPost, "/dead-letters/redrive", request{header: cookie, form: redriveOne(s.down[0])}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("write with the session: %d", res.StatusCode)
	}
	audit := f.logs.lines("dashboard: write")
	if len(audit) != 6 || audit[5]["action"] != "redrive" || audit[5]["who"] != testUser || audit[5]["auth"] != "session" { // five sign-ins, one redrive
		t.Errorf("audit: %v", audit)
	}
	tampered := http.Header{"Cookie": {c.Name + "=" + strings.Replace(c.Value, ".", ".1", 1)}}
	if res, _ := f.do(http.MethodPost, "/dead-letters/redrive", request{header: tampered, form: redriveOne(s.down[1])}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("tampered session: %d", res.StatusCode)
	}
	if _, ok := f.dash.checkSession(c.Value, time.Now().Add(SessionLifetime+time.Minute)); ok {
		t.Error("session valid after its lifetime")
	}
	res, _ = f.do(http.MethodPost, "/logout", request{header: cookie, form: url.Values{}})
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 || res.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v", res.StatusCode, res.Cookies())
	}
}

func TestRequireAuthForReads(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Tokens = map[string]string{testUser: testToken}
		c.RequireAuthForReads = true
	})
	f.seed()
	f.sample()
	for _, path := range []string{"/", "/messages", "/api/overview", "/metrics", "/live"} {
		if res, _ := f.get(path); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s unauthenticated: %d", path, res.StatusCode)
		}
		if res, _ := f.do(http.MethodGet, path, request{header: bearer(testToken)}); res.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the token: %d", path, res.StatusCode)
		}
	}
	for _, path := range []string{"/login", "/static/style.css"} {
		if res, _ := f.get(path); res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, res.StatusCode)
		}
	}
}

func TestSamplerDerivesDeliveries(t *testing.T) {
	f := newFixture(t)
	s := f.seed()
	f.sample()
	f.enqueue(f.store, "canonical", "order_webhook", 100, `{}`)
	f.deliver(f.store, "canonical", "order_webhook", 60)
	f.enqueue(s.tenant, "canonical", "burst", 7, `{}`)
	f.deliver(s.tenant, "canonical", "burst", 7) // a lane and target with nothing left but deliveries
	time.Sleep(600 * time.Millisecond)           // at least half the interval, so the sample measures rates
	f.sample()
	h := f.dash.sampler.history()
	if len(h) != 2 {
		t.Fatalf("%d samples in the ring", len(h))
	}
	dt := h[1].At.Sub(h[0].At).Seconds()
	delivered := map[key]float64{}
	for _, r := range h[1].Rows {
		delivered[r.key()] = r.DeliveredPerSecond * dt
	}
	for k, want := range map[key]float64{
		{"", "canonical", "order_webhook"}:        60,
		{"", "canonical", "email"}:                0,
		{"tenant-42", "canonical", "burst"}:       7,
		{"tenant-42", "canonical", "a2a_webhook"}: 0,
	} {
		if got, ok := delivered[k]; !ok || got < want-0.01 || got > want+0.01 {
			t.Errorf("%v: %.2f delivered (present %v), want %.0f", k, got, ok, want)
		}
	}
	if got := h[1].Scopes; len(got) != 2 || got[0] != "" || got[1] != "tenant-42" {
		t.Errorf("scopes %v", got)
	}

	// The JSON API reads the same sample.
	_, body := f.get("/api/overview?scope=tenant-42")
	var api struct {
		Rows []struct {
			Target             string   `json:"target"`
			DeliveredPerSecond *float64 `json:"delivered_per_second"`
		} `json:"rows"`
		History []json.RawMessage `json:"history"`
	}
	if err := json.Unmarshal([]byte(body), &api); err != nil || len(api.Rows) != 2 || len(api.History) != 2 {
		t.Fatalf("api: %v\n%s", err, body)
	}

	// A sample right after another keeps the last rates and stays out of
	// the ring; a purge of dead letters through the dashboard resets them.
	f.sample()
	if got := len(f.dash.sampler.history()); got != 2 {
		t.Errorf("quick sample went into the ring: %d", got)
	}
	f.dash.forgetBaseline()
	time.Sleep(600 * time.Millisecond)
	f.sample()
	latest, _, _ := f.dash.sampler.state()
	for _, r := range latest.Rows {
		if r.DeliveredPerSecond != -1 {
			t.Errorf("rate measured across a purge: %+v", r)
		}
	}
}

func TestRunSamplesUntilCancelled(t *testing.T) {
	f := newFixture(t)
	f.seed()
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() { done <- f.dash.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for len(f.dash.sampler.history()) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.dash.Run(ctx); err == nil {
		t.Error("a second Run ran")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(f.dash.sampler.history()); n < 2 {
		t.Fatalf("%d samples after the wait", n)
	}
	if _, body := f.get("/"); strings.Contains(body, "sampler is not running") {
		t.Error("stale banner after samples")
	}
}

func TestConfigIsValidated(t *testing.T) {
	f := newFixture(t)
	for name, cfg := range map[string]Config{
		"no DB":                {},
		"writes without token": {DB: f.db.Pool, EnableWrites: true},
		"short token":          {DB: f.db.Pool, Tokens: map[string]string{"a": "short"}},
		"blank name":           {DB: f.db.Pool, Tokens: map[string]string{" ": testToken}},
		"fast sampling":        {DB: f.db.Pool, SampleInterval: time.Millisecond},
		"short history":        {DB: f.db.Pool, SampleInterval: 10 * time.Second, History: time.Second},
		"base path slash":      {DB: f.db.Pool, BasePath: "/outbox/"},
		"base path relative":   {DB: f.db.Pool, BasePath: "outbox"},
		"bad scope":            {DB: f.db.Pool, Scopes: []string{""}},
		"reads without token":  {DB: f.db.Pool, RequireAuthForReads: true},
	} {
		if _, err := New(f.store, cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBasePathAndScopedStore(t *testing.T) {
	f := newFixture(t)
	s := f.seed()
	d, err := New(s.tenant, Config{DB: f.db.Pool, BasePath: "/ops/outbox"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Sample(f.ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/outbox/", d)
	f.srv.Config.Handler = mux
	res, body := f.get("/ops/outbox/")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `href="/ops/outbox/messages?scope=tenant-42"`) ||
		!strings.Contains(body, "a2a_webhook") || strings.Contains(body, "order_webhook") || strings.Contains(body, "<select") {
		t.Errorf("scoped overview under a base path: %d\n%s", res.StatusCode, body)
	}
	if res, _ := f.get("/ops/outbox/messages?scope=tenant-7"); res.StatusCode != http.StatusNotFound {
		t.Errorf("another scope: %d", res.StatusCode)
	}
	if res, _ := f.get("/ops/outbox/messages/" + s.down[0]); res.StatusCode != http.StatusNotFound {
		t.Errorf("a message of another scope: %d", res.StatusCode)
	}
}
