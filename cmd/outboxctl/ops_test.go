package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// A day in the life, through the CLI: enqueue, list, get, stats, a failing
// target's dead letters redriven, retention purged.
func TestOperatorCommands(t *testing.T) {
	d := pgtest.NewDB(t)
	url := d.URL
	cli := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return runCLIStdin(t, stdin, append(args[:1:1], append([]string{"--database-url", url}, args[1:]...)...)...)
	}
	mustOK := func(code int, out, errOut string) string {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		return out
	}

	// enqueue: payload from stdin and from --payload, a dedupe key.
	out := mustOK(cli(`{"order": 1}`, "enqueue", "--lane", "orders", "--target", "webhook", "--dedupe-key", "o-1"))
	if !strings.HasPrefix(out, "enqueued message ") {
		t.Fatalf("enqueue: %q", out)
	}
	out = mustOK(cli("", "enqueue", "--lane", "orders", "--target", "webhook", "--dedupe-key", "o-1", "--payload", `{ "order" : 1 }`))
	if !strings.HasPrefix(out, "deduplicated") {
		t.Fatalf("same draft again: %q", out)
	}
	for i := range 3 {
		mustOK(cli("", "enqueue", "--lane", "orders", "--target", "webhook", "--payload", `{"n":`+strconv.Itoa(i)+`}`, "--max-attempts", "1"))
	}
	if code, _, errOut := cli("", "enqueue", "--lane", "orders", "--target", "webhook", "--dedupe-key", "o-1", "--payload", `{"order":2}`); code != 2 || !strings.Contains(errOut, "dedupe key") {
		t.Fatalf("conflicting draft: exit %d, %q", code, errOut)
	}

	// list --json, paged.
	var page []messageJSON
	out = mustOK(cli("", "list", "--json", "--limit", "3"))
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page) != 3 {
		t.Fatalf("list: %v %s", err, out)
	}
	var rest []messageJSON
	out = mustOK(cli("", "list", "--json", "--after", page[2].ID))
	if err := json.Unmarshal([]byte(out), &rest); err != nil || len(rest) != 1 {
		t.Fatalf("next page: %v %s", err, out)
	}
	if out = mustOK(cli("", "list", "--status", "pending")); !strings.Contains(out, "orders") || !strings.Contains(out, "ATTEMPTS") {
		t.Fatalf("list table: %s", out)
	}

	// The webhook fails: three messages die (max attempts 1).
	store := outbox.NewPostgresStore(d.Pool)
	got, err := store.Claim(context.Background(), outbox.ClaimRequest{Lane: "orders", Target: "webhook", Limit: 10, Lease: time.Minute, ConsumerID: "relay"})
	if err != nil || len(got) != 4 {
		t.Fatalf("claim: %d %v", len(got), err)
	}
	var deadID string
	for _, m := range got {
		if m.DedupeKey == "o-1" {
			if ok, _ := store.Ack(context.Background(), m.ID, m.ClaimToken); !ok {
				t.Fatal("ack")
			}
			continue
		}
		if out, _ := store.Nack(context.Background(), m.ID, m.ClaimToken, "503 from webhook", time.Time{}); out != outbox.NackDeadLettered {
			t.Fatalf("nack: %v", out)
		}
		deadID = m.ID
	}

	// get shows the error and the payload.
	out = mustOK(cli("", "get", deadID))
	if !strings.Contains(out, "503 from webhook") || !strings.Contains(out, "dead_letter") || !strings.Contains(out, `"n":`) {
		t.Fatalf("get: %s", out)
	}
	if code, _, errOut := cli("", "get", "424242"); code != 2 || !strings.Contains(errOut, "no message with id") {
		t.Fatalf("get unknown: exit %d %q", code, errOut)
	}

	// stats: three dead letters.
	var st []statJSON
	out = mustOK(cli("", "stats", "--json", "--delivered"))
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 || st[0].DeadLetters != 3 || st[0].Delivered == nil || *st[0].Delivered != 1 {
		t.Fatalf("stats: %v %s", err, out)
	}
	if out = mustOK(cli("", "stats")); !strings.Contains(out, "EXPIRED LEASES") {
		t.Fatalf("stats table: %s", out)
	}

	// redrive one by id (and one that is not dead), then the rest by target.
	out = mustOK(cli("", "redrive", deadID, page[0].ID))
	if !strings.Contains(out, "redrove 1") || !strings.Contains(out, "not dead letters, left alone: "+page[0].ID) {
		t.Fatalf("redrive ids: %s", out)
	}
	out = mustOK(cli("", "redrive", "--lane", "orders", "--target", "webhook", "--error-contains", "503"))
	if !strings.Contains(out, "redrove 2") {
		t.Fatalf("redrive by target: %s", out)
	}

	// purge: the delivered one, after a dry run.
	time.Sleep(10 * time.Millisecond)
	out = mustOK(cli("", "purge", "--older-than", "1ms", "--dry-run"))
	if !strings.Contains(out, "would delete 1 delivered messages") {
		t.Fatalf("dry run: %s", out)
	}
	out = mustOK(cli("", "purge", "--older-than", "1ms"))
	if !strings.Contains(out, "deleted 1 delivered messages") {
		t.Fatalf("purge: %s", out)
	}
	// Purging freed the dedupe key.
	if out = mustOK(cli("", "enqueue", "--lane", "orders", "--target", "webhook", "--dedupe-key", "o-1", "--payload", `{"order":2}`)); !strings.HasPrefix(out, "enqueued") {
		t.Fatalf("key not freed: %s", out)
	}

	// --scope works in its own scope.
	mustOK(cli("", "enqueue", "--scope", "tenant-9", "--lane", "l", "--target", "t", "--payload", "{}"))
	out = mustOK(cli("", "list", "--scope", "tenant-9", "--json"))
	var scoped []messageJSON
	if err := json.Unmarshal([]byte(out), &scoped); err != nil || len(scoped) != 1 {
		t.Fatalf("scoped list: %s", out)
	}
}

