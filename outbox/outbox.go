package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/validate"
)

// Well-known lanes and targets of the system pgoutbox was ported from. Lanes
// and targets are free-form strings; these are conveniences, not a closed set.
const (
	// LaneCanonical carries messages derived from canonical domain events.
	LaneCanonical = "canonical"
	// LaneProtocolReplay carries protocol replays.
	LaneProtocolReplay = "protocol_replay"
	// TargetProtocolProjector is the protocol projector consumer.
	TargetProtocolProjector = "protocol_projector"
	// TargetProtocolFanout is the protocol fan-out consumer.
	TargetProtocolFanout = "protocol_fanout"
	// TargetA2AWebhook is the agent-to-agent webhook consumer.
	TargetA2AWebhook = "a2a_webhook"
	// DefaultMaxAttempts is the number of deliveries a message gets when its
	// draft leaves MaxAttempts at zero.
	DefaultMaxAttempts = 5
)

// Limits on inputs. They keep every value storable and indexable (a btree
// entry must stay well under Postgres's 2704-byte limit) and every request
// bounded.
const (
	MaxLaneBytes       = validate.MaxLaneBytes
	MaxTargetBytes     = validate.MaxTargetBytes
	MaxDedupeKeyBytes  = validate.MaxDedupeKeyBytes
	MaxScopeBytes      = validate.MaxScopeBytes
	MaxConsumerIDBytes = validate.MaxConsumerIDBytes
	// MaxOrderingKeyBytes caps Draft.OrderingKey.
	MaxOrderingKeyBytes = validate.MaxOrderingKeyBytes
	// MaxHeaderNameBytes caps the name of a header.
	MaxHeaderNameBytes = validate.MaxHeaderNameBytes
	// MaxHeadersBytes caps a draft's headers, encoded as a JSON object.
	MaxHeadersBytes = validate.MaxHeadersBytes
	// MaxPayloadBytes caps a payload's encoded size. Outbox messages are
	// notifications, not blobs; store large data in a table and send its key.
	// A payload under this size is still refused when its binary jsonb form
	// would exceed what jsonb can hold (256 MiB per array or object).
	MaxPayloadBytes = validate.MaxPayloadBytes
	// MaxPayloadDepth caps how deeply a payload's arrays and objects nest.
	MaxPayloadDepth = validate.MaxPayloadDepth
	// MaxClaimLimit caps ClaimRequest.Limit.
	MaxClaimLimit = validate.MaxClaimLimit
	// MaxLease caps ClaimRequest.Lease. Handlers that run longer extend
	// their lease instead of taking a long one up front.
	MaxLease = validate.MaxLease
	// MinLease is the shortest lease a claim accepts.
	MinLease = validate.MinLease
	// DefaultListLimit applies when ListFilter.Limit is zero.
	DefaultListLimit = validate.DefaultListLimit
	// MaxListLimit caps ListFilter.Limit.
	MaxListLimit = validate.MaxListLimit
	// MaxErrorBytes caps the reason stored by Nack; longer reasons are cut.
	MaxErrorBytes = validate.MaxErrorBytes
	// MaxRetryDelay caps NackAfter's delay.
	MaxRetryDelay = validate.MaxRetryDelay
	// MaxBatch caps the number of drafts, receipts or ids one batch call
	// takes.
	MaxBatch = validate.MaxBatch
)

// Status is where a message is in its life cycle.
type Status string

// The statuses a message moves through: pending until claimed, claimed until
// acked (delivered) or nacked (pending again, or dead_letter once its
// attempts are used up).
const (
	StatusPending    Status = "pending"
	StatusClaimed    Status = "claimed"
	StatusDelivered  Status = "delivered"
	StatusDeadLetter Status = "dead_letter"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusClaimed, StatusDelivered, StatusDeadLetter:
		return true
	}
	return false
}

// NackOutcome says what a Nack did.
type NackOutcome int

