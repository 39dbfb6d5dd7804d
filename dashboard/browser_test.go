package dashboard

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cdpage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// ScreenshotsEnv names a directory for the browser test's screenshots
// (default: a temporary directory, removed after the test).
const screenshotsEnv = "PGOUTBOX_SCREENSHOTS"

// chromium finds Debian's Chromium (or the binary $PGOUTBOX_CHROMIUM names).
// The test never downloads a browser: without one it fails and says how to
// install it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PGOUTBOX_CHROMIUM"); p != "" {
		return p
	}
	// Debian's /usr/bin/chromium is a wrapper script around this binary.
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium for the browser test: install Debian's chromium package " +
		"(make test-deps does; make test and .ci/run call it) or set PGOUTBOX_CHROMIUM to a Chromium binary")
	return ""
}

func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1360, 860),
		chromedp.Flag("force-device-scale-factor", "1"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is a browser tab that fails the test on any error.
type tab struct {
	t   *testing.T
	ctx context.Context
	dir string
}

// do runs steps, each bounded so that a missing element fails the test
// instead of waiting forever.
func (b tab) do(step string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
}

func (b tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (b tab) count(sel string) int {
	b.t.Helper()
	return b.eval(fmt.Sprintf("document.querySelectorAll(%q).length", sel))
}

func (b tab) eval(expr string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return n
}

// shoot saves a screenshot of the whole page.
func (b tab) shoot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// TestBrowser drives the dashboard in headless Chromium: every page loads,
// the overview refreshes itself, a hostile payload stays inert, an operator
// signs in, redrives a dead letter and a selection by clicking, releases an
// ordering key held by a dead letter, and sees the result in the table and
// in the store. It saves a screenshot of each page.
func TestBrowser(t *testing.T) {
	f := newFixture(t, withWrites, func(c *Config) { c.History = 30 * time.Second })
	s := f.seed()
	k := f.seedKeyed()
	b := tab{t: t, ctx: browser(t), dir: screenshotDir(t)}

	// A dialog means a payload or an error ran as script. Listen's func
	// must not call the browser, so another goroutine dismisses it.
	var dialogs atomic.Int32
	dismiss := make(chan struct{}, 16)
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if _, ok := ev.(*cdpage.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
			select {
			case dismiss <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range dismiss {
			_, _ = chromedp.Call(b.ctx, cdpage.HandleJavaScriptDialog, cdpage.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	defer close(dismiss)

	// Half a minute of traffic whose rate rises and falls, sampled every
	// second by Run as a service would, so that the charts show real data.
	runCtx, stopRun := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.dash.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	traffic(t, f, 24*time.Second)

	base := f.srv.URL
	b.do("overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`table.overview tbody tr`)))
	text := b.text(`table.overview`)
	for _, want := range []string{"order_webhook", "email", "protocol_projector"} {
		if !strings.Contains(text, want) {
			t.Errorf("overview lacks %q:\n%s", want, text)
		}
	}
	b.shoot("overview")

	// Live refresh: new messages show up without a reload (a marker set on
	// the window survives).
	f.enqueue(f.store, "canonical", "search_index", 17, `{"doc":1}`)
	f.sample()
	b.do("live refresh",
		chromedp.Evaluate[chromedp.Void](`window.__noReload = 1`),
		chromedp.WaitVisible(`//table[contains(@class,"overview")]//td[normalize-space()="search_index"]`),
	)
	pending := b.text(`table.overview tbody tr:has(a[href*="search_index"]) td:nth-child(3)`)
	if marker := b.eval(`window.__noReload || 0`); pending != "17" || marker != 1 {
		t.Errorf("live refresh: search_index pending %q, marker %d (0: the page reloaded)", pending, marker)
	}

	b.do("scope selector",
		// The change event submits the form; deferred, so that the navigation
		// does not race the evaluation's reply.
		chromedp.Evaluate[chromedp.Void](`setTimeout(() => { const s = document.querySelector("select[name=scope]"); s.value = "tenant-42"; s.dispatchEvent(new Event("change")) }, 0)`),
		chromedp.WaitVisible(`//td/a[normalize-space()="a2a_webhook"]`),
	)

	b.do("messages",
		chromedp.Navigate(base+"/messages?target=order_webhook&status=pending"),
		chromedp.WaitVisible(chromedp.CSS(`table.messages tbody tr`)),
	)
	if text := b.text(`table.messages tbody`); strings.Contains(text, "dead_letter") || !strings.Contains(text, "pending") {
		t.Errorf("filtered list shows other statuses:\n%s", text)
	}

	// Filter by ordering key through the form: the key's messages, in order.
	b.do("messages of a key",
		chromedp.Navigate(base+"/messages"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=ordering_key]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=ordering_key]`), keyHeld),
		chromedp.Click(chromedp.CSS(`form.filters button`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=ordering_key][value="`+keyHeld+`"]`)),
	)
	if rows, keys := b.count(`table.messages tbody tr`), b.count(`table.messages td.key a`); rows != len(k.held) || keys != len(k.held) {
		t.Errorf("messages of %s: %d rows, %d keys shown; want %d", keyHeld, rows, keys, len(k.held))
	}
	if first := b.text(`table.messages tbody tr:first-child td.n a`); first != k.held[0] {
		t.Errorf("the key's first message is %s, want %s", first, k.held[0])
	}
	b.shoot("messages")

	// The hostile payload and error render as text on the detail page.
	b.do("message detail", chromedp.Navigate(base+"/messages/"+s.xss), chromedp.WaitVisible(chromedp.CSS(`pre.payload-full`)))
	payload, lastErr, scripts := b.text(`pre.payload-full`), b.text(`pre.error-text`), b.count("script")
	if !strings.Contains(payload, "<script>alert(1)</script>") || lastErr != xssError || scripts != 1 {
		t.Errorf("hostile payload not shown as text: payload %q, error %q, %d scripts (want app.js only)", payload, lastErr, scripts)
	}
	b.shoot("message-hostile")

	// Read-only until signed in: the dead-letter page offers no buttons.
	b.do("dead letters signed out", chromedp.Navigate(base+"/dead-letters"), chromedp.WaitVisible(chromedp.CSS(`table.groups`)))
	if n := b.count("table.dead button"); n != 0 {
		t.Errorf("%d redrive buttons before signing in", n)
	}

	b.do("login page", chromedp.Navigate(base+"/login?next=/dead-letters"), chromedp.WaitVisible(chromedp.CSS(`form.login`)))
	b.shoot("login")
	b.do("sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), testUser),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), testToken),
		chromedp.Click(chromedp.CSS(`form.login button`)),
		chromedp.WaitVisible(chromedp.CSS(`table.dead tbody tr[data-id] button`)),
	)
	if who := b.text(`.who .user`); who != testUser {
		t.Errorf("signed in as %q", who)
	}
	b.shoot("dead-letters")

	// Redrive one dead letter by clicking its button.
	one := s.down[0]
	b.do("redrive one",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-id="%s"] button[name=one]`, one))),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	notice, rows := b.text(`p.notice`), b.count(fmt.Sprintf(`tr[data-id="%s"]`, one))
	if notice != "Redrove 1 dead letter." || rows != 0 || f.status(one) != outbox.StatusPending {
		t.Errorf("redrive one: notice %q, row still listed %d times, status %s", notice, rows, f.status(one))
	}

	// Redrive a selection: tick two checkboxes, press the button.
	b.do("redrive selection",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name=id][value="%s"]`, s.bad[0]))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name=id][value="%s"]`, s.bad[1]))),
		// The previous redrive's notice is still on the page until the new
		// one loads: remove it, so that the wait below is for this action's.
		chromedp.Evaluate[chromedp.Void](`document.querySelector("p.notice").remove()`),
		chromedp.Click(chromedp.CSS(`p.actions button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	if notice, text := b.text(`p.notice`), b.text(`table.dead tbody`); notice != "Redrove 2 dead letters." || strings.Contains(text, errBad) {
		t.Errorf("redrive selection: notice %q; the table still lists the error:\n%s", notice, text)
	}
	for _, id := range s.bad {
		if st := f.status(id); st != outbox.StatusPending {
			t.Errorf("message %s is %s after the redrive", id, st)
		}
	}
	b.shoot("dead-letters-redriven")

	// A keyed dead letter: its key, its headers, and that it holds the key.
	b.do("keyed message", chromedp.Navigate(base+"/messages/"+k.held[0]), chromedp.WaitVisible(chromedp.CSS(`.holds .hold`)))
	if n, waiting := b.count(`table.headers tbody tr`), b.text(`.holds b.waiting`); n != 3 || waiting != "3" {
		t.Errorf("keyed dead letter: %d headers, %q waiting; want 3 and 3", n, waiting)
	}
	b.shoot("message")

	// Release the key by clicking: the dead-letter row's link, the
	// confirmation page, its button.
	b.do("release key: confirm",
		chromedp.Navigate(base+"/dead-letters?lane=canonical&target=ledger"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-id="%s"] .hold`, k.held[0]))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-id="%s"] a.release`, k.held[0]))),
		chromedp.WaitVisible(chromedp.CSS(`form.confirm button.danger`)),
	)
	if holders, waiting := b.count(`table.holders tbody tr`), b.text(`b.waiting`); holders != 1 || waiting != "3" {
		t.Errorf("confirmation page: %d holders, %q waiting; want 1 and 3", holders, waiting)
	}
	if f.released(k.held[0]) {
		t.Fatal("the confirmation page released the key")
	}
	b.shoot("release-key")
	b.do("release key",
		chromedp.Click(chromedp.CSS(`form.confirm button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	if notice := b.text(`p.notice`); !strings.HasPrefix(notice, `Released ordering key "`+keyHeld+`" of canonical / ledger`) {
		t.Errorf("release notice %q", notice)
	}
	if rows, holds := b.count(fmt.Sprintf(`tr[data-id="%s"]`, k.held[0])), b.count(fmt.Sprintf(`tr[data-id="%s"] .hold`, k.held[0])); rows != 1 || holds != 0 {
		t.Errorf("after the release: the dead letter is listed %d times, with %d hold badges; want 1 and 0", rows, holds)
	}
	// The key's next message is handed out now; the dead letter stays one.
	var claimed []string
	for _, m := range f.claim(f.store, "canonical", "ledger", 2, time.Minute) {
		claimed = append(claimed, m.ID)
	}
	if !slices.Contains(claimed, k.held[1]) || f.status(k.held[0]) != outbox.StatusDeadLetter {
		t.Errorf("after the release: claimed %v, want %s (the key's next message); the dead letter is %s", claimed, k.held[1], f.status(k.held[0]))
	}
	if audit := f.logs.lines("dashboard: write"); len(audit) == 0 || audit[len(audit)-1]["action"] != "release_ordering_key" || audit[len(audit)-1]["auth"] != "session" {
		t.Errorf("the release is not in the audit log: %v", audit)
	}

	b.do("purge preview",
		chromedp.Navigate(base+"/purge"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=older_than]`)),
		chromedp.SetValue(chromedp.CSS(`input[name=older_than]`), "0s"),
		chromedp.Click(chromedp.CSS(`form.filters button`)),
		chromedp.WaitVisible(chromedp.CSS(`form.confirm b.count`)),
	)
	if n := b.text(`form.confirm b.count`); n == "0" {
		t.Errorf("purge preview counted nothing")
	}
	b.shoot("purge")

	if n := dialogs.Load(); n != 0 {
		t.Errorf("%d JavaScript dialogs opened: a payload or error ran as script", n)
	}
	t.Logf("screenshots in %s", b.dir)
}

// traffic enqueues and delivers messages for d, at a rate that rises and
// falls, and fails a few into dead letters.
func traffic(t *testing.T, f *fixture, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		phase := float64(i%20) / 20
		n := 5 + int(60*phase*(1-phase)*4)
		f.enqueue(f.store, "canonical", "order_webhook", n, `{"order_id":7}`)
		f.enqueue(f.store, "canonical", "billing", n/2+1, `{"invoice":9}`)
		f.deliver(f.store, "canonical", "order_webhook", max(1, n-2+i%3))
		f.deliver(f.store, "canonical", "billing", n/2)
		time.Sleep(250 * time.Millisecond)
	}
}
