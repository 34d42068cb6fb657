package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/go-logr/logr"
	"libvirt.org/go/libvirtxml"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// Defaults of Options.
const (
	DefaultURI         = "qemu:///system"
	DefaultStopTimeout = 30 * time.Second
	// DefaultReconnectInterval is the longest wait between two attempts to
	// reach a daemon that went away.
	DefaultReconnectInterval = 2 * time.Second
)

// ErrDisconnected is returned while the driver has no connection to the
// daemon (it is reconnecting): what runs on the host is then unknown.
var ErrDisconnected = errors.New("not connected to libvirt (reconnecting): the host's VMs are unknown")

// Options configure a Driver.
type Options struct {
	// URI is the libvirt connection URI: qemu:///system (the default),
	// qemu+unix:///system?socket=PATH, test:///default ...
	URI string
	// Namespace is the namespace of the pool this agent serves, Host the
	// Host's name: the driver touches only domains tagged with both.
	Namespace, Host string
	// BootID is the agent's boot, written in the tag of the domains it
	// starts.
	BootID string
	Log    logr.Logger
	// StopTimeout is how long Stop waits for a guest to power off after the
	// ACPI shutdown request before it destroys the domain.
	StopTimeout time.Duration
	// DomainType forces the domain type (kvm, qemu); empty: kvm when the
	// daemon offers it, else qemu.
	DomainType string
	// ConsoleLogDir, when set, is the directory (on the daemon's host) the
	// serial console of each domain is logged to, as <domain>.log.
	ConsoleLogDir string
	// ReconnectInterval is the longest wait between two attempts to reach
	// the daemon again.
	ReconnectInterval time.Duration
}

// Driver runs VMs as libvirt domains. It is safe for concurrent use.
type Driver struct {
	opts    Options
	uri     *url.URL
	log     logr.Logger
	changes chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	mu sync.Mutex
	// conn is nil while disconnected.
	conn  *golibvirt.Libvirt
	guest guest
	// known holds the UUIDs of domains seen tagged for this host, so that
	// the event of a transient domain gone (unreadable by then) is known as
	// ours.
	known map[golibvirt.UUID]bool
	// event is closed and replaced on every lifecycle event of ours.
	event chan struct{}
}

var (
	_ agent.Driver         = (*Driver)(nil)
	_ agent.PowerStater    = (*Driver)(nil)
	_ agent.Notifier       = (*Driver)(nil)
	_ agent.StoragePlugger = (*Driver)(nil)
	_ agent.VolumeFinder   = (*Driver)(nil)
	_ agent.NetworkLister  = (*Driver)(nil)
	_ agent.Closer         = (*Driver)(nil)
)

// New connects to the daemon at opts.URI and keeps the connection: when the
// daemon goes away the driver reconnects until Close or ctx ends. The first
// connection must succeed: a wrong URI is an error here, not a silent retry.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.URI == "" {
		opts.URI = DefaultURI
	}
	if opts.Namespace == "" || opts.Host == "" {
		return nil, errors.New("libvirt driver: Namespace and Host are required")
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.ReconnectInterval <= 0 {
		opts.ReconnectInterval = DefaultReconnectInterval
	}
	u, err := url.Parse(opts.URI)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", opts.URI, err)
	}
	d := &Driver{opts: opts, uri: u, log: opts.Log.WithValues("libvirt", opts.URI),
		changes: make(chan struct{}, 1), done: make(chan struct{}),
		known: map[golibvirt.UUID]bool{}, event: make(chan struct{})}
	conn, events, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	go func() {
		defer close(d.done)
		d.loop(loopCtx, conn, events)
	}()
	return d, nil
}

