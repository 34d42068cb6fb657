package main

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"
)

// echo serves line echo on a loopback port until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func proxy(t *testing.T, to string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := New(ln, to)
	go func() { _ = p.Serve() }()
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// roundTrip sends one line on c and says whether it came back within wait,
// and whether the connection was closed.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, wait time.Duration) (echoed, closed bool) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false, true
	}
	line, err := r.ReadString('\n')
	if err != nil {
		var ne net.Error
		return false, !errors.As(err, &ne) || !ne.Timeout()
	}
	return line == "ping\n", false
}

func dial(t *testing.T, addr net.Addr) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func TestCutHoldsOpenAndNewConnectionsRestoreForwardsAgain(t *testing.T) {
	p := proxy(t, echo(t))
	open, openR := dial(t, p.Addr())
	if echoed, _ := roundTrip(t, open, openR, 5*time.Second); !echoed {
		t.Fatal("no echo through the proxy before the cut")
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut held %d open connections, want 1", n)
	}
	// As on a partitioned network: no answer and no reset, on the open
	// connection and on a new one.
	if echoed, closed := roundTrip(t, open, openR, 300*time.Millisecond); echoed || closed {
		t.Fatalf("open connection after the cut: echoed %v, closed %v; want a timeout", echoed, closed)
	}
	fresh, freshR := dial(t, p.Addr())
	if echoed, closed := roundTrip(t, fresh, freshR, 300*time.Millisecond); echoed || closed {
		t.Fatalf("new connection after the cut: echoed %v, closed %v; want a timeout", echoed, closed)
	}
	if n := p.Restore(); n != 2 {
		t.Fatalf("Restore closed %d held connections, want 2", n)
	}
	if echoed, closed := roundTrip(t, open, openR, 5*time.Second); echoed || !closed {
		t.Fatalf("held connection after the restore: echoed %v, closed %v; want it closed", echoed, closed)
	}
	again, againR := dial(t, p.Addr())
	if echoed, _ := roundTrip(t, again, againR, 5*time.Second); !echoed {
		t.Fatal("no echo through the proxy after the restore")
	}
}

func TestUpstreamDownClosesTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	p := proxy(t, dead)
	c, r := dial(t, p.Addr())
	if echoed, closed := roundTrip(t, c, r, 5*time.Second); echoed || !closed {
		t.Fatalf("upstream down: echoed %v, closed %v; want the client closed", echoed, closed)
	}
}
