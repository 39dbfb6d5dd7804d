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

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLIStdin(t, "", args...)
}

func runCLIStdin(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, errOut: &errOut})
	return code, out.String(), errOut.String()
}

func TestMigrateCommands(t *testing.T) {
	d := pgtest.NewEmptyDB(t, "template1")
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"version"}, "0"},
		{[]string{"up-to", "2"}, "applied 00002_pgoutbox_ordering_headers.sql"},
		{[]string{"version"}, "2"},
		{[]string{"up"}, "applied 00004_pgoutbox_fillfactor.sql"},
		{[]string{"up"}, "schema is up to date"},
		{[]string{"version"}, "4"},
		{[]string{"status"}, "applied"},
		{[]string{"down"}, "rolled back 00004_pgoutbox_fillfactor.sql"},
		{[]string{"version"}, "3"},
	}
	for i, s := range steps {
		args := append([]string{"migrate", "--database-url", d.URL}, s.args...)
		if i%2 == 1 { // flags after the subcommand's arguments work too
			args = append(append([]string{"migrate"}, s.args...), "--database-url", d.URL)
		}
		code, out, errOut := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, s.want) {
			t.Fatalf("migrate %v: exit %d, stdout %q, stderr %q; want %q", s.args, code, out, errOut, s.want)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"migrate"},
		{"migrate", "--database-url", "postgres://x@127.0.0.1:1/db", "sideways"},
		{"migrate", "--database-url", "not a url ://", "up"},
		{"migrate", "--database-url", "", "up"},
		{"migrate", "--no-such-flag", "up"},
		{"bench", "--scenarios", "enqueue"},
		{"bench", "--database-url", "postgres://x@127.0.0.1:1/db", "--scenarios", "sideways"},
		{"demo"},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "migrate", "--help"); code != 0 || !strings.Contains(errOut, "Usage: outboxctl migrate") {
		t.Errorf("migrate --help: exit %d, %q", code, errOut)
	}
}
