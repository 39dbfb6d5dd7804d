package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

func runDemoCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDemoRunsEndToEnd(t *testing.T) {
	d := pgtest.NewEmptyDB(t, "template1")
	code, out, errOut := runDemoCLI(t, "--database-url", d.URL, "--orders", "8")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"schema migrated",
		"rolled back",
		"deduplicated=true",
		"refused",
		"claimed message 1 and crashed",
		"delivered message 1 (order 1, attempt 2)",
		"failed message 2 (order 2, attempt 1/3): 503 Service Unavailable -> requeued",
		"dead letter: message 4 after 3 attempts",
		"orders committed: 7, with 7 outbox messages; orders rolled back: 1, of which 0 rows and 0 messages remain",
		"delivered: 6, dead letters: 1, pending: 0, claimed: 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// A second run against the same database works and stays in its own scope.
	if code, out, errOut := runDemoCLI(t, "--database-url", d.URL, "--orders", "3"); code != 0 ||
		!strings.Contains(out, "orders committed: 3, with 3 outbox messages") {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestDemoUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"--orders", "0"},
		{"--consumers", "1"},
		{"extra"},
		{"--no-such-flag"},
		{"--database-url", "not a url ://"},
		{"--database-url", "postgres://x@127.0.0.1:1/db"},
	} {
		code, _, errOut := runDemoCLI(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}
	if code, _, errOut := runDemoCLI(t, "--help"); code != 0 || !strings.Contains(errOut, "Usage: go run ./examples/demo") {
		t.Errorf("--help: exit %d, %q", code, errOut)
	}
}
