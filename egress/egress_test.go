package egress_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	strict := egress.Policy{}
	dev := egress.Policy{AllowLoopback: true}
	vpc := egress.Policy{AllowPrivate: true}
	open := egress.Policy{AllowLoopback: true, AllowPrivate: true}
	custom := egress.Policy{Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}

	tests := []struct {
		addr    string
		allowed []string // policies (of strict, dev, vpc, open) that allow it
	}{
		{"93.184.216.34", []string{"strict", "dev", "vpc", "open"}},
		{"2606:2800:220:1:248:1893:25c8:1946", []string{"strict", "dev", "vpc", "open"}},
		{"127.0.0.1", []string{"dev", "open"}},
		{"127.1.2.3", []string{"dev", "open"}},
		{"::1", []string{"dev", "open"}},
		{"::ffff:127.0.0.1", []string{"dev", "open"}},
		{"10.1.2.3", []string{"vpc", "open"}},
		{"172.16.0.1", []string{"vpc", "open"}},
		{"172.31.255.255", []string{"vpc", "open"}},
		{"172.32.0.1", []string{"strict", "dev", "vpc", "open"}},
		{"192.168.1.1", []string{"vpc", "open"}},
		{"::ffff:192.168.1.1", []string{"vpc", "open"}},
		{"100.64.0.1", []string{"vpc", "open"}},
		{"100.127.255.254", []string{"vpc", "open"}},
		{"fc00::1", []string{"vpc", "open"}},
		{"fd12:3456::1", []string{"vpc", "open"}},
		// Never allowed.
		{"169.254.169.254", nil},
		{"::ffff:169.254.169.254", nil},
		{"169.254.1.1", nil},
		{"100.100.100.200", nil},
		{"fd00:ec2::254", nil},
		{"fe80::1", nil},
		{"fe80::1%eth0", nil},
		{"0.0.0.0", nil},
		{"0.1.2.3", nil},
		{"::", nil},
		{"224.0.0.1", nil},
		{"239.255.255.250", nil},
		{"255.255.255.255", nil},
		{"ff02::1", nil},
		{"::a9fe:a9fe", nil}, // IPv4-compatible 169.254.169.254
		// Translation prefixes are judged by the IPv4 address inside.
		{"64:ff9b::a9fe:a9fe", nil},
		{"64:ff9b::7f00:1", []string{"dev", "open"}},
		{"64:ff9b::a00:1", []string{"vpc", "open"}},
		{"64:ff9b::5db8:d822", []string{"strict", "dev", "vpc", "open"}},
		{"2002:a9fe:a9fe::1", nil},
		{"2002:c0a8:101::1", []string{"vpc", "open"}},
		{"2002:5db8:d822::1", []string{"strict", "dev", "vpc", "open"}},
	}
	names := map[string]egress.Policy{"strict": strict, "dev": dev, "vpc": vpc, "open": open}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.addr)
		for name, p := range names {
			want := false
			for _, a := range tc.allowed {
				if a == name {
					want = true
				}
			}
			err := p.CheckAddr(ip)
			if want {
				require.NoError(t, err, "%s under %s", tc.addr, name)
			} else {
				require.ErrorIs(t, err, egress.ErrDenied, "%s under %s", tc.addr, name)
				require.Contains(t, err.Error(), ip.String())
			}
		}
	}

	require.ErrorIs(t, custom.CheckAddr(netip.MustParseAddr("203.0.113.9")), egress.ErrDenied)
	require.NoError(t, custom.CheckAddr(netip.MustParseAddr("203.0.114.9")))
	// Deny applies even to addresses the flags would allow.
	denyLoop := egress.Policy{AllowLoopback: true, Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	require.NoError(t, denyLoop.CheckAddr(netip.MustParseAddr("127.0.0.1")))
	require.ErrorIs(t, denyLoop.CheckAddr(netip.MustParseAddr("127.0.0.2")), egress.ErrDenied)
	require.ErrorIs(t, strict.CheckAddr(netip.Addr{}), egress.ErrDenied)
}

