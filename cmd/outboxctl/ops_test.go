package main

import (
	"context"
	"encoding/json"
	"maps"
	"regexp"
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
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--header", "novalue"}, `invalid value "novalue" for flag -header: want NAME=VALUE, got "novalue" (no '=')`},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--header", "=v"}, `flag -header: want NAME=VALUE, got "=v" (no name)`},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--header", "a=1", "--header", "a=2"}, `header "a" given twice with different values ("1" and "2")`},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--header", " =v"}, `invalid headers[" "]: the name must not be blank`},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--header", "a=\xff"}, `invalid headers["a"]: must be valid UTF-8`},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--ordering-key", ""}, "--ordering-key: give a key"},
		{"", []string{"enqueue", "--lane", "l", "--target", "t", "--payload", "{}", "--ordering-key", " "}, "invalid ordering_key: must not be blank"},
		{"", []string{"list", "--ordering-key", " "}, "invalid ordering_key"},
		{"", []string{"list", "--ordering-key", ""}, "--ordering-key: give a key"},
		{"", []string{"release-key", "--lane", "l", "--target", "t"}, "want exactly one ordering key"},
		{"", []string{"release-key", "--lane", "l", "--target", "t", "a", "b"}, "want exactly one ordering key"},
		{"", []string{"release-key", "--lane", "l", "k"}, "invalid target: is required"},
		{"", []string{"release-key", "--lane", "l", "--target", "t", " "}, "invalid ordering_key: must not be blank"},
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

