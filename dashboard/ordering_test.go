package dashboard

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// tableRow is the HTML of the table row of message id (tr data-id), "" when the
// page has none.
func tableRow(body, id string) string {
	start := strings.Index(body, `<tr data-id="`+id+`">`)
	if start < 0 {
		return ""
	}
	end := strings.Index(body[start:], "</tr>")
	return body[start : start+end]
}

// The message list filters by ordering key and shows each message's key,
// linked to the key's messages.
func TestMessageListByOrderingKey(t *testing.T) {
	f := newFixture(t)
	f.seed()
	k := f.seedKeyed()
	res, body := f.get("/messages?ordering_key=" + keyHeld)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d\n%s", res.StatusCode, body)
	}
	if got := ids(body); !slices.Equal(got, k.held) {
		t.Errorf("messages of %s: %v, want %v in order", keyHeld, got, k.held)
	}
	if !strings.Contains(body, `<input name="ordering_key" value="account-42"`) || !strings.Contains(body, "<th>Ordering key</th>") {
		t.Error("the filter or the column is missing")
	}
	keyLink := `href="/messages?lane=canonical&amp;ordering_key=account-42&amp;target=ledger"`
	if n := strings.Count(body, keyLink); n != 4 {
		t.Errorf("%d links to the key's messages, want one per row", n)
	}
	_, body = f.get("/messages?status=pending&lane=canonical&target=ledger&ordering_key=" + keyHeld)
	if got := ids(body); !slices.Equal(got, k.held[1:]) {
		t.Errorf("pending messages of %s: %v, want %v", keyHeld, got, k.held[1:])
	}
	_, body = f.get("/messages?target=order_webhook")
	if !strings.Contains(body, `<td class="key"><span class="none">–</span></td>`) {
		t.Error("an unkeyed message's key cell is not the empty mark")
	}
	if res, body := f.get("/messages?ordering_key=%20"); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid ordering_key") {
		t.Errorf("blank key: %d", res.StatusCode)
	}
}

// The detail page shows the ordering key with a link to the key's
// messages, the headers sorted by name, and whether a dead letter holds its
// key.
func TestMessageDetailShowsKeyAndHeaders(t *testing.T) {
	f := newFixture(t, withWrites)
	s := f.seed()
	k := f.seedKeyed()
	_, body := f.get("/messages/" + k.held[0])
	for _, want := range []string{
		`<dt>Ordering key</dt><dd class="mono">account-42 <a class="small" href="/messages?lane=canonical&amp;ordering_key=account-42&amp;target=ledger">the key&#39;s messages</a></dd>`,
		`<h2>Headers <small>3</small></h2>`,
		`<span class="hold">holds key</span>`,
		`<b class="waiting">3</b> messages of the key wait behind it.`,
		"Sign in</a> to release the key.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("detail of the held dead letter lacks %s", want)
		}
	}
	names := regexp.MustCompile(`<tr><td class="mono">([^<]*)</td>`).FindAllStringSubmatch(body, -1)
	var got []string
	for _, n := range names {
		got = append(got, n[1])
	}
	if want := []string{"content-type", "idempotency-key", "traceparent"}; !slices.Equal(got, want) {
		t.Errorf("headers %v, want %v (sorted by name)", got, want)
	}
	if !strings.Contains(body, `<td class="mono">ledger-entry-7100</td>`) {
		t.Error("a header's value is missing")
	}
	// Signed in, the release link leads to the confirmation step.
	_, body = f.do(http.MethodGet, "/messages/"+k.held[0], request{header: bearer(testToken)})
	release := `href="/dead-letters/release-key?back=%2Fmessages%2F` + k.held[0] + `&amp;lane=canonical&amp;ordering_key=account-42&amp;target=ledger"`
	if !strings.Contains(body, release) {
		t.Errorf("signed in: no release link %s", release)
	}
	// A released key's dead letter, a pending keyed message, an unkeyed one.
	for _, id := range []string{k.released[0], k.held[1], s.down[0]} {
		_, body := f.do(http.MethodGet, "/messages/"+id, request{header: bearer(testToken)})
		if strings.Contains(body, "holds key") || strings.Contains(body, "release-key") {
			t.Errorf("message %s offers to release a key it does not hold", id)
		}
	}
	_, body = f.get("/messages/" + s.down[0])
	if !strings.Contains(body, "<dt>Ordering key</dt><dd class=\"mono\"><span class=\"none\">–</span></dd>") ||
		!strings.Contains(body, "<h2>Headers</h2>\n<p class=\"none\">None.</p>") {
		t.Error("a message without key and headers does not say so")
	}
}