// connect dials the daemon, reads its capabilities and subscribes to
// lifecycle events (before anything is listed, so no change is missed),
// then makes the connection the driver's.
func (d *Driver) connect(ctx context.Context) (*golibvirt.Libvirt, <-chan golibvirt.DomainEventLifecycleMsg, error) {
	conn, err := golibvirt.ConnectToURI(d.uri)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to libvirt at %s: %w", d.opts.URI, err)
	}
	fail := func(err error) (*golibvirt.Libvirt, <-chan golibvirt.DomainEventLifecycleMsg, error) {
		_ = conn.Disconnect()
		return nil, nil, fmt.Errorf("libvirt at %s: %w", d.opts.URI, err)
	}
	capsXML, err := conn.ConnectGetCapabilities()
	if err != nil {
		return fail(fmt.Errorf("reading capabilities: %w", err))
	}
	caps := &libvirtxml.Caps{}
	if err := caps.Unmarshal(capsXML); err != nil {
		return fail(fmt.Errorf("parsing capabilities: %w", err))
	}
	g, err := chooseGuest(caps, d.opts.DomainType)
	if err != nil {
		return fail(err)
	}
	// The subscription lives as long as the connection; the loop's context
	// ends it only at Close.
	events, err := conn.LifecycleEvents(context.WithoutCancel(ctx))
	if err != nil {
		return fail(fmt.Errorf("subscribing to lifecycle events: %w", err))
	}
	d.mu.Lock()
	d.conn, d.guest = conn, g
	d.mu.Unlock()
	d.log.Info("Connected to libvirt", "domainType", g.Type, "arch", g.Arch, "machine", g.Machine)
	return conn, events, nil
}

// loop serves the connection's events until it is lost, then reconnects,
// until ctx ends.
func (d *Driver) loop(ctx context.Context, conn *golibvirt.Libvirt, events <-chan golibvirt.DomainEventLifecycleMsg) {
	for {
		d.watch(ctx, conn, events)
		d.mu.Lock()
		d.conn = nil
		d.mu.Unlock()
		// (a connection whose event stream ended is given up too)
		_ = conn.Disconnect()
		go func() {
			for range events { // unblocks go-libvirt's sender until the stream closes
			}
		}()
		if ctx.Err() != nil {
			return
		}
		d.log.Info("Lost the connection to libvirt; VMs keep running, their state is unknown until it is back")
		d.signal()
		wait := 50 * time.Millisecond
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			var err error
			if conn, events, err = d.connect(ctx); err == nil {
				break
			}
			d.log.V(1).Info("Reconnecting to libvirt", "error", err.Error())
			wait = min(2*wait, d.opts.ReconnectInterval)
		}
		// What runs may have changed while nobody watched.
		d.signal()
	}
}

// watch signals the events of this host's domains until the connection is
// lost or ctx ends.
func (d *Driver) watch(ctx context.Context, conn *golibvirt.Libvirt, events <-chan golibvirt.DomainEventLifecycleMsg) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-conn.Disconnected():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if d.isOurs(conn, ev.Dom) {
				d.signal()
			}
		}
	}
}

// isOurs says whether dom is, or was, tagged for this host.
func (d *Driver) isOurs(conn *golibvirt.Libvirt, dom golibvirt.Domain) bool {
	d.mu.Lock()
	known := d.known[dom.UUID]
	d.mu.Unlock()
	if known {
		return true
	}
	t, ok, err := readTag(conn, dom)
	return err == nil && ok && d.mine(t)
}

// signal wakes Changes' reader and every Stop waiting for a domain.
func (d *Driver) signal() {
	select {
	case d.changes <- struct{}{}:
	default:
	}
	d.mu.Lock()
	close(d.event)
	d.event = make(chan struct{})
	d.mu.Unlock()
}

// client is the connection, or ErrDisconnected.
func (d *Driver) client() (*golibvirt.Libvirt, guest, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return nil, guest{}, ErrDisconnected
	}
	return d.conn, d.guest, nil
}

func (d *Driver) remember(dom golibvirt.Domain) {
	d.mu.Lock()
	d.known[dom.UUID] = true
	d.mu.Unlock()
}

