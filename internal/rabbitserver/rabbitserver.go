// Package rabbitserver runs Debian's rabbitmq-server as a child process for
// tests and benchmarks: on free loopback ports, with its own data, log and
// configuration in a directory of its own, its own epmd, and a node name
// unique to the run, so it never meets the system's service or another
// test's broker. It can be stopped (gracefully or with SIGKILL) and started
// again on the same ports and data.
//
// It runs the server's own start script (/usr/lib/rabbitmq/bin/rabbitmq-server
// in Debian's package), not the /usr/sbin wrapper, which switches to the
// rabbitmq user and writes to /var/log. That works as root as well as any
// other user, since every file it writes is in the directory given to it.
package rabbitserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned when no rabbitmq-server can be found.
var ErrNotInstalled = errors.New("rabbitmq-server is not installed: install Debian's rabbitmq-server package (scripts/debian-deps.sh rabbitmq-server, which `make test` runs), or set RABBITMQ_SERVER_BIN")

// Binary returns the rabbitmq-server start script: $RABBITMQ_SERVER_BIN, or
// the one in Debian's package.
func Binary() (string, error) {
	candidates := []string{os.Getenv("RABBITMQ_SERVER_BIN"), "/usr/lib/rabbitmq/bin/rabbitmq-server"}
	matches, _ := filepath.Glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server")
	candidates = append(candidates, matches...)
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() { //nolint:gosec // the operator names the binary, as with PATH
			return c, nil
		}
	}
	return "", ErrNotInstalled
}

// Server is one rabbitmq-server node.
type Server struct {
	// Port is the AMQP port on 127.0.0.1.
	Port int
	bin  string
	dir  string
	node string
	dist int
	epmd int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start starts a node with its files under dir (which must exist and be
// writable) and waits until it accepts AMQP connections.
func Start(ctx context.Context, dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Port: ports[0], dist: ports[1], epmd: ports[2], bin: bin, dir: dir,
		node: fmt.Sprintf("pgoutbox-%d-%d@localhost", os.Getpid(), ports[0]),
	}
	conf := strings.Join([]string{
		fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d", s.Port),
		// A test machine's disk may be nearly full; the default limit
		// would block every publisher.
		"disk_free_limit.absolute = 1MB",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o600); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.killEPMD()
		return nil, err
	}
	return s, nil
}

// URL is the AMQP URL of the node, as the default guest user (allowed on
// loopback connections).
func (s *Server) URL() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", s.Port) }

// Start starts the node again after Stop or Kill, on the same ports and
// data, and waits until it accepts AMQP connections.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("rabbitserver: already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin) //nolint:gosec // the server's own start script, found by Binary
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(),
		"HOME="+s.dir, // the Erlang cookie goes here
		"RABBITMQ_NODENAME="+s.node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", s.Port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", s.dist),
		fmt.Sprintf("ERL_EPMD_PORT=%d", s.epmd),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(s.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(s.dir, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_CONFIG_FILE="+filepath.Join(s.dir, "rabbitmq"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(s.dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(s.dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(s.dir, "rabbitmq.pid"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(s.dir, "rabbitmq-env.conf"),
		// ALLOW_INPUT makes the script exec erl itself instead of running
		// it in the background of a shell, so this process is the node and
		// a signal reaches it; -noinput keeps it off stdin all the same.
		"RABBITMQ_ALLOW_INPUT=true",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput",
	)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("rabbitserver: starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done, s.log = cmd, done, logf
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-done:
			s.reset()
			return fmt.Errorf("rabbitserver: the node exited during start-up:\n%s", s.tail())
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.signal(syscall.SIGKILL)
			<-done
			s.reset()
			return fmt.Errorf("rabbitserver: not accepting connections after 90 s:\n%s", s.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the node as its service does (SIGTERM: connections closed,
// queues flushed) and waits for it, up to a minute before killing it.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.signal(syscall.SIGKILL)
		<-s.done
	}
	s.reset()
	return nil
}

// Kill kills the node with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	s.signal(syscall.SIGKILL)
	<-s.done
	s.reset()
	return nil
}

// Close stops the node and its epmd.
func (s *Server) Close() error {
	err := s.Stop()
	s.killEPMD()
	return err
}

// Log returns the node's log so far.
func (s *Server) Log() string { return s.tail() }

func (s *Server) signal(sig os.Signal) { _ = s.cmd.Process.Signal(sig) }

func (s *Server) reset() {
	_ = s.log.Close()
	s.cmd, s.done, s.log = nil, nil, nil
}

func (s *Server) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// killEPMD stops the epmd the node started on its own port (epmd outlives
// the node by design).
func (s *Server) killEPMD() {
	bin, err := exec.LookPath("epmd")
	if err != nil {
		bin = "/usr/lib/erlang/bin/epmd"
	}
	_ = exec.Command(bin, "-port", fmt.Sprint(s.epmd), "-kill").Run() //nolint:gosec // Erlang's own epmd
}

// freePorts returns n distinct free ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var (
		ports []int
		ls    []net.Listener
	)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