// Ordered delivery and headers, through the CLI: enqueue with a key and
// headers, list and get show them, a dead-lettered head holds its key until
// release-key lets the next message go.
func TestOrderingKeysAndHeaders(t *testing.T) {
	d := pgtest.NewDB(t)
	ctx := context.Background()
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLIStdin(t, "", append(args[:1:1], append([]string{"--database-url", d.URL}, args[1:]...)...)...)
	}
	mustOK := func(code int, out, errOut string) string {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		return out
	}
	enqueue := func(args ...string) string {
		t.Helper()
		var res struct{ Message messageJSON }
		out := mustOK(cli(append([]string{"enqueue", "--json", "--lane", "ledger", "--target", "bank"}, args...)...))
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("enqueue output: %v\n%s", err, out)
		}
		return res.Message.ID
	}
	const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var acct1 []string
	for i := range 3 {
		acct1 = append(acct1, enqueue("--ordering-key", "acct-1", "--payload", `{"n":`+strconv.Itoa(i)+`}`,
			"--header", "traceparent="+trace, "--header", "x-query=a=b&c", "--header", "content-type=application/json",
			"--header", "x-query=a=b&c")) // the same header twice with the same value is one header
	}
	other := enqueue("--ordering-key", "acct 2", "--payload", `{}`)
	unkeyed := enqueue("--payload", `{}`)

	// list --ordering-key: the key's messages only, in order, with headers.
	var page []messageJSON
	out := mustOK(cli("list", "--json", "--ordering-key", "acct-1"))
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page) != 3 {
		t.Fatalf("list --ordering-key: %v\n%s", err, out)
	}
	wantHeaders := map[string]string{"traceparent": trace, "x-query": "a=b&c", "content-type": "application/json"}
	for i, m := range page {
		if m.ID != acct1[i] || m.OrderingKey != "acct-1" || !maps.Equal(m.Headers, wantHeaders) {
			t.Errorf("list --json [%d]: %+v", i, m)
		}
	}
	if !strings.Contains(out, `"ordering_key": "acct-1"`) || !strings.Contains(out, `"headers": {`) {
		t.Errorf("list --json lacks ordering_key or headers:\n%s", out)
	}
	// The table has an ORDERING KEY column: the key, or "-" for none.
	out = mustOK(cli("list"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.Contains(lines[0], "ORDERING KEY") {
		t.Fatalf("list table:\n%s", out)
	}
	col := strings.Index(lines[0], "ORDERING KEY")
	for i, want := range []string{"acct-1", "acct-1", "acct-1", "acct 2", "-"} {
		if got := lines[i+1][col:]; !strings.HasPrefix(got, want+"  ") {
			t.Errorf("list row %d: ordering key column %q, want %q\n%s", i, got, want, out)
		}
	}

	// get: the key and the headers, sorted by name; --json has them too.
	out = mustOK(cli("get", acct1[0]))
	if !regexp.MustCompile(`\nordering key: +acct-1\n`).MatchString(out) {
		t.Errorf("get lacks the ordering key:\n%s", out)
	}
	if want := "headers:\n  content-type: application/json\n  traceparent: " + trace + "\n  x-query: a=b&c\npayload:"; !strings.Contains(out, want) {
		t.Errorf("get: headers not shown sorted:\n%s", out)
	}
	var got messageJSON
	out = mustOK(cli("get", "--json", acct1[0]))
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.OrderingKey != "acct-1" || !maps.Equal(got.Headers, wantHeaders) {
		t.Errorf("get --json: %v\n%s", err, out)
	}
	if out = mustOK(cli("get", unkeyed)); strings.Contains(out, "ordering key") || strings.Contains(out, "headers") {
		t.Errorf("get of a message without key or headers:\n%s", out)
	}
	if out = mustOK(cli("get", other)); !regexp.MustCompile(`\nordering key: +acct 2\n`).MatchString(out) {
		t.Errorf("get of key %q:\n%s", "acct 2", out)
	}

	// The relay's first claim takes one message per key; acct-1's head dies.
	store := outbox.NewPostgresStore(d.Pool)
	claim := func() []outbox.Message {
		t.Helper()
		msgs, err := store.Claim(ctx, outbox.ClaimRequest{Lane: "ledger", Target: "bank", Limit: 10, Lease: time.Minute, ConsumerID: "relay"})
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	first := claim()
	if len(first) != 3 {
		t.Fatalf("first claim: %d messages, want one per key and the unkeyed one", len(first))
	}
	for _, m := range first {
		if m.ID == acct1[0] {
			if ok, err := store.DeadLetter(ctx, m.ID, m.ClaimToken, "400 from the bank"); !ok || err != nil {
				t.Fatalf("dead letter: %v %v", ok, err)
			}
			continue
		}
		if ok, err := store.Ack(ctx, m.ID, m.ClaimToken); !ok || err != nil {
			t.Fatalf("ack: %v %v", ok, err)
		}
	}
	if held := claim(); len(held) != 0 {
		t.Fatalf("the dead-lettered head does not hold its key: claimed %d", len(held))
	}
	// get says the dead letter holds its key, and --json that it is not
	// released; a pending keyed message says nothing about holding.
	getJSON := func(id string) (messageJSON, string) {
		t.Helper()
		var m messageJSON
		out := mustOK(cli("get", "--json", id))
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("get --json %s: %v\n%s", id, err, out)
		}
		return m, out
	}
	holdsRow := regexp.MustCompile(`\nholds key: +(.*)\n`)
	out = mustOK(cli("get", acct1[0]))
	if m := holdsRow.FindStringSubmatch(out); m == nil || !strings.HasPrefix(m[1], "yes: the key's later messages wait") {
		t.Errorf("get of the dead letter holding its key:\n%s", out)
	}
	if m, out := getJSON(acct1[0]); m.Status != outbox.StatusDeadLetter || m.OrderingKeyReleased ||
		!strings.Contains(out, `"ordering_key_released": false`) {
		t.Errorf("get --json of the dead letter holding its key:\n%s", out)
	}
	if out = mustOK(cli("get", acct1[1])); strings.Contains(out, "holds key") {
		t.Errorf("get of a pending message:\n%s", out)
	}

	// release-key: the dead letter stops holding the key, the next message goes.
	out = mustOK(cli("release-key", "--lane", "ledger", "--target", "bank", "acct-1"))
	if want := "released 1 dead letter of ordering key acct-1; its next message, " + acct1[1] + ", is now the head\n"; out != want {
		t.Errorf("release-key: %q, want %q", out, want)
	}
	if next := claim(); len(next) != 1 || next[0].ID != acct1[1] {
		t.Fatalf("after the release: claimed %v, want %s", next, acct1[1])
	}
	if m, err := store.Get(ctx, acct1[0]); err != nil || m.Status != outbox.StatusDeadLetter {
		t.Errorf("the released dead letter: %v %v", m.Status, err)
	}
	out = mustOK(cli("get", acct1[0]))
	if m := holdsRow.FindStringSubmatch(out); m == nil || m[1] != "no: the key was released, its later messages go on" {
		t.Errorf("get of the released dead letter:\n%s", out)
	}
	if m, out := getJSON(acct1[0]); !m.OrderingKeyReleased || !strings.Contains(out, `"ordering_key_released": true`) {
		t.Errorf("get --json of the released dead letter:\n%s", out)
	}
	// Nothing holds it now: reported, not an error; flags after the key work too.
	out = mustOK(cli("release-key", "acct-1", "--lane", "ledger", "--target", "bank"))
	if want := "no dead letter holds ordering key acct-1 of ledger / bank: nothing released\n"; out != want {
		t.Errorf("second release: %q", out)
	}
	var rel struct {
		Released    int    `json:"released"`
		OrderingKey string `json:"ordering_key"`
	}
	out = mustOK(cli("release-key", "--json", "--lane", "ledger", "--target", "bank", "acct 2"))
	if err := json.Unmarshal([]byte(out), &rel); err != nil || rel.Released != 0 || rel.OrderingKey != "acct 2" {
		t.Errorf("release-key --json: %v %s", err, out)
	}
}

// Keys and header values are shown so that an operator can copy them
// exactly, and table cells stay on one line in their column.
func TestKeysShowExactlyAndCellsStayInTheirColumn(t *testing.T) {
	for in, want := range map[string]string{
		"acct-1":      "acct-1",
		"acct 2":      "acct 2",
		" padded":     `" padded"`,
		"tab\there":   `"tab\there"`,
		"line\nbreak": `"line\nbreak"`,
		"ünïcödé ✓":   "ünïcödé ✓",
		"":            `""`,
	} {
		if got := quoteIfNeeded(in); got != want {
			t.Errorf("quoteIfNeeded(%q) = %s, want %s", in, got, want)
		}
	}
	if got := clip("a\tb\nc\rd", 20); got != "a b c d" {
		t.Errorf("clip kept control characters: %q", got)
	}
	if got := clip("abcdefghij", 5); got != "abcd…" {
		t.Errorf("clip: %q", got)
	}
}
