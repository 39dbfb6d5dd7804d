package outbox

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Validate reports whether d can be enqueued as is. The error wraps
// ErrValidation and, through *ValidationError, names the field.
func (d Draft) Validate() error {
	if err := d.validate(); err != nil {
		return fmt.Errorf("outbox: draft: %w", err)
	}
	return nil
}

func (d Draft) validate() *ValidationError {
	if err := checkName("lane", d.Lane, MaxLaneBytes); err != nil {
		return err
	}
	if err := checkName("target", d.Target, MaxTargetBytes); err != nil {
		return err
	}
	if d.DedupeKey != "" {
		if err := checkText("dedupe_key", d.DedupeKey, MaxDedupeKeyBytes); err != nil {
			return err
		}
	}
	if d.MaxAttempts < 0 {
		return invalid("max_attempts", "must not be negative (0 means the default, %d), got %d", DefaultMaxAttempts, d.MaxAttempts)
	}
	if d.MaxAttempts > maxInt32 {
		return invalid("max_attempts", "must be at most %d, got %d", maxInt32, d.MaxAttempts)
	}
	if !d.AvailableAt.IsZero() {
		if err := checkTime("available_at", d.AvailableAt); err != nil {
			return err
		}
	}
	return checkPayload(d.Payload)
}

// maxAttempts resolves the zero value to the default.
func (d Draft) maxAttempts() int32 {
	if d.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return int32(d.MaxAttempts) //nolint:gosec // validate bounds it by maxInt32
}

func (r ClaimRequest) validate() *ValidationError {
	if err := checkName("lane", r.Lane, MaxLaneBytes); err != nil {
		return err
	}
	if err := checkName("target", r.Target, MaxTargetBytes); err != nil {
		return err
	}
	if err := checkName("consumer_id", r.ConsumerID, MaxConsumerIDBytes); err != nil {
		return err
	}
	if r.Limit < 1 || r.Limit > MaxClaimLimit {
		return invalid("limit", "must be between 1 and %d, got %d", MaxClaimLimit, r.Limit)
	}
	return checkLease(r.Lease)
}

// listLimit resolves and bounds the limit of a listing.
func listLimit(limit int) (int32, *ValidationError) {
	switch {
	case limit < 0:
		return 0, invalid("limit", "must not be negative, got %d", limit)
	case limit == 0:
		return DefaultListLimit, nil
	case limit > MaxListLimit:
		return MaxListLimit, nil
	}
	return int32(limit), nil
}

// ValidateScope reports whether s can name a scope: not blank, at most
// MaxScopeBytes of UTF-8, no control characters.
func ValidateScope(s string) error { return asError(checkName("scope", s, MaxScopeBytes)) }

const maxInt32 = 1<<31 - 1

// checkText accepts any non-blank UTF-8 string Postgres's text can store (no
// NUL bytes) up to maxBytes bytes.
func checkText(field, s string, maxBytes int) *ValidationError {
	if strings.TrimSpace(s) == "" {
		if s == "" {
			return invalid(field, "is required")
		}
		return invalid(field, "must not be blank")
	}
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid(field, "must not contain NUL bytes")
	}
	if len(s) > maxBytes {
		return invalid(field, "must be at most %d bytes, got %d", maxBytes, len(s))
	}
	return nil
}

// checkName is checkText for identifiers that appear in logs and operator
// output, which additionally must not hold control characters.
func checkName(field, s string, maxBytes int) *ValidationError {
	if err := checkText(field, s, maxBytes); err != nil {
		return err
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, "must not contain control characters (found %U)", r)
		}
	}
	return nil
}

// checkTime keeps times within years 1 to 9999: well inside Postgres's
// timestamptz (4713 BC to 294276 AD) and inside what Go formats and parses
// round-trip.
func checkTime(field string, t time.Time) *ValidationError {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return invalid(field, "must be between years 1 and 9999, got %s", t.Format(time.RFC3339))
	}
	return nil
}

// cleanReason makes a nack reason storable instead of refusing it: a failing
// consumer must always be able to give its message back. NUL bytes are
// dropped, invalid UTF-8 is replaced, and the result is cut to MaxErrorBytes
// on a rune boundary.
func cleanReason(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= MaxErrorBytes {
		return s
	}
	cut := MaxErrorBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Validate reports whether r is a claim request Claim accepts. The error
// wraps ErrValidation and names the field.
func (r ClaimRequest) Validate() error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("outbox: claim request: %w", err)
	}
	return nil
}

