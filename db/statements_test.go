package db

import (
	"strings"
	"testing"
)

// The batch insert is written twice in queries/pgoutbox_message.sql: with ON
// CONFLICT for batches that carry dedupe keys, and without it for the rest
// (speculative insertion costs every row an arbiter probe and a WAL
// record). Nothing else may differ, or a fix to one would miss the other.
func TestInsertManyStatementsDifferOnlyInOnConflict(t *testing.T) {
	const clause = "ON CONFLICT (scope, lane, target, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING"
	plain, dedupe := statementBody(messageInsertMany), statementBody(messageInsertManyDeduplicated)
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

// statementBody is a generated statement without its name line and
// comments, its whitespace collapsed.
func statementBody(q string) string {
	var kept []string
	for _, line := range strings.Split(q, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		kept = append(kept, line)
	}
	return strings.Join(strings.Fields(strings.Join(kept, " ")), " ")
}