// The dead-letter page marks the dead letters that hold their key and
// offers to release the key (the count of what waits is on the message's
// page and the confirmation, see keyHolds).
func TestDeadLettersShowWhichHoldTheirKey(t *testing.T) {
	f := newFixture(t, withWrites)
	s := f.seed()
	k := f.seedKeyed()
	_, body := f.do(http.MethodGet, "/dead-letters", request{header: bearer(testToken)})
	held := tableRow(body, k.held[0])
	if !strings.Contains(held, `<span class="hold"`) || !strings.Contains(held, ">account-42</a>") || !strings.Contains(held, "Release key…") {
		t.Errorf("the held key's dead letter:\n%s", held)
	}
	for _, id := range []string{k.released[0], s.down[0]} {
		if r := tableRow(body, id); r == "" || strings.Contains(r, "holds key") || strings.Contains(r, "Release key") {
			t.Errorf("dead letter %s (not holding a key):\n%s", id, r)
		}
	}
	if r := tableRow(body, k.released[0]); !strings.Contains(r, ">account-9</a>") {
		t.Errorf("the released key's dead letter does not show its key:\n%s", r)
	}
	// Signed out: the badge, but no release link.
	_, body = f.get("/dead-letters")
	if r := tableRow(body, k.held[0]); !strings.Contains(r, `<span class="hold"`) || strings.Contains(r, "Release key") {
		t.Errorf("signed out:\n%s", r)
	}
}

func releaseForm(lane, target, key string) url.Values {
	return url.Values{"lane": {lane}, "target": {target}, "ordering_key": {key}, "back": {"/dead-letters?target=ledger"}}
}

// Releasing a key: a confirmation page first, then a write with the same
// authentication, CSRF protection and audit log as the others; the key's
// next message is then handed out, and the dead letter stays one.
func TestReleaseKey(t *testing.T) {
	f := newFixture(t, withWrites)
	f.seed()
	k := f.seedKeyed()
	confirm := "/dead-letters/release-key?lane=canonical&target=ledger&ordering_key=" + keyHeld

	// The confirmation step: who holds the key, what waits, what releasing does.
	res, body := f.do(http.MethodGet, confirm, request{header: bearer(testToken)})
	if res.StatusCode != http.StatusOK || tableRow(body, k.held[0]) == "" || !strings.Contains(body, `<b class="waiting">3</b> messages`) ||
		!strings.Contains(body, `<button class="danger">Release the key</button>`) || !strings.Contains(body, errConflict) {
		t.Fatalf("confirmation page: %d\n%s", res.StatusCode, body)
	}
	if _, body := f.get(confirm); strings.Contains(body, `<button class="danger"`) || !strings.Contains(body, "Sign in</a> to release the key.") {
		t.Error("the confirmation page offers the button before signing in")
	}

	// Refused: no credentials, a wrong token, cross-site with the token.
	form := releaseForm("canonical", "ledger", keyHeld)
	for name, h := range map[string]http.Header{
		"no credentials": nil,
		"wrong bearer":   bearer("not-the-token-at-all"),
	} {
		if res, _ := f.do(http.MethodPost, "/dead-letters/release-key", request{header: h, form: form}); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, res.StatusCode)
		}
	}
	for name, h := range map[string]http.Header{
		"sec-fetch-site": {"Sec-Fetch-Site": {"cross-site"}},
		"foreign origin": {"Origin": {"https://evil.example"}},
	} {
		h.Set("Authorization", "Bearer "+testToken)
		if res, _ := f.do(http.MethodPost, "/dead-letters/release-key", request{header: h, form: form}); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, res.StatusCode)
		}
	}
	if f.released(k.held[0]) {
		t.Fatal("a refused release released the key")
	}
	if n := len(f.logs.lines("dashboard: write refused: not authenticated")); n != 2 {
		t.Errorf("%d refusals logged, want 2", n)
	}

	// Bad input: 400, nothing released.
	for name, bad := range map[string]url.Values{
		"no key":     releaseForm("canonical", "ledger", ""),
		"blank key":  releaseForm("canonical", "ledger", "  "),
		"no target":  releaseForm("canonical", "", keyHeld),
		"lane ctl":   releaseForm("cano\x01nical", "ledger", keyHeld),
		"key of nul": releaseForm("canonical", "ledger", "a\x00b"),
	} {
		if res, _ := f.do(http.MethodPost, "/dead-letters/release-key", request{header: bearer(testToken), form: bad}); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, res.StatusCode)
		}
	}
	if f.released(k.held[0]) {
		t.Fatal("a bad request released the key")
	}

	// The release, from the dashboard's own page.
	h := bearer(testToken)
	h.Set("Sec-Fetch-Site", "same-origin")
	res, body = f.do(http.MethodPost, "/dead-letters/release-key", request{header: h, form: form})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("release: %d\n%s", res.StatusCode, body)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Path != "/dead-letters" || loc.Query().Get("target") != "ledger" {
		t.Fatalf("redirect to %q", res.Header.Get("Location"))
	}
	want := `Released ordering key "account-42" of canonical / ledger: its dead letter no longer holds it, and the key's next message is delivered now.`
	if got := loc.Query().Get("notice"); got != want {
		t.Errorf("notice %q, want %q", got, want)
	}
	_, page := f.do(http.MethodGet, loc.String(), request{header: bearer(testToken)})
	if !strings.Contains(page, html.EscapeString(want)) {
		t.Error("the notice is not shown after the release")
	}
	if r := tableRow(page, k.held[0]); r == "" || strings.Contains(r, "holds key") {
		t.Errorf("after the release the dead letter still holds its key, or is gone:\n%s", r)
	}
	audit := f.logs.lines("dashboard: write")
	if len(audit) != 1 || audit[0]["action"] != "release_ordering_key" || audit[0]["who"] != testUser || audit[0]["auth"] != "bearer" ||
		audit[0]["ordering_key"] != keyHeld || audit[0]["lane"] != "canonical" || audit[0]["target"] != "ledger" || audit[0]["released"] != float64(1) {
		t.Errorf("audit: %v", audit)
	}

	// The key's next message is handed out; the dead letter stays one.
	got := f.claim(f.store, "canonical", "ledger", 2, time.Minute)
	var claimed []string
	for _, m := range got {
		claimed = append(claimed, m.ID)
	}
	if !slices.Contains(claimed, k.held[1]) || !slices.Contains(claimed, k.released[1]) {
		t.Errorf("claimed %v after the release, want %s (the key's next) and %s", claimed, k.held[1], k.released[1])
	}
	if st := f.status(k.held[0]); st != outbox.StatusDeadLetter || !f.released(k.held[0]) {
		t.Errorf("the released dead letter: %s", st)
	}

	// Again: nothing holds it; said so, and nothing to confirm.
	res, _ = f.do(http.MethodPost, "/dead-letters/release-key", request{header: bearer(testToken), form: form})
	if loc, _ := url.Parse(res.Header.Get("Location")); res.StatusCode != http.StatusSeeOther ||
		loc.Query().Get("notice") != `No dead letter held ordering key "account-42" of canonical / ledger: nothing was released.` {
		t.Errorf("second release: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if _, body := f.do(http.MethodGet, confirm, request{header: bearer(testToken)}); strings.Contains(body, "<button class=\"danger\"") ||
		!strings.Contains(body, "No dead letter holds this key") {
		t.Error("the confirmation page offers to release a key nothing holds")
	}
	if res, _ := f.get("/dead-letters/release-key?lane=canonical&target=ledger&ordering_key=%20"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("confirmation page of a blank key: %d", res.StatusCode)
	}

	// A read-only dashboard refuses even a valid operator.
	ro := newFixture(t, func(c *Config) { c.Tokens = map[string]string{testUser: testToken} })
	rk := ro.seedKeyed()
	if res, _ := ro.do(http.MethodPost, "/dead-letters/release-key", request{header: bearer(testToken), form: form}); res.StatusCode != http.StatusForbidden || ro.released(rk.held[0]) {
		t.Errorf("read-only dashboard: %d", res.StatusCode)
	}
}