func TestControl(t *testing.T) {
	t.Parallel()
	p := egress.Policy{}
	for _, tc := range []struct{ network, address string }{
		{"unix", "/tmp/sock"},
		{"tcp", "example.com:443"}, // names must be resolved before Control
		{"tcp", "garbage"},
		{"tcp", "169.254.169.254:80"},
		{"tcp6", "[fe80::1%eth0]:80"},
	} {
		err := p.Control(tc.network, tc.address, nil)
		require.ErrorIs(t, err, egress.ErrDenied, "%s %s", tc.network, tc.address)
	}
	require.NoError(t, p.Control("tcp4", "93.184.216.34:443", nil))
	require.NoError(t, p.Control("tcp6", "[2606:2800:220:1:248:1893:25c8:1946]:443", nil))
}

func newServer(t *testing.T, network, addr string) *httptest.Server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("a %s listener on %s", network, addr), err.Error())
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, p egress.Policy, target string) error {
	t.Helper()
	tr := p.Transport(nil, nil)
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "ok", string(body))
	return nil
}

func TestTransportRealListeners(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.network, tc.addr)

			err := get(t, egress.Policy{}, srv.URL)
			require.ErrorIs(t, err, egress.ErrDenied)
			require.ErrorContains(t, err, "loopback")

			require.NoError(t, get(t, egress.Policy{AllowLoopback: true}, srv.URL))

			// Private alone does not open loopback.
			require.ErrorIs(t, get(t, egress.Policy{AllowPrivate: true}, srv.URL), egress.ErrDenied)
		})
	}
}

// A host name is checked by the address it resolves to at dial time, which
// is what defeats DNS rebinding: the guard never trusts the name.
func TestTransportChecksResolvedName(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "tcp4", "127.0.0.1:0")
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	addrs, err := net.DefaultResolver.LookupHost(t.Context(), "localhost")
	if err != nil || len(addrs) == 0 {
		testenv.Unavailable(t, "name resolution of localhost", fmt.Sprintf("addresses %v, error %v", addrs, err))
	}
	target := fmt.Sprintf("http://localhost:%s/", port)
	require.ErrorIs(t, get(t, egress.Policy{}, target), egress.ErrDenied)
	require.NoError(t, get(t, egress.Policy{AllowLoopback: true}, target))
}

func TestTransportIgnoresProxy(t *testing.T) {
	t.Parallel()
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.Proxy = func(*http.Request) (*url.URL, error) { return nil, errors.New("proxy must not be consulted") }
	tr := egress.Policy{}.Transport(base, nil)
	require.Nil(t, tr.Proxy)
	require.Nil(t, tr.DialTLSContext)
	require.NotNil(t, tr.DialContext)
}

func TestDialerChainsExistingControl(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "tcp4", "127.0.0.1:0")
	addr := srv.Listener.Addr().String()
	var seen []string
	base := &net.Dialer{Control: func(network, address string, _ syscall.RawConn) error {
		seen = append(seen, address)
		return nil
	}}

	d := egress.Policy{}.Dialer(base)
	_, err := d.DialContext(t.Context(), "tcp", addr)
	require.ErrorIs(t, err, egress.ErrDenied)
	require.Equal(t, []string{addr}, seen)

	conn, err := egress.Policy{AllowLoopback: true}.Dialer(base).DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	require.Len(t, seen, 2)

	// The base dialer's own veto still wins.
	veto := errors.New("vetoed")
	vetoing := &net.Dialer{ControlContext: func(context.Context, string, string, syscall.RawConn) error { return veto }}
	_, err = egress.Policy{AllowLoopback: true}.Dialer(vetoing).DialContext(t.Context(), "tcp", addr)
	require.ErrorIs(t, err, veto)
	// The base dialer is not modified.
	require.Nil(t, base.ControlContext)
}

func TestPolicyString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "allow public", egress.Policy{}.String())
	require.Equal(t, "allow public+loopback+private; deny 203.0.113.0/24", egress.Policy{
		AllowLoopback: true, AllowPrivate: true,
		Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
	}.String())
}

func ExamplePolicy_Transport() {
	policy := egress.Policy{} // production: public addresses only
	client := &http.Client{Transport: policy.Transport(nil, nil)}
	_, err := client.Get("http://169.254.169.254/latest/meta-data/")
	fmt.Println(errors.Is(err, egress.ErrDenied))
	// Output: true
}

func BenchmarkCheckAddr(b *testing.B) {
	p := egress.Policy{AllowLoopback: true}
	ip := netip.MustParseAddr("2606:2800:220:1:248:1893:25c8:1946")
	for b.Loop() {
		if err := p.CheckAddr(ip); err != nil {
			b.Fatal(err)
		}
	}
}
