package outbox

import (
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/msgid"
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

// A claim formats its messages' ids and tokens into one string and cuts it;
// each must read as msgid.Format and pgtype.UUID.String would have written it.
func TestClaimTextCutsWhatFormatWrites(t *testing.T) {
	tok := func(b byte) pgtype.UUID {
		var u pgtype.UUID
		for i := range u.Bytes {
			u.Bytes[i] = b + byte(i)*17
		}
		u.Valid = true
		return u
	}
	rows := []db.MessageClaimRow{
		{ID: 7, Status: string(StatusClaimed), ClaimToken: tok(0)},
		{ID: 12345, Status: string(StatusDelivered), ClaimToken: tok(1)},
		{ID: 9223372036854775807, Status: string(StatusClaimed), ClaimToken: tok(0xf0)},
		{ID: 100, Status: string(StatusClaimed)},
		{ID: 4242, Status: string(StatusClaimed), ClaimToken: tok(9)},
	}
	text := claimText(rows)
	for _, row := range rows {
		if Status(row.Status) != StatusClaimed {
			continue
		}
		var id, token string
		id, token, text = cutClaimText(text, row.ID, row.ClaimToken)
		if id != msgid.Format(row.ID) || token != row.ClaimToken.String() {
			t.Errorf("row %d: got %q %q, want %q %q", row.ID, id, token, msgid.Format(row.ID), row.ClaimToken.String())
		}
	}
	if text != "" {
		t.Errorf("%q left over", text)
	}
}
