package outbox

import (
	"os"
	"strings"
	"testing"
)

// The batch insert is written twice in queries/pgoutbox_message.sql: with ON
// CONFLICT for batches that carry dedupe keys, and without it for the rest
// (speculative insertion costs every row an arbiter probe and a WAL
// record). Nothing else may differ, or a fix to one would miss the other.
func TestInsertManyStatementsDifferOnlyInOnConflict(t *testing.T) {
	const clause = "ON CONFLICT (scope, lane, target, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING"
	src, err := os.ReadFile("../queries/pgoutbox_message.sql")
	if err != nil {
		t.Fatal(err)
	}
	plain, dedupe := statement(t, string(src), "MessageInsertMany"), statement(t, string(src), "MessageInsertManyDeduplicated")
	if strings.Contains(plain, "ON CONFLICT") {
		t.Fatalf("MessageInsertMany has an ON CONFLICT clause:\n%s", plain)
	}
	if strings.Count(dedupe, clause) != 1 {
		t.Fatalf("MessageInsertManyDeduplicated does not hold %q once:\n%s", clause, dedupe)
	}
	if without := strings.Replace(dedupe, clause+" ", "", 1); without != plain {
		t.Errorf("the statements differ beyond the ON CONFLICT clause:\nMessageInsertMany:\n%s\nMessageInsertManyDeduplicated without it:\n%s", plain, without)
	}
}

// statement returns the named query of a sqlc source file without its
// comments, its whitespace collapsed.
func statement(t *testing.T, src, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(src, "-- name: "+name+" ")
	if !ok {
		t.Fatalf("no query %s", name)
	}
	rest, _, _ = strings.Cut(rest, "-- name: ")
	var kept []string
	for _, line := range strings.Split(rest, "\n")[1:] {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		kept = append(kept, line)
	}
	return strings.Join(strings.Fields(strings.Join(kept, " ")), " ")
}