// Bad input exits 2 with a message, before anything is written.
func TestOperatorCommandsRefuseBadInput(t *testing.T) {
	d := pgtest.NewDB(t)
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{`{"a":`, []string{"enqueue", "--lane", "l", "--target", "t"}, "invalid payload"},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", `"\u0000"`}, "invalid payload"},
		{"", []string{"enqueue", "--target", "t", "--payload", "{}"}, "invalid lane"},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--available-at", "tomorrow"}, "--available-at"},
		{"", []string{"purge", "--older-than", "-5h"}, "older_than"},
		{"", []string{"purge"}, "--older-than is required"},
		{"", []string{"list", "--status", "done"}, "invalid status"},
		{"", []string{"list", "--after", "abc"}, "after_id"},
		{"", []string{"list", "--limit", "0"}, "--limit"},
		{"", []string{"get"}, "one message id"},
		{"", []string{"redrive"}, "give ids, or a lane and target"},
		{"", []string{"redrive", "--lane", "l"}, "invalid target"},
		{"", []string{"stats", "--scope", "bad\nscope"}, "invalid scope"},
		{"", []string{"stats", "--watch", "1ns"}, "--watch"},
	} {
		args := append(c.args[:1:1], append([]string{"--database-url", d.URL}, c.args[1:]...)...)
		code, _, errOut := runCLIStdin(t, c.stdin, args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
	var n int
	if err := d.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pgoutbox_message").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows written by refused commands", n)
	}
	// An unreachable server: exit 2, the host named, the password not.
	code, _, errOut := runCLI(t, "stats", "--database-url", "postgres://ops:hunter2@127.0.0.1:1/db?connect_timeout=2")
	if code != 2 || !strings.Contains(errOut, "127.0.0.1:1") || strings.Contains(errOut, "hunter2") {
		t.Errorf("unreachable: exit %d, %q", code, errOut)
	}
}

// Every command explains itself.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		code, _, errOut := runCLI(t, c.name, "--help")
		if code != 0 || !strings.Contains(errOut, "Usage: outboxctl "+c.name) || !strings.Contains(errOut, "-database-url") {
			t.Errorf("%s --help: exit %d\n%s", c.name, code, errOut)
		}
	}
	code, _, errOut := runCLI(t, "--help")
	for _, c := range commands() {
		if code != 0 || !strings.Contains(errOut, c.name) {
			t.Errorf("outboxctl --help lacks %s", c.name)
		}
	}
}

func TestStatsWatchRefreshesUntilInterrupted(t *testing.T) {
	d := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var out, errOut strings.Builder
	code := run(ctx, []string{"stats", "--database-url", d.URL, "--watch", "200ms"}, stdio{in: strings.NewReader(""), out: &out, errOut: &errOut})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "LANE"); n < 3 {
		t.Fatalf("%d refreshes in 700ms at 200ms:\n%s", n, out.String())
	}
}