// mine says whether a tag is this host's, in this driver's namespace. The
// boot ID does not count: a domain started by an earlier run of the agent
// on the same host is adopted.
func (d *Driver) mine(t Tag) bool {
	return t.Host == d.opts.Host && t.Namespace == d.opts.Namespace
}

// readTag reads poolkeeper's tag of dom; ok is false for an untagged domain.
func readTag(conn *golibvirt.Libvirt, dom golibvirt.Domain) (Tag, bool, error) {
	s, err := conn.DomainGetMetadata(dom, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{Namespace}, 0)
	if isCode(err, golibvirt.ErrNoDomainMetadata) {
		return Tag{}, false, nil
	}
	if err != nil {
		return Tag{}, false, err
	}
	t, err := parseTag(s)
	if err != nil {
		return Tag{}, false, err
	}
	return t, true, nil
}

// lost is err, or err marked ErrDisconnected when it is the transport that
// failed (the daemon gone, its socket cut) rather than libvirt refusing the
// call: go-libvirt reports those as net or syscall errors, EOF, an
// interrupted call, or EINVAL once it has seen the socket close, and its
// reader notices the loss only a moment later. So a caller sees
// ErrDisconnected as soon as a call fails for it, not a broken pipe.
func lost(err error) error {
	if err == nil || errors.Is(err, ErrDisconnected) {
		return err
	}
	var le golibvirt.Error
	if errors.As(err, &le) {
		return err
	}
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, golibvirt.ErrInterrupted) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	return err
}

func isCode(err error, code golibvirt.ErrorNumber) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

// ours is an active domain tagged for this host.
type ours struct {
	dom golibvirt.Domain
	tag Tag
}

// active lists the active domains tagged for this host, sorted by VM name,
// on the connection it returns.
func (d *Driver) active() (*golibvirt.Libvirt, []ours, error) {
	conn, _, err := d.client()
	if err != nil {
		return nil, nil, err
	}
	doms, _, err := conn.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive)
	if err != nil {
		return nil, nil, fmt.Errorf("listing domains: %w", err)
	}
	var out []ours
	for _, dom := range doms {
		t, ok, err := readTag(conn, dom)
		if isCode(err, golibvirt.ErrNoDomain) {
			continue // gone meanwhile
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading the metadata of domain %s: %w", dom.Name, err)
		}
		if ok && d.mine(t) && dom.Name == DomainName(t.Namespace, t.Name) {
			d.remember(dom)
			out = append(out, ours{dom: dom, tag: t})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].tag.Name < out[j].tag.Name })
	return conn, out, nil
}

// Running implements agent.Driver: the active domains tagged for this host
// (running, paused, blocked, shutting down), by VM name. While disconnected
// it returns ErrDisconnected, so that the agent reports no state rather than
// a wrong one.
func (d *Driver) Running(context.Context) ([]string, error) {
	_, doms, err := d.active()
	if err != nil {
		return nil, lost(err)
	}
	names := make([]string, 0, len(doms))
	for _, o := range doms {
		names = append(names, o.tag.Name)
	}
	return names, nil
}

// PowerStates implements agent.PowerStater: Paused for a paused domain,
// Suspended for one the guest suspended (pmsuspended), Unknown for a crashed
// one or one libvirt has no state for. Running, blocked and shutting-down
// domains are Running (absent).
func (d *Driver) PowerStates(context.Context) (_ map[string]string, err error) {
	defer func() { err = lost(err) }()
	conn, doms, err := d.active()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, o := range doms {
		state, _, err := conn.DomainGetState(o.dom, 0)
		if isCode(err, golibvirt.ErrNoDomain) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the state of domain %s: %w", o.dom.Name, err)
		}
		switch golibvirt.DomainState(state) {
		case golibvirt.DomainPaused:
			out[o.tag.Name] = string(vpoolv1alpha1.PowerPaused)
		case golibvirt.DomainPmsuspended:
			out[o.tag.Name] = string(vpoolv1alpha1.PowerSuspended)
		case golibvirt.DomainCrashed, golibvirt.DomainNostate:
			out[o.tag.Name] = string(vpoolv1alpha1.PowerUnknown)
		}
	}
	return out, nil
}