// Keys and headers an attacker chose render as text on every page that
// shows them, links included.
func TestHostileKeysAndHeadersRenderInert(t *testing.T) {
	f := newFixture(t, withWrites)
	f.seed()
	k := f.seedKeyed()
	auth := request{header: bearer(testToken)}
	for _, path := range []string{
		"/messages/" + k.hostile[0],
		"/messages?target=audit",
		"/messages?ordering_key=" + url.QueryEscape(keyHostile),
		"/dead-letters",
		"/dead-letters/release-key?lane=canonical&target=audit&ordering_key=" + url.QueryEscape(keyHostile),
	} {
		res, body := f.do(http.MethodGet, path, auth)
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, res.StatusCode)
			continue
		}
		if strings.Count(body, "<script") != 1 || strings.Contains(body, "<img") || strings.Contains(body, "<svg") {
			t.Errorf("%s carries live markup from a key or a header:\n%s", path, body)
		}
		if !strings.Contains(body, "&lt;img src=x onerror=alert(6)&gt;") {
			t.Errorf("%s does not show the hostile key as text", path)
		}
	}
	_, body := f.do(http.MethodGet, "/messages/"+k.hostile[0], auth)
	if !strings.Contains(body, `<td class="mono">&lt;svg onload=alert(7)&gt;</td><td class="mono">&#34;&gt;&lt;script&gt;alert(8)&lt;/script&gt;</td>`) {
		t.Error("the hostile header is not shown as text")
	}
	// The key travels in links URL-encoded (html/template writes the
	// query's + as &#43;), and the release goes through.
	if !strings.Contains(body, "ordering_key=%3Cimg&#43;src%3Dx&#43;onerror%3Dalert%286%29%3E") {
		t.Error("the hostile key's links are not URL-encoded")
	}
	res, _ := f.do(http.MethodPost, "/dead-letters/release-key", request{header: bearer(testToken), form: releaseForm("canonical", "audit", keyHostile)})
	if loc, _ := url.Parse(res.Header.Get("Location")); res.StatusCode != http.StatusSeeOther || !f.released(k.hostile[0]) {
		t.Fatalf("release of the hostile key: %d %v", res.StatusCode, loc)
	} else if _, page := f.get(loc.String()); strings.Contains(page, "<img") || !strings.Contains(page, fmt.Sprintf("Released ordering key %s", html.EscapeString(fmt.Sprintf("%q", keyHostile)))) {
		t.Error("the notice of the hostile key's release is not shown as text")
	}
}
