package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
)

// lockedBuffer is a writer the test reads while the command writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServeDashboard(t *testing.T) {
	d := pgtest.NewDB(t)
	if code, out, errOut := runCLI(t, "enqueue", "--database-url", d.URL, "--lane", "canonical", "--target", "order_webhook", "--payload", `{"a":1}`); code != 0 {
		t.Fatalf("enqueue: %d %s %s", code, out, errOut)
	}
	t.Setenv("TEST_DASHBOARD_TOKEN", "a-token-of-at-least-16-bytes")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--database-url", d.URL, "--addr", "127.0.0.1:0", "--enable-writes",
			"--token-env", "TEST_DASHBOARD_TOKEN", "--user", "ada", "--sample-interval", "1s", "--base-path", "/outbox"},
			stdio{in: strings.NewReader(""), out: &out, errOut: &errOut})
	}()
	addr := regexp.MustCompile(`dashboard on (http://\S+/)`)
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("no address printed:\n%s\n%s", out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "writes enabled for ada") || !strings.Contains(base, "127.0.0.1:") {
		t.Errorf("banner: %s", out.String())
	}
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err := http.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if body = string(b); res.StatusCode == http.StatusOK && strings.Contains(body, "order_webhook") {
			break
		}
	}
	if !strings.Contains(body, "order_webhook") {
		t.Errorf("the overview never showed the message:\n%s", body)
	}
	res, err := http.PostForm(base+"purge", url.Values{"older_than": {"0s"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("purge without the token: %d", res.StatusCode)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d:\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(errOut.String(), "write refused: not authenticated") {
		t.Errorf("refusal not logged:\n%s", errOut.String())
	}
}

func TestServeRefusesBadInput(t *testing.T) {
	t.Setenv("OUTBOXCTL_DASHBOARD_TOKEN", "")
	for _, args := range [][]string{
		{"serve", "--database-url", "postgres://127.0.0.1:1/x", "--enable-writes"},
		{"serve", "--database-url", "postgres://127.0.0.1:1/x", "--scope", " "},
		{"serve", "--database-url", "postgres://127.0.0.1:1/x", "--addr", "256.0.0.1:80"},
		{"serve", "extra"},
	} {
		if code, _, errOut := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, errOut)
		}
	}
}
