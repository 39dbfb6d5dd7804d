// Package validate owns the input rules that every pgoutbox store applies:
// the limits on names, keys, times, leases and payloads, the shape of a
// refusal (Error, which package outbox exports as ValidationError), and how a
// nack reason is made storable. outbox.PostgresStore and memstore.Store both
// call it, so the two cannot drift apart.
//
// Each check takes plain values and returns nil or an *Error naming the
// field, as callers know it ("lane", "payload", "receipts[3].id", ...).
package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on inputs. They keep every value storable and indexable (a btree
// entry must stay well under Postgres's 2704-byte limit) and every request
// bounded. Package outbox exports them under the same names.
const (
	MaxLaneBytes        = 255
	MaxTargetBytes      = 255
	MaxDedupeKeyBytes   = 1024
	MaxOrderingKeyBytes = 1024
	MaxHeaderNameBytes  = 255
	MaxHeadersBytes     = 64 << 10
	MaxScopeBytes       = 512
	MaxConsumerIDBytes  = 255
	MaxPayloadBytes     = 64 << 20
	MaxPayloadDepth     = 1000
	MaxClaimLimit       = 10_000
	MaxLease            = 24 * time.Hour
	MinLease            = time.Millisecond
	DefaultListLimit    = 100
	MaxListLimit        = 1000
	MaxErrorBytes       = 4096
	MaxRetryDelay       = 365 * 24 * time.Hour
	MaxBatch            = 10_000
	MaxInt32            = 1<<31 - 1
)

// ErrValidation is wrapped by every refusal.
var ErrValidation = errors.New("invalid input")

// Error names the input that was refused and why. It wraps ErrValidation.
type Error struct {
	// Field is the input's name as callers know it: "lane", "payload",
	// "limit", "scope", ...
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *Error) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrValidation) hold.
func (e *Error) Unwrap() error { return ErrValidation }

// Invalid returns a refusal of field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// In returns e with its field prefixed by where it sits in a batch, for
// example In("receipts[3]", e) names "receipts[3].id". A nil e stays nil.
func In(prefix string, e *Error) *Error {
	if e == nil {
		return nil
	}
	return &Error{Field: prefix + "." + e.Field, Reason: e.Reason}
}

// AsError keeps a nil *Error from becoming a non-nil error.
func AsError(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

// Text accepts any non-blank UTF-8 string Postgres's text can store (no NUL
// bytes) up to maxBytes bytes.
func Text(field, s string, maxBytes int) *Error {
	if strings.TrimSpace(s) == "" {
		if s == "" {
			return Invalid(field, "is required")
		}
		return Invalid(field, "must not be blank")
	}
	if !utf8.ValidString(s) {
		return Invalid(field, "must be valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Invalid(field, "must not contain NUL bytes")
	}
	if len(s) > maxBytes {
		return Invalid(field, "must be at most %d bytes, got %d", maxBytes, len(s))
	}
	return nil
}

// Name is Text for identifiers that appear in logs and operator output,
// which additionally must not hold control characters. Lanes, targets,
// scopes and consumer ids are names.
func Name(field, s string, maxBytes int) *Error {
	if err := Text(field, s, maxBytes); err != nil {
		return err
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return Invalid(field, "must not contain control characters (found %U)", r)
		}
	}
	return nil
}

// Scope accepts a tenant scope id: a name of at most MaxScopeBytes.
func Scope(s string) *Error { return Name("scope", s, MaxScopeBytes) }

// Time keeps times within years 1 to 9999: well inside Postgres's timestamptz
// (4713 BC to 294276 AD) and inside what Go formats and parses round-trip.
func Time(field string, t time.Time) *Error {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return Invalid(field, "must be between years 1 and 9999, got %s", t.Format(time.RFC3339))
	}
	return nil
}