// The outcomes of a Nack.
const (
	// NackRequeued: the message is pending again and becomes claimable at the
	// retry time.
	NackRequeued NackOutcome = iota + 1
	// NackDeadLettered: the message had used all its attempts and is now a
	// dead letter.
	NackDeadLettered
	// NackLostClaim: the caller does not hold the message (it is not claimed,
	// does not exist in this scope, or was claimed again under another token).
	// Nothing changed.
	NackLostClaim
)

// String returns the outcome's name.
func (o NackOutcome) String() string {
	switch o {
	case NackRequeued:
		return "requeued"
	case NackDeadLettered:
		return "dead_lettered"
	case NackLostClaim:
		return "lost_claim"
	}
	return fmt.Sprintf("NackOutcome(%d)", int(o))
}

var (
	// ErrValidation is wrapped by every error about an invalid input. Such a
	// call writes nothing. errors.As with *ValidationError gives the field.
	ErrValidation = validate.ErrValidation
	// ErrConflict is wrapped when a dedupe key is reused with a different
	// draft. errors.As with *ConflictError gives the stored message.
	ErrConflict = errors.New("dedupe key conflict")
	// ErrNotFound is returned by Get when no message has the id in the
	// store's scope.
	ErrNotFound = errors.New("message not found")
)

// Draft is a message to enqueue.
type Draft struct {
	// Lane and Target say which consumer claims the message. Both are
	// required, at most 255 bytes of UTF-8 without control characters.
	Lane, Target string
	// Payload is the message body: JSON that Postgres's jsonb accepts (no
	// \u0000 escapes, no lone surrogates, numbers within numeric's range).
	// It is stored as jsonb, so key order and whitespace are not preserved.
	Payload json.RawMessage
	// DedupeKey makes the enqueue idempotent per (scope, lane, target).
	// "" means none; a present key must not be blank.
	DedupeKey string
	// OrderingKey puts the message in order with the other messages of the
	// same key in its scope, lane and target: they are handed out one at a
	// time, in enqueue order (see the package documentation, "Ordering").
	// "" means unordered. A present key must not be blank, hold NUL bytes
	// or exceed MaxOrderingKeyBytes.
	OrderingKey string
	// Headers travel with the message to its consumer (a trace context, a
	// content type, a tenant): names are not blank, at most
	// MaxHeaderNameBytes, and neither names nor values hold NUL bytes or
	// invalid UTF-8; the whole set, encoded as a JSON object, is at most
	// MaxHeadersBytes. nil or empty means none. With WithPropagator, Enqueue
	// adds the caller's trace context.
	Headers map[string]string
	// AvailableAt delays the message; zero means now.
	AvailableAt time.Time
	// MaxAttempts bounds deliveries before the message dead-letters.
	// 0 means DefaultMaxAttempts; negative is invalid.
	MaxAttempts int
}

// Message is a stored outbox message.
type Message struct {
	// ID is opaque and unique. Pass it back to Ack, Nack and Get as is.
	ID           string
	Lane, Target string
	Payload      json.RawMessage
	DedupeKey    string
	// OrderingKey is the draft's ordering key, "" for an unordered message.
	OrderingKey string
	// OrderingKeyReleased is true only for a dead letter whose ordering key
	// was released, by PostgresStore.ReleaseOrderingKey or because the store
	// dead-lettered it under WithSkipDeadLetters: such a message no longer
	// blocks its key. It is false for every other message, and Redrive
	// clears it. HoldsOrderingKey tells whether the message blocks its key.
	OrderingKeyReleased bool
	// Headers are the draft's headers (with the trace context WithPropagator
	// added); nil when none.
	Headers     map[string]string
	Status      Status
	AvailableAt time.Time
	// AttemptCount is the number of times the message has been claimed.
	AttemptCount int
	MaxAttempts  int
	// ClaimedBy and ClaimToken identify the current claim; empty unless the
	// message is claimed.
	ClaimedBy, ClaimToken string
	// LeaseExpiresAt is zero when the message is not claimed.
	LeaseExpiresAt time.Time
	// LastError is the reason given by the last nack, or why the message was
	// dead-lettered.
	LastError            string
	CreatedAt, UpdatedAt time.Time
}

