package outbox

import (
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// parseToken decodes by hand what pgtype.UUID.Scan decodes with two
// allocations; it must accept exactly the canonical 36-character forms
// Scan accepts, and give the same bytes.
func FuzzParseTokenAgreesWithPgtype(f *testing.F) {
	for _, s := range []string{
		"0123abcd-EF45-6789-aBcD-0123456789ef", "01234567-89ab-cdef-0123-456789abcdef",
		"01234567-89ab-cdef-0123-456789abcdeg", "0123456--89ab-cdef-0123-456789abcdef",
		"01234567-89ab-cdef-0123-456789abcde-", "01234567-89ab-cdef-0123-456789abcdef0",
		"0123456789abcdef0123456789abcdef", "01234567-89ab-cdef-0123-456789abcd f", "", "x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseToken(s)
		var want pgtype.UUID
		err := want.Scan(s)
		wantOK := err == nil && len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-'
		if ok != wantOK || (ok && got != want) {
			t.Errorf("parseToken(%q) = %v, %v; pgtype: %v, %v (%v)", s, got, ok, want, wantOK, err)
		}
	})
}
