package natssink_test

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServer is a real nats-server, embedded in the test process, with
// JetStream on and file storage in a temporary directory. It can be shut
// down and started again on the same port and store.
type natsServer struct {
	dir  string
	port int
	srv  *server.Server
}

func startServer(t *testing.T) *natsServer {
	t.Helper()
	s := &natsServer{dir: t.TempDir(), port: -1}
	if err := s.Start(); err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// Start starts the server (again).
func (s *natsServer) Start() error {
	srv, err := server.NewServer(&server.Options{
		ServerName: "pgoutbox-test",
		Host:       "127.0.0.1", Port: s.port,
		JetStream: true, StoreDir: s.dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		return err
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("nats-server not ready for connections within 30 s")
	}
	s.srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
	return nil
}

// Stop shuts the server down (what a SIGTERM does: connections closed,
// stores flushed).
func (s *natsServer) Stop() error {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
	return nil
}

func (s *natsServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// connect returns a JetStream context on a client that reconnects for ever,
// closed with the test.
func connect(t *testing.T, s *natsServer) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func createStream(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	if cfg.Storage == 0 {
		cfg.Storage = jetstream.FileStorage
	}
	st, err := js.CreateStream(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
