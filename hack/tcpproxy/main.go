// Command tcpproxy is a TCP proxy whose link can be cut and restored with
// signals, for the end-to-end scenarios that cut one host agent off the API
// server while the others still reach it (hack/e2e/scenarios/outage.sh).
//
//	tcpproxy --listen 127.0.0.1:PORT --to 127.0.0.1:APIPORT
//
// SIGUSR1 cuts the link as a network partition would: no byte goes through
// either way any more, on open connections (held open, their upstream side
// closed) and on new ones (accepted, held, never connected upstream), so
// the client sees its requests time out rather than a refused connection.
// SIGUSR2 restores it: the held connections are closed (their upstream is
// gone) and new ones are forwarded again. Each change is logged on stderr.
// SIGINT or SIGTERM stops it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "Address to listen on.")
	to := flag.String("to", "", "Address to forward to (host:port).")
	flag.Parse()
	if *to == "" {
		fmt.Fprintln(os.Stderr, "tcpproxy: --to is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpproxy: %v\n", err)
		os.Exit(1)
	}
	p := New(ln, *to)
	log.SetPrefix("tcpproxy: ")
	log.Printf("forwarding %s to %s (SIGUSR1 cuts, SIGUSR2 restores)", ln.Addr(), *to)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			switch s {
			case syscall.SIGUSR1:
				log.Printf("cut: %d open connections held", p.Cut())
			case syscall.SIGUSR2:
				log.Printf("restored: %d held connections closed", p.Restore())
			default:
				_ = p.Close()
				return
			}
		}
	}()
	if err := p.Serve(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// Proxy forwards every connection accepted on its listener to one address,
// until Cut.
type Proxy struct {
	ln net.Listener
	to string

	mu     sync.Mutex
	cut    bool
	closed bool
	// links are the forwarded connections (client side -> upstream side).
	links map[net.Conn]net.Conn
	// held are client connections that get no byte through until Restore.
	held map[net.Conn]struct{}
}

// New returns a Proxy from ln to the address to.
func New(ln net.Listener, to string) *Proxy {
	return &Proxy{ln: ln, to: to, links: map[net.Conn]net.Conn{}, held: map[net.Conn]struct{}{}}
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Serve accepts connections until Close.
func (p *Proxy) Serve() error {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	p.mu.Lock()
	if p.cut {
		p.held[c] = struct{}{}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.to)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.cut || p.closed {
		// Cut while dialling: this connection is held like the others.
		_ = up.Close()
		p.held[c] = struct{}{}
		p.mu.Unlock()
		return
	}
	p.links[c] = up
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, cutOff := p.held[c]; cutOff {
		return // Cut closed the upstream side: c stays open until Restore.
	}
	delete(p.links, c)
	_ = c.Close()
	_ = up.Close()
}

// Cut stops every byte: the open connections' upstream sides are closed and
// their client sides held open, new connections are held too. It returns
// how many open connections it held.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	n := len(p.links)
	for c, up := range p.links {
		p.held[c] = struct{}{}
		delete(p.links, c)
		// Closing the upstream side ends the copy from it; the copy from c
		// then fails writing upstream and drops what c sends.
		_ = up.Close()
	}
	return n
}

// Restore forwards new connections again and closes the held ones. It
// returns how many it closed.
func (p *Proxy) Restore() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	n := len(p.held)
	for c := range p.held {
		_ = c.Close()
		delete(p.held, c)
	}
	return n
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c, up := range p.links {
		_ = c.Close()
		_ = up.Close()
	}
	for c := range p.held {
		_ = c.Close()
	}
	p.mu.Unlock()
	return p.ln.Close()
}