// CleanReason returns reason as Nack and DeadLetter store it: NUL bytes
// dropped, invalid UTF-8 replaced, cut to MaxErrorBytes on a rune boundary.
func CleanReason(reason string) string { return cleanReason(reason) }

// Validate reports whether f is a filter List accepts.
func (f ListFilter) Validate() error { return asError(f.check()) }

func (f ListFilter) check() *ValidationError {
	if f.Status != "" && !f.Status.Valid() {
		return invalid("status", "must be one of pending, claimed, delivered, dead_letter (or empty for all), got %q", f.Status)
	}
	if f.Lane != "" {
		if err := checkName("lane", f.Lane, MaxLaneBytes); err != nil {
			return err
		}
	}
	if f.Target != "" {
		if err := checkName("target", f.Target, MaxTargetBytes); err != nil {
			return err
		}
	}
	if f.AfterID != "" {
		if _, ok := parseID(f.AfterID); !ok {
			return invalid("after_id", "%q is not a message id", f.AfterID)
		}
	}
	if f.DedupeKey != "" {
		if err := checkText("dedupe_key", f.DedupeKey, MaxDedupeKeyBytes); err != nil {
			return err
		}
	}
	if f.ErrorContains != "" {
		if err := checkText("error_contains", f.ErrorContains, MaxErrorBytes); err != nil {
			return err
		}
	}
	_, err := listLimit(f.Limit)
	return err
}

// EffectiveLimit is the number of messages List returns at most for f:
// DefaultListLimit for 0, capped at MaxListLimit.
func (f ListFilter) EffectiveLimit() int {
	n, _ := listLimit(f.Limit)
	return int(n)
}

// ValidateLease reports whether lease is one Claim and ExtendLease accept.
func ValidateLease(lease time.Duration) error { return asError(checkLease(lease)) }

// ValidateRetryDelay reports whether delay is one NackAfter accepts.
func ValidateRetryDelay(delay time.Duration) error { return asError(checkRetryDelay(delay)) }

// ValidateRetryTime reports whether t, a non-zero retry time, is one Nack
// accepts.
func ValidateRetryTime(t time.Time) error { return asError(checkTime("retry_at", t)) }

// ValidateReceipt reports whether an id and claim token are present: blank
// ones are a caller's bug. Any other value is accepted, and simply matches no
// claim when it is not one.
func ValidateReceipt(id, claimToken string) error { return asError(checkReceipt(id, claimToken)) }

// asError keeps a nil *ValidationError from becoming a non-nil error.
func asError(e *ValidationError) error {
	if e == nil {
		return nil
	}
	return e
}

func checkLease(lease time.Duration) *ValidationError {
	if lease < MinLease || lease > MaxLease {
		return invalid("lease", "must be between %s and %s, got %s", MinLease, MaxLease, lease)
	}
	return nil
}

func checkRetryDelay(delay time.Duration) *ValidationError {
	if delay < 0 || delay > MaxRetryDelay {
		return invalid("delay", "must be between 0 and %s, got %s", MaxRetryDelay, delay)
	}
	return nil
}

func checkReceipt(id, claimToken string) *ValidationError {
	if err := checkID("id", id); err != nil {
		return err
	}
	if strings.TrimSpace(claimToken) == "" {
		return invalid("claim_token", "is required")
	}
	return nil
}

// checkID refuses a blank message id; any other value is looked up (and
// simply not found when it is not one).
func checkID(field, id string) *ValidationError {
	if strings.TrimSpace(id) == "" {
		return invalid(field, "is required")
	}
	return nil
}

// ValidateID reports whether a message id is present.
func ValidateID(id string) error { return asError(checkID("id", id)) }

// Validate reports whether r is a purge request Purge accepts.
func (r PurgeRequest) Validate() error { return asError(r.check()) }

// Statuses returns the statuses r purges.
func (r PurgeRequest) Statuses() []Status {
	if r.DeadLetters {
		return []Status{StatusDelivered, StatusDeadLetter}
	}
	return []Status{StatusDelivered}
}
