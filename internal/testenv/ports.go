package testenv

import (
	"fmt"
	"net"
)

// freePort returns a 127.0.0.1 TCP port for a child process to bind.
//
// Closing a port-0 listener and handing out its number races with the
// kernel handing the same ephemeral number to someone else. To narrow that
// window the port is parked in TIME_WAIT by closing an accepted connection
// from the server side: Linux doesn't allocate TIME_WAIT ports for bind(0)
// or outgoing connections, while servers that set SO_REUSEADDR (PostgreSQL
// and Go both do) can still bind it. The Temporal SDK uses the same trick.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("reserving a free port: %w", err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)

	client, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return 0, fmt.Errorf("reserving a free port: %w", err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		return 0, fmt.Errorf("reserving a free port: %w", err)
	}
	// Server side first: TIME_WAIT lands on the listening port's side.
	if err := server.Close(); err != nil {
		return 0, fmt.Errorf("reserving a free port: %w", err)
	}
	return addr.Port, nil
}