// Lease accepts a lease of MinLease to MaxLease.
func Lease(lease time.Duration) *Error {
	if lease < MinLease || lease > MaxLease {
		return Invalid("lease", "must be between %s and %s, got %s", MinLease, MaxLease, lease)
	}
	return nil
}

// RetryDelay accepts a nack delay of 0 to MaxRetryDelay.
func RetryDelay(delay time.Duration) *Error {
	if delay < 0 || delay > MaxRetryDelay {
		return Invalid("delay", "must be between 0 and %s, got %s", MaxRetryDelay, delay)
	}
	return nil
}

// ID refuses a blank message id; any other value is looked up, and simply
// matches nothing when it is not an id the store issued.
func ID(field, id string) *Error {
	if strings.TrimSpace(id) == "" {
		return Invalid(field, "is required")
	}
	return nil
}

// Receipt refuses a blank id or claim token: they are a caller's bug. Any
// other value is accepted and matches no claim when it is not one.
func Receipt(id, claimToken string) *Error {
	if err := ID("id", id); err != nil {
		return err
	}
	if strings.TrimSpace(claimToken) == "" {
		return Invalid("claim_token", "is required")
	}
	return nil
}

// Headers accepts headers whose names are not blank and at most
// MaxHeaderNameBytes, whose names and values are valid UTF-8 without NUL
// bytes (jsonb refuses \u0000 and cannot hold invalid UTF-8), and whose JSON
// encoding is at most MaxHeadersBytes. A refusal names the header:
// headers["traceparent"]. Names are checked in sorted order, so the same
// headers always give the same error.
func Headers(h map[string]string) *Error {
	if len(h) == 0 {
		return nil
	}
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		field := fmt.Sprintf("headers[%q]", name)
		switch {
		case strings.TrimSpace(name) == "":
			return Invalid(field, "the name must not be blank")
		case len(name) > MaxHeaderNameBytes:
			return Invalid(field, "the name must be at most %d bytes, got %d", MaxHeaderNameBytes, len(name))
		case !utf8.ValidString(name) || !utf8.ValidString(h[name]):
			return Invalid(field, "must be valid UTF-8")
		case strings.IndexByte(name, 0) >= 0 || strings.IndexByte(h[name], 0) >= 0:
			return Invalid(field, "must not contain NUL bytes")
		}
	}
	encoded, err := json.Marshal(h)
	if err != nil {
		return Invalid("headers", "cannot be encoded as JSON: %v", err)
	}
	if len(encoded) > MaxHeadersBytes {
		return Invalid("headers", "must be at most %d bytes encoded as a JSON object, got %d", MaxHeadersBytes, len(encoded))
	}
	return nil
}

// ReleaseKey accepts the lane, target and ordering key of a key release.
func ReleaseKey(lane, target, key string) *Error {
	if err := Name("lane", lane, MaxLaneBytes); err != nil {
		return err
	}
	if err := Name("target", target, MaxTargetBytes); err != nil {
		return err
	}
	return Text("ordering_key", key, MaxOrderingKeyBytes)
}

// BatchSize refuses a batch of more than MaxBatch items.
func BatchSize(field string, n int) *Error {
	if n > MaxBatch {
		return Invalid(field, "at most %d per call, got %d", MaxBatch, n)
	}
	return nil
}

// ListLimit resolves and bounds the limit of a listing: 0 means
// DefaultListLimit, larger than MaxListLimit means MaxListLimit.
func ListLimit(limit int) (int, *Error) {
	switch {
	case limit < 0:
		return 0, Invalid("limit", "must not be negative, got %d", limit)
	case limit == 0:
		return DefaultListLimit, nil
	case limit > MaxListLimit:
		return MaxListLimit, nil
	}
	return limit, nil
}

// CleanReason makes a nack reason storable instead of refusing it: a failing
// consumer must always be able to give its message back. NUL bytes are
// dropped, invalid UTF-8 is replaced, and the result is cut to MaxErrorBytes
// on a rune boundary.
func CleanReason(s string) string {
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
