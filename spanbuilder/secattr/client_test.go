package secattr

import (
	"net/netip"
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

func TestClientAddr(t *testing.T) {
	e := mustExtractor(t, config.Security{TrustedProxies: []string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"}})
	tests := []struct {
		name   string
		peer   string
		h      decoder.Header
		want   string
		subnet string
	}{
		{"no proxy", "203.0.113.9", nil, "203.0.113.9", "203.0.113.0/24"},
		{"untrusted peer spoofing xff", "203.0.113.9", hdr("X-Forwarded-For", "1.2.3.4"), "203.0.113.9", "203.0.113.0/24"},
		{"untrusted peer spoofing forwarded", "203.0.113.9", hdr("Forwarded", "for=1.2.3.4"), "203.0.113.9", "203.0.113.0/24"},
		{"trusted peer without headers", "10.1.1.1", nil, "10.1.1.1", "10.1.1.0/24"},
		{"trusted peer xff", "10.1.1.1", hdr("X-Forwarded-For", "198.51.100.20"), "198.51.100.20", "198.51.100.0/24"},
		{"right-most untrusted", "10.1.1.1", hdr("X-Forwarded-For", "6.6.6.6, 198.51.100.20, 10.2.2.2"), "198.51.100.20", "198.51.100.0/24"},
		{"several xff headers in order", "10.1.1.1", hdr("X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "198.51.100.20, 10.9.9.9"), "198.51.100.20", ""},
		{"all trusted", "10.1.1.1", hdr("X-Forwarded-For", "10.3.3.3, 192.0.2.1"), "10.3.3.3", ""},
		{"garbage stops the walk", "10.1.1.1", hdr("X-Forwarded-For", "6.6.6.6, not-an-ip, 10.2.2.2"), "10.2.2.2", ""},
		{"garbage right after peer", "10.1.1.1", hdr("X-Forwarded-For", "6.6.6.6, <script>"), "10.1.1.1", ""},
		{"empty entries skipped", "10.1.1.1", hdr("X-Forwarded-For", "198.51.100.20,, "), "198.51.100.20", ""},
		{"ipv4 with port", "10.1.1.1", hdr("X-Forwarded-For", "198.51.100.20:4711"), "198.51.100.20", ""},
		{"bare ipv6", "10.1.1.1", hdr("X-Forwarded-For", "2001:db8:1:2::5"), "2001:db8:1:2::5", "2001:db8:1::/48"},
		{"mapped ipv4 peer", "::ffff:10.1.1.1", hdr("X-Forwarded-For", "198.51.100.20"), "198.51.100.20", ""},
		{"forwarded", "10.1.1.1", hdr("Forwarded", "for=198.51.100.20;proto=https;by=10.1.1.1"), "198.51.100.20", ""},
		{"forwarded quoted ipv6 port", "2001:db8:ffff::1", hdr("Forwarded", `for="[2001:db8:cafe::17]:4711"`), "2001:db8:cafe::17", "2001:db8:cafe::/48"},
		{"forwarded list", "10.1.1.1", hdr("Forwarded", `for=6.6.6.6, For="198.51.100.20", for=10.2.2.2`), "198.51.100.20", ""},
		{"forwarded quoted comma", "10.1.1.1", hdr("Forwarded", `for=6.6.6.6;x="a,b", for=198.51.100.20`), "198.51.100.20", ""},
		{"forwarded obfuscated stops", "10.1.1.1", hdr("Forwarded", "for=6.6.6.6, for=_hidden, for=10.2.2.2"), "10.2.2.2", ""},
		{"forwarded unknown stops", "10.1.1.1", hdr("Forwarded", "for=6.6.6.6, for=unknown"), "10.1.1.1", ""},
		{"forwarded without for stops", "10.1.1.1", hdr("Forwarded", "for=6.6.6.6, proto=http"), "10.1.1.1", ""},
		{"forwarded obfuscated port", "10.1.1.1", hdr("Forwarded", `for="198.51.100.20:_p1"`), "198.51.100.20", ""},
		{"forwarded unterminated quote", "10.1.1.1", hdr("Forwarded", `for="198.51.100.20`), "10.1.1.1", ""},
		{"forwarded wins over xff", "10.1.1.1", hdr("Forwarded", "for=198.51.100.20", "X-Forwarded-For", "6.6.6.6"), "198.51.100.20", ""},
		{"crlf injection", "10.1.1.1", hdr("X-Forwarded-For", "6.6.6.6\r\nX-Evil: 1, 198.51.100.20"), "198.51.100.20", ""},
		{"invalid peer", "", hdr("X-Forwarded-For", "6.6.6.6"), "invalid IP", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(config.KindLogin, request("/login", ""), nil, "")
			in.Request.Header = tt.h
			in.Peer = netip.Addr{}
			if tt.peer != "" {
				in.Peer = netip.MustParseAddr(tt.peer)
			}
			out := e.Extract(in)
			if got := out.ClientAddr.String(); got != tt.want {
				t.Errorf("ClientAddr = %s, want %s", got, tt.want)
			}
			if tt.subnet != "" {
				if out.ClientSubnet != tt.subnet || attrs(t, out)["auth.client.subnet"].AsString() != tt.subnet {
					t.Errorf("subnet = %q, want %q", out.ClientSubnet, tt.subnet)
				}
			}
		})
	}

	off := mustExtractor(t, config.Security{ClientSubnet: ptr(false)})
	out := off.Extract(input(config.KindLogin, request("/login", ""), nil, ""))
	if _, ok := attrs(t, out)["auth.client.subnet"]; ok || out.ClientSubnet != "" {
		t.Errorf("client_subnet=false still gave %q", out.ClientSubnet)
	}
}