// Changes implements agent.Notifier: a value after every lifecycle event of
// a domain of this host, and after the connection is lost or back.
func (d *Driver) Changes() <-chan struct{} { return d.changes }

// Start implements agent.Driver. A domain of the VM's name that is active
// and tagged for this host is the VM running: Start does nothing. Any other
// domain of that name (untagged, another host's, defined but inactive) is
// refused, untouched.
func (d *Driver) Start(_ context.Context, vm agent.VM) (err error) {
	defer func() { err = lost(err) }()
	conn, g, err := d.client()
	if err != nil {
		return err
	}
	if vm.Namespace == "" {
		vm.Namespace = d.opts.Namespace
	}
	if vm.Namespace != d.opts.Namespace {
		return fmt.Errorf("VM %s/%s is not in namespace %s, which this agent serves", vm.Namespace, vm.Name, d.opts.Namespace)
	}
	name := DomainName(vm.Namespace, vm.Name)
	if done, err := d.existing(conn, name); done || err != nil {
		return err
	}
	s := spec{Name: name, UUID: vm.UUID, Type: g.Type, Arch: g.Arch, Machine: g.Machine,
		VCPUs: vm.CPU, MemoryMiB: vm.MemoryMiB, Interfaces: vm.Interfaces, Boot: vm.Boot,
		Tag: Tag{Pool: vm.Pool, Host: d.opts.Host, Namespace: vm.Namespace, Name: vm.Name, UUID: vm.UUID, BootID: d.opts.BootID}}
	if d.opts.ConsoleLogDir != "" {
		s.ConsoleLog = filepath.Join(d.opts.ConsoleLogDir, name+".log")
	}
	for _, disk := range vm.Disks {
		src, err := resolveDisk(conn, vm.Namespace, disk)
		if err != nil {
			return err
		}
		s.Disks = append(s.Disks, src)
	}
	x, err := buildDomain(s).Marshal()
	if err != nil {
		return fmt.Errorf("domain XML of %s: %w", name, err)
	}
	dom, err := conn.DomainCreateXML(x, 0)
	if err != nil {
		// Another Start may have won the race: then it runs.
		if done, err2 := d.existing(conn, name); done && err2 == nil {
			return nil
		}
		return fmt.Errorf("creating domain %s: %w", name, err)
	}
	d.remember(dom)
	return nil
}

// existing says whether the domain name already runs as this host's VM
// (done), and refuses any other domain of that name.
func (d *Driver) existing(conn *golibvirt.Libvirt, name string) (done bool, err error) {
	dom, err := conn.DomainLookupByName(name)
	if isCode(err, golibvirt.ErrNoDomain) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up domain %s: %w", name, err)
	}
	t, tagged, err := readTag(conn, dom)
	if err != nil {
		return false, fmt.Errorf("reading the metadata of domain %s: %w", name, err)
	}
	if !tagged {
		return false, fmt.Errorf("domain %s exists and was not started by poolkeeper (no %s metadata): "+
			"refusing to start the VM over it; rename or remove that domain", name, Namespace)
	}
	if !d.mine(t) {
		return false, fmt.Errorf("domain %s exists and belongs to host %s of namespace %s, not to this host %s",
			name, t.Host, t.Namespace, d.opts.Host)
	}
	active, err := conn.DomainIsActive(dom)
	if err != nil {
		return false, fmt.Errorf("reading the state of domain %s: %w", name, err)
	}
	if active == 0 {
		return false, fmt.Errorf("domain %s is defined but not running: poolkeeper runs transient domains "+
			"and does not start a stored definition; undefine it (virsh undefine %s)", name, name)
	}
	d.remember(dom)
	return true, nil
}

