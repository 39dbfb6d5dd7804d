package relay

import (
	"context"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// heartbeat extends the leases of claim-mode deliveries every
// HeartbeatInterval, and cancels the handlers of claims found lost.
type heartbeat struct {
	cfg     *Config
	store   Store
	metrics *metrics
	flight  *inflight
	base    context.Context
	stop    chan struct{}
	stopped chan struct{}
}

func newHeartbeat(base context.Context, cfg *Config, store Store, m *metrics, flight *inflight) *heartbeat {
	return &heartbeat{cfg: cfg, store: store, metrics: m, flight: flight, base: base,
		stop: make(chan struct{}), stopped: make(chan struct{})}
}

func (h *heartbeat) close() {
	close(h.stop)
	<-h.stopped
}

func (h *heartbeat) run() {
	defer close(h.stopped)
	t := time.NewTicker(h.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		// Renew what has not been renewed for half an interval; a message
		// claimed a moment ago still has nearly its whole lease. A lease is
		// thus renewed at most 1.5 intervals after it was taken, which
		// Config.validate keeps within three quarters of the lease.
		due := h.flight.due(time.Now().Add(-h.cfg.HeartbeatInterval / 2))
		for len(due) > 0 {
			n := min(len(due), outbox.MaxBatch)
			h.extend(due[:n])
			due = due[n:]
		}
	}
}

func (h *heartbeat) extend(due []*delivery) {
	receipts := make([]outbox.Receipt, len(due))
	for i, d := range due {
		receipts[i] = d.msg.Receipt()
	}
	ctx, cancel := context.WithTimeout(h.base, min(h.cfg.StatementTimeout, h.cfg.HeartbeatInterval))
	defer cancel()
	asked := time.Now()
	held, err := h.store.ExtendLeases(ctx, receipts, h.cfg.Lease)
	if err != nil {
		h.cfg.Logger.Warn("relay: lease extension failed; retrying next heartbeat", "messages", len(due), "error", err)
		return
	}
	for _, id := range h.flight.renewed(due, held, asked) {
		h.cfg.Logger.Warn("relay: claim lost while the handler ran; cancelling it", "id", id)
	}
}
