package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
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

func TestNackOutcomeString(t *testing.T) {
	for o, want := range map[NackOutcome]string{NackRequeued: "requeued", NackDeadLettered: "dead_lettered", NackLostClaim: "lost_claim", 0: "NackOutcome(0)"} {
		if o.String() != want {
			t.Errorf("%d: %q", int(o), o.String())
		}
	}
}

func TestParseToken(t *testing.T) {
	if _, ok := parseToken("8d6b8a34-1f8b-4c4e-9d4e-3b1f7c1a2b3c"); !ok {
		t.Error("canonical token refused")
	}
	for _, s := range []string{"8d6b8a341f8b4c4e9d4e3b1f7c1a2b3c", "8d6b8a34x1f8b-4c4e-9d4e-3b1f7c1a2b3c", "zz6b8a34-1f8b-4c4e-9d4e-3b1f7c1a2b3c", ""} {
		if _, ok := parseToken(s); ok {
			t.Errorf("token %q accepted", s)
		}
	}
}
