// Package egress refuses outbound connections to addresses a webhook must
// never reach: cloud metadata services, link-local, multicast and
// unspecified addresses always; loopback and private networks unless the
// Policy allows them.
//
// The check runs at dial time on the IP actually being connected to
// ([Policy.Control] as net.Dialer.ControlContext), not on the URL's host
// name, so DNS rebinding (a name that resolves to a public address when
// validated and to 169.254.169.254 when dialed) cannot dodge it, and each
// redirect hop and each resolved address of a happy-eyeballs dial is checked
// too.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// The dial timeouts http.DefaultTransport uses.
const (
	defaultDialTimeout = 30 * time.Second
	defaultKeepAlive   = 30 * time.Second
)

// ErrDenied is wrapped by every refusal; the wrapping error names the
// address and why. A delivery to a denied address will not succeed by
// retrying.
var ErrDenied = errors.New("egress: destination denied")

// Policy decides which destination addresses may be dialed. The zero value
// is the production policy: public unicast addresses only.
type Policy struct {
	// AllowLoopback permits 127.0.0.0/8 and ::1 (dev stacks and tests).
	AllowLoopback bool
	// AllowPrivate permits RFC 1918, CGNAT 100.64.0.0/10, benchmarking
	// 198.18.0.0/15 and IPv6 unique-local fc00::/7 addresses (webhooks to
	// services in the same VPC). It never permits link-local or metadata
	// addresses.
	AllowPrivate bool
	// Deny lists further prefixes to refuse, such as the deployment's own
	// public ranges.
	Deny []netip.Prefix
}

// alwaysDenied are never a legitimate webhook destination, whatever the
// policy says: reaching them from a worker is how SSRF steals cloud
// credentials.
var alwaysDenied = prefixes(
	"0.0.0.0/8",          // "this network", includes unspecified
	"169.254.0.0/16",     // link-local; AWS/GCP/Azure/OCI metadata 169.254.169.254
	"100.100.100.200/32", // Alibaba Cloud metadata
	"192.0.0.0/24",       // IETF protocol assignments
	"224.0.0.0/4",        // multicast
	"240.0.0.0/4",        // reserved, includes broadcast 255.255.255.255
	"::/128",             // unspecified
	"fe80::/10",          // link-local
	"fec0::/10",          // deprecated site-local
	"ff00::/8",           // multicast
	"fd00:ec2::254/128",  // AWS metadata over IPv6 (inside fc00::/7)
	"100::/64",           // discard-only
	"::/96",              // deprecated IPv4-compatible (::1 is checked first)
)

var loopback = prefixes("127.0.0.0/8", "::1/128")

var private = prefixes(
	"10.0.0.0/8",
	"172.16.0.0/12",
	"192.168.0.0/16",
	"100.64.0.0/10", // CGNAT, also used for cluster-internal networks
	"198.18.0.0/15", // benchmarking, sometimes used internally
	"fc00::/7",      // unique local
)

// Prefixes whose addresses carry an IPv4 address that a gateway will reach
// on our behalf; the embedded address is judged instead.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Loc  = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// CheckAddr reports whether ip may be dialed, wrapping ErrDenied if not.
func (p Policy) CheckAddr(ip netip.Addr) error {
	if reason := p.reason(ip); reason != "" {
		return fmt.Errorf("%w: %s is %s", ErrDenied, ip, reason)
	}
	return nil
}

func (p Policy) reason(ip netip.Addr) string {
	if !ip.IsValid() {
		return "not a valid IP address"
	}
	// ::ffff:a.b.c.d reaches a.b.c.d; judge that. The zone only matters
	// for link-local addresses, which are refused anyway.
	ip = ip.Unmap().WithZone("")
	for _, d := range p.Deny {
		if d.Contains(ip) {
			return "in denied prefix " + d.String()
		}
	}
	if contains(loopback, ip) {
		if p.AllowLoopback {
			return ""
		}
		return "loopback"
	}
	if contains(alwaysDenied, ip) {
		return "link-local, metadata, multicast or reserved"
	}
	if contains(private, ip) {
		if p.AllowPrivate {
			return ""
		}
		return "private"
	}
	if ip.Is6() {
		b := ip.As16()
		var v4 [4]byte
		switch {
		case nat64.Contains(ip):
			copy(v4[:], b[12:16])
		case nat64Loc.Contains(ip):
			// RFC 6052 /48: the IPv4 address straddles the reserved u octet.
			v4 = [4]byte{b[6], b[7], b[9], b[10]}
		case sixToFour.Contains(ip):
			copy(v4[:], b[2:6])
		default:
			return ""
		}
		if r := p.reason(netip.AddrFrom4(v4)); r != "" {
			return "a translated address of " + netip.AddrFrom4(v4).String() + ", which is " + r
		}
	}
	return ""
}

func contains(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Control checks the address a socket is about to connect to. Its signature
// matches net.Dialer.Control; the dialer calls it after name resolution with
// a literal "ip:port", once per address tried.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return fmt.Errorf("%w: network %q is not IP", ErrDenied, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not a literal ip:port", ErrDenied, address)
	}
	if reason := p.reason(ap.Addr()); reason != "" {
		return fmt.Errorf("%w: %s is %s", ErrDenied, address, reason)
	}
	return nil
}

// Dialer returns a copy of base (a zero net.Dialer when nil) whose dials
// pass through Control. A Control or ControlContext already set on base
// still runs, before the policy.
func (p Policy) Dialer(base *net.Dialer) *net.Dialer {
	var d net.Dialer
	if base != nil {
		d = *base
	}
	prevCtx, prev := d.ControlContext, d.Control
	d.Control = nil // ignored when ControlContext is set; clear to avoid confusion
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		switch {
		case prevCtx != nil:
			if err := prevCtx(ctx, network, address, c); err != nil {
				return err
			}
		case prev != nil:
			if err := prev(network, address, c); err != nil {
				return err
			}
		}
		return p.Control(network, address, c)
	}
	return &d
}

// Transport returns a clone of base (http.DefaultTransport when nil) that
// dials through Dialer(dialer). Proxies are disabled, since through a proxy
// the guard would only see the proxy's address and the proxy would reach
// anything; a custom DialTLSContext is dropped for the same reason (TLS
// still works, layered over the guarded dial).
func (p Policy) Transport(base *http.Transport, dialer *net.Dialer) *http.Transport {
	var t *http.Transport
	if base != nil {
		t = base.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	if dialer == nil {
		dialer = &net.Dialer{Timeout: defaultDialTimeout, KeepAlive: defaultKeepAlive}
	}
	t.Proxy = nil
	t.DialTLSContext = nil
	//lint:ignore SA1019 a deprecated hook left set would still bypass the guard
	t.DialTLS = nil
	// DialContext takes priority over the deprecated Dial, so Dial needs no
	// clearing.
	t.DialContext = p.Dialer(dialer).DialContext
	return t
}

// String summarises the policy for startup logs.
func (p Policy) String() string {
	parts := []string{"public"}
	if p.AllowLoopback {
		parts = append(parts, "loopback")
	}
	if p.AllowPrivate {
		parts = append(parts, "private")
	}
	s := "allow " + strings.Join(parts, "+")
	if len(p.Deny) > 0 {
		ds := make([]string, len(p.Deny))
		for i, d := range p.Deny {
			ds[i] = d.String()
		}
		s += "; deny " + strings.Join(ds, ",")
	}
	return s
}
