package rabbitserver_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/rabbitserver"
)

// The node starts, accepts connections, stops, starts again on the same
// port, and is gone after Close. A missing binary fails the test: it is
// never skipped.
func TestStartStopStart(t *testing.T) {
	s, err := rabbitserver.Start(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	dial := func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if dial() == nil {
		t.Fatal("still accepting connections after Kill")
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("not accepting connections after a restart: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if dial() == nil {
		t.Fatal("still accepting connections after Close")
	}
}
