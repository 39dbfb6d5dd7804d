package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzDraftValidate checks that validation never panics, that every refusal
// wraps ErrValidation and names a field, and that what it accepts is storable:
// valid UTF-8 without NUL in every text field, JSON in the payload.
func FuzzDraftValidate(f *testing.F) {
	f.Add("canonical", "protocol_projector", []byte(`{"a":1}`), "", 0)
	f.Add(" ", "t", []byte(`null`), "k", 5)
	f.Add("l", "t", []byte(`"\u0000"`), "", 1)
	f.Add("l", "t", []byte(`"\ud800"`), "", 1)
	f.Add("l", "t", []byte(`1e131072`), "", 1)
	f.Add("l\x00", "t", []byte(`[]`), "k\x00", -1)
	f.Add("l", "t", []byte("\"\xff\""), "\xff", 2)
	f.Fuzz(func(t *testing.T, lane, target string, payload []byte, key string, maxAttempts int) {
		d := Draft{Lane: lane, Target: target, Payload: payload, DedupeKey: key, MaxAttempts: maxAttempts}
		err := d.Validate()
		if err != nil {
			var verr *ValidationError
			if !errors.Is(err, ErrValidation) || !errors.As(err, &verr) || verr.Field == "" {
				t.Fatalf("refusal %v does not wrap ErrValidation with a field", err)
			}
			return
		}
		for name, s := range map[string]string{"lane": lane, "target": target, "dedupe_key": key} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("accepted %s %q that Postgres text cannot store", name, s)
			}
		}
		if strings.TrimSpace(lane) == "" || strings.TrimSpace(target) == "" {
			t.Fatal("accepted a blank lane or target")
		}
		if !json.Valid(payload) || !utf8.Valid(payload) {
			t.Fatalf("accepted payload %q that is not JSON", payload)
		}
		if maxAttempts < 0 {
			t.Fatal("accepted negative max attempts")
		}
	})
}

// FuzzValidateScope checks the scope rules: not blank, at most MaxScopeBytes
// of UTF-8, no control characters; everything else is accepted.
func FuzzValidateScope(f *testing.F) {
	for _, s := range []string{"tenant-1", "", " ", "a\x00", "a\tb", "ünï", "\xff", strings.Repeat("s", MaxScopeBytes+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.TrimSpace(s) != "" && utf8.ValidString(s) && len(s) <= MaxScopeBytes &&
			!strings.ContainsFunc(s, unicode.IsControl)
		err := ValidateScope(s)
		if (err == nil) != want {
			t.Fatalf("ValidateScope(%q) = %v, want ok=%v", s, err, want)
		}
		if err != nil && !errors.Is(err, ErrValidation) {
			t.Fatalf("refusal %v does not wrap ErrValidation", err)
		}
	})
}
