package validate

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPayloadMatchesJSONB(t *testing.T) {
	ok := []string{
		`0`, `-0.0`, `1e131071`, `9.9999e131071`, `1e-16383`, `0.1e-16382`, `0e999999`, `0.000e-16380`,
		`1E+2`, `"\uD83D\uDE00"`, `"\\u0000"`, `"\u0001"`, `{"a":[{"b":null}]}`,
		strings.Repeat("[", MaxPayloadDepth) + strings.Repeat("]", MaxPayloadDepth),
		`"` + strings.Repeat("0", 200000) + `"`,
		`0.` + strings.Repeat("0", 16383),
	}
	for _, p := range ok {
		if err := Payload(json.RawMessage(p)); err != nil {
			t.Errorf("%.50s: %v", p, err)
		}
	}
	bad := []string{
		``, ` `, `{`, `nul`, `"\u0000"`, `{"\u0000": 1}`, `"\uD83D"`, `"\uDE00"`, `"\uD83D\u0041"`, `"\uD83Dx"`,
		`"\uD83D\uD83D\uDE00"`, `"\uD83D\n"`,
		`1e131072`, `10e131071`, `1e-16384`, `0.1e-16383`, `0e-16384`, `1e1073741823`, `1e-99999999999999999999`,
		`0.` + strings.Repeat("0", 16384), `1` + strings.Repeat("0", 131072),
		strings.Repeat("[", MaxPayloadDepth+1) + strings.Repeat("]", MaxPayloadDepth+1),
		"\"\xc3\x28\"",
	}
	for _, p := range bad {
		if err := Payload(json.RawMessage(p)); err == nil {
			t.Errorf("%.50q accepted", p)
		}
	}
}

// The binary jsonb form can be several times larger than the text: an array
// of 5,000 arrays of 5,000 zeros is 50 MB of text, under MaxPayloadBytes,
// but about 300 MB as jsonb, over the 256 MiB a jsonb container may hold.
// Postgres refused it with SQLSTATE 54000 after 7.5 s, aborting the
// caller's transaction; validation must refuse it instead.
func TestPayloadRefusesWhatJSONBCannotHold(t *testing.T) {
	inner := "[" + strings.Repeat("0,", 4999) + "0]"
	huge := "[" + strings.Repeat(inner+",", 4999) + inner + "]"
	if len(huge) > MaxPayloadBytes {
		t.Fatalf("test payload %d bytes is over MaxPayloadBytes", len(huge))
	}
	err := Payload(json.RawMessage(huge))
	if err == nil || err.Field != "payload" || !strings.Contains(err.Reason, "jsonb") {
		t.Fatalf("50 MB of nested zeros: %v", err)
	}
	// A payload of the same text size that jsonb holds is accepted: a long
	// string is stored as its bytes.
	str := `"` + strings.Repeat("x", 50_000_000) + `"`
	if err := Payload(json.RawMessage(str)); err != nil {
		t.Errorf("a 50 MB string: %v", err)
	}
}

func TestNumericBytes(t *testing.T) {
	// Sizes of numeric datums as Postgres builds them (pg_column_size of
	// the numeric value, with its 4-byte varlena header).
	for text, want := range map[string]int64{
		"0": 6, "1": 8, "12345": 10, "0.5": 8, "1e100": 8, "-7.25": 10, "1.0000000000000000000000000000000000000000000000000000000000000000001": 4 + 4 + 2*18,
	} {
		_, got, err := scanNumber([]byte(text))
		if err != nil || got != want {
			t.Errorf("%s: %d bytes (%v), want %d", text, got, err, want)
		}
	}
}

func TestCleanReason(t *testing.T) {
	long := strings.Repeat("日本", MaxErrorBytes) // 3-byte runes
	got := CleanReason(long)
	if len(got) > MaxErrorBytes || !utf8.ValidString(got) || !strings.HasPrefix(long, got) || len(got) < MaxErrorBytes-3 {
		t.Errorf("cut to %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := CleanReason("a\x00b\xffc"); got != "ab\uFFFDc" {
		t.Errorf("got %q", got)
	}
}
