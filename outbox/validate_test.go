package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func valid() Draft {
	return Draft{Lane: LaneCanonical, Target: TargetA2AWebhook, Payload: json.RawMessage(`{"a":1}`)}
}

func TestDraftValidateAcceptsValidDrafts(t *testing.T) {
	for _, d := range []Draft{
		valid(),
		{Lane: "l", Target: "t", Payload: json.RawMessage(`null`), DedupeKey: "k", MaxAttempts: 1, AvailableAt: time.Now()},
		{Lane: strings.Repeat("l", MaxLaneBytes), Target: "t", Payload: json.RawMessage(`[1,2]`), DedupeKey: strings.Repeat("k", MaxDedupeKeyBytes)},
		{Lane: "l", Target: "t", Payload: json.RawMessage(` {"tab\tin":"key\nvalue"} `), DedupeKey: "line\nbreak is fine in a key"},
	} {
		if err := d.Validate(); err != nil {
			t.Errorf("%+v: %v", d, err)
		}
	}
}

func TestDraftValidateNamesTheField(t *testing.T) {
	cases := map[string]func(*Draft){
		"lane":         func(d *Draft) { d.Lane = "" },
		"target":       func(d *Draft) { d.Target = " \u00a0" }, // a non-breaking space is blank too
		"dedupe_key":   func(d *Draft) { d.DedupeKey = "\t" },
		"max_attempts": func(d *Draft) { d.MaxAttempts = -3 },
		"available_at": func(d *Draft) { d.AvailableAt = time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC) },
		"payload":      func(d *Draft) { d.Payload = json.RawMessage(`{"a":}`) },
	}
	for field, edit := range cases {
		d := valid()
		edit(&d)
		err := d.Validate()
		var verr *ValidationError
		if !errors.Is(err, ErrValidation) || !errors.As(err, &verr) || verr.Field != field {
			t.Errorf("%s: %v", field, err)
			continue
		}
		if !strings.Contains(err.Error(), field) {
			t.Errorf("%s: message %q does not name the field", field, err)
		}
	}
}

func TestCheckPayloadMatchesJSONB(t *testing.T) {
	ok := []string{
		`0`, `-0.0`, `1e131071`, `9.9999e131071`, `1e-16383`, `0.1e-16382`, `0e999999`, `0.000e-16380`,
		`1E+2`, `"\uD83D\uDE00"`, `"\\u0000"`, `"\u0001"`, `{"a":[{"b":null}]}`,
		strings.Repeat("[", MaxPayloadDepth) + strings.Repeat("]", MaxPayloadDepth),
		`"` + strings.Repeat("0", 200000) + `"`,
		`0.` + strings.Repeat("0", 16383),
	}
	for _, p := range ok {
		if err := checkPayload(json.RawMessage(p)); err != nil {
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
		if err := checkPayload(json.RawMessage(p)); err == nil {
			t.Errorf("%.50q accepted", p)
		}
	}
}

func TestClaimRequestValidate(t *testing.T) {
	good := ClaimRequest{Lane: "l", Target: "t", Limit: 1, Lease: MinLease, ConsumerID: "c"}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for field, edit := range map[string]func(*ClaimRequest){
		"lane":        func(r *ClaimRequest) { r.Lane = "\x00" },
		"target":      func(r *ClaimRequest) { r.Target = "" },
		"consumer_id": func(r *ClaimRequest) { r.ConsumerID = "a\x1bb" },
		"limit":       func(r *ClaimRequest) { r.Limit = MaxClaimLimit + 1 },
		"lease":       func(r *ClaimRequest) { r.Lease = MaxLease + 1 },
	} {
		r := good
		edit(&r)
		if err := r.validate(); err == nil || err.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func TestCleanReason(t *testing.T) {
	long := strings.Repeat("日本", MaxErrorBytes) // 3-byte runes
	got := cleanReason(long)
	if len(got) > MaxErrorBytes || !utf8.ValidString(got) || !strings.HasPrefix(long, got) || len(got) < MaxErrorBytes-3 {
		t.Errorf("cut to %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := cleanReason("a\x00b\xffc"); got != "ab\uFFFDc" {
		t.Errorf("got %q", got)
	}
}

func TestNackOutcomeString(t *testing.T) {
	for o, want := range map[NackOutcome]string{NackRequeued: "requeued", NackDeadLettered: "dead_lettered", NackLostClaim: "lost_claim", 0: "NackOutcome(0)"} {
		if o.String() != want {
			t.Errorf("%d: %q", int(o), o.String())
		}
	}
}

func TestParseTokenAndID(t *testing.T) {
	if _, ok := parseToken("8d6b8a34-1f8b-4c4e-9d4e-3b1f7c1a2b3c"); !ok {
		t.Error("canonical token refused")
	}
	for _, s := range []string{"8d6b8a341f8b4c4e9d4e3b1f7c1a2b3c", "8d6b8a34x1f8b-4c4e-9d4e-3b1f7c1a2b3c", "zz6b8a34-1f8b-4c4e-9d4e-3b1f7c1a2b3c", ""} {
		if _, ok := parseToken(s); ok {
			t.Errorf("token %q accepted", s)
		}
	}
	for _, s := range []string{"1", "42", "9223372036854775807"} {
		if _, ok := parseID(s); !ok {
			t.Errorf("id %q refused", s)
		}
	}
	for _, s := range []string{"0", "-1", "+1", "01", "1.0", "9223372036854775808", "x"} {
		if _, ok := parseID(s); ok {
			t.Errorf("id %q accepted", s)
		}
	}
}