// HoldsOrderingKey reports whether the message keeps the messages of its
// ordering key enqueued after it (in its scope, lane and target) waiting: it
// has a key and is pending, claimed, or a dead letter whose key was not
// released (OrderingKeyReleased false). A delivered message, an unordered
// one and a released dead letter hold nothing.
//
// This is the rule the store applies when it picks the head of a key; it
// mirrors the SQL function pgoutbox_holds_ordering_key (schema migration
// 00002), and the two must change together.
func (m Message) HoldsOrderingKey() bool {
	if m.OrderingKey == "" {
		return false
	}
	switch m.Status {
	case StatusPending, StatusClaimed:
		return true
	case StatusDeadLetter:
		return !m.OrderingKeyReleased
	}
	return false
}

// EnqueueResult is the outcome of an Enqueue.
type EnqueueResult struct {
	// Message is the stored message: the new one, or the one already holding
	// the dedupe key.
	Message Message
	// Deduplicated is true when the draft's dedupe key was already held by an
	// identical draft and nothing new was written.
	Deduplicated bool
}

// ClaimRequest asks for messages of one lane and target.
type ClaimRequest struct {
	Lane, Target string
	// Limit is the most messages to claim, 1 to MaxClaimLimit.
	Limit int
	// Lease is how long the claim holds before another consumer may take the
	// message, MinLease to MaxLease.
	Lease time.Duration
	// ConsumerID names the claimer in ClaimedBy, for operators, and in the
	// turns of ordering keys: each claimer walks the keys from where its
	// last claim stopped (README, "Ordering").
	ConsumerID string
}

// ListFilter selects messages to list.
type ListFilter struct {
	// Status restricts the listing to one status; "" lists all.
	Status Status
	// Limit is the most messages returned: 0 means DefaultListLimit, larger
	// values are capped at MaxListLimit, negative is invalid.
	Limit int
	// Lane and Target restrict the listing; "" matches any.
	Lane, Target string
	// AfterID pages through a listing: only messages enqueued after the
	// message with this id are returned (pass the last ID of the previous
	// page). "" starts from the oldest.
	AfterID string
	// OrderingKey restricts the listing to one ordering key; "" matches any
	// message, keyed or not.
	OrderingKey string
	// DedupeKey restricts the listing to the message holding this key; ""
	// matches any. With Lane and Target it is one lookup in the dedupe index.
	DedupeKey string
	// ErrorContains keeps messages whose last error contains this text
	// (case-sensitive); "" matches any.
	ErrorContains string
}

// Store is the outbox contract. PostgresStore implements it.
type Store interface {
	// Enqueue validates d and stores it as a pending message, or returns the
	// message already holding d's dedupe key.
	Enqueue(ctx context.Context, d Draft) (EnqueueResult, error)
	// Claim takes up to r.Limit claimable messages of r.Lane and r.Target,
	// oldest available first, under a lease of r.Lease.
	Claim(ctx context.Context, r ClaimRequest) ([]Message, error)
	// Ack marks a claimed message delivered. It returns false when the caller
	// does not hold the message's current claim token.
	Ack(ctx context.Context, id, claimToken string) (bool, error)
	// Nack gives a claimed message back: pending again at retryAt (zero
	// means now) while it has attempts left, dead-lettered otherwise.
	Nack(ctx context.Context, id, claimToken, reason string, retryAt time.Time) (NackOutcome, error)
	// List returns messages oldest first, never more than MaxListLimit.
	List(ctx context.Context, f ListFilter) ([]Message, error)
}