// lookupOurs finds the active domain of this host's VM name; ok is false
// when there is none (halted, or a domain poolkeeper must not touch).
func (d *Driver) lookupOurs(conn *golibvirt.Libvirt, name string) (golibvirt.Domain, bool, error) {
	dom, err := conn.DomainLookupByName(DomainName(d.opts.Namespace, name))
	if isCode(err, golibvirt.ErrNoDomain) {
		return dom, false, nil
	}
	if err != nil {
		return dom, false, fmt.Errorf("looking up domain %s: %w", DomainName(d.opts.Namespace, name), err)
	}
	t, tagged, err := readTag(conn, dom)
	if isCode(err, golibvirt.ErrNoDomain) {
		return dom, false, nil
	}
	if err != nil {
		return dom, false, fmt.Errorf("reading the metadata of domain %s: %w", dom.Name, err)
	}
	if !tagged || !d.mine(t) {
		return dom, false, nil
	}
	d.remember(dom)
	return dom, true, nil
}

// Stop implements agent.Driver: an ACPI power-button press, a wait of
// StopTimeout for the guest to power off, then destroy. A VM with no
// domain, or whose domain is not this host's, is halted as far as this
// host is concerned: nothing is done.
func (d *Driver) Stop(ctx context.Context, name string) (err error) {
	defer func() { err = lost(err) }()
	conn, _, err := d.client()
	if err != nil {
		return err
	}
	dom, ok, err := d.lookupOurs(conn, name)
	if err != nil || !ok {
		return err
	}
	if err := conn.DomainShutdownFlags(dom, 0); err != nil && !gone(err) {
		if !isCode(err, golibvirt.ErrOperationInvalid) {
			return fmt.Errorf("shutting down domain %s: %w", dom.Name, err)
		}
	}
	stopped, err := d.waitInactive(ctx, conn, dom, d.opts.StopTimeout)
	if err != nil || stopped {
		return err
	}
	d.log.Info("Guest did not power off in time; destroying its domain", "domain", dom.Name, "timeout", d.opts.StopTimeout)
	return destroy(conn, dom)
}

// waitInactive waits until dom is inactive (true), up to timeout (false).
// Lifecycle events wake it; a slow tick covers an event lost to a
// reconnection.
func (d *Driver) waitInactive(ctx context.Context, conn *golibvirt.Libvirt, dom golibvirt.Domain, timeout time.Duration) (bool, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		ev := d.event
		d.mu.Unlock()
		active, err := conn.DomainIsActive(dom)
		if gone(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading the state of domain %s: %w", dom.Name, err)
		}
		if active == 0 {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline.C:
			return false, nil
		case <-ev:
		case <-time.After(time.Second):
		}
	}
}

// gone says whether err means that the domain no longer exists or runs.
func gone(err error) bool {
	return isCode(err, golibvirt.ErrNoDomain)
}

// destroy kills dom's QEMU; a domain already gone or inactive is fine.
func destroy(conn *golibvirt.Libvirt, dom golibvirt.Domain) error {
	err := conn.DomainDestroyFlags(dom, 0)
	if err == nil || gone(err) {
		return nil
	}
	if active, err2 := conn.DomainIsActive(dom); gone(err2) || (err2 == nil && active == 0) {
		return nil
	}
	return fmt.Errorf("destroying domain %s: %w", dom.Name, err)
}

// StopAll implements agent.Driver, the self-fence: every active domain
// tagged for this host is destroyed at once, with no graceful wait.
func (d *Driver) StopAll(context.Context) (err error) {
	defer func() { err = lost(err) }()
	conn, doms, err := d.active()
	if err != nil {
		return err
	}
	errs := make([]error, len(doms))
	var wg sync.WaitGroup
	for i, o := range doms {
		wg.Go(func() { errs[i] = destroy(conn, o.dom) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close implements agent.Closer: it ends the connection and stops no
// domain.
func (d *Driver) Close() error {
	d.cancel()
	<-d.done
	return nil
}
