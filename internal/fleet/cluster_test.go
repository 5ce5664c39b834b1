package fleet

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// cluster is a JetStream cluster of embedded servers on loopback, each on fixed
// ports so that a stopped server can come back where its peers and clients look for
// it. Servers do not advertise each other to clients: a client knows only the URLs
// it was given, which lets a test cut one off.
type cluster struct {
	t     testing.TB
	opts  []*server.Options
	nodes []*server.Server
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newCluster(t testing.TB, n int) *cluster {
	c := &cluster{t: t, nodes: make([]*server.Server, n)}
	routePorts := make([]int, n)
	for i := range n {
		routePorts[i] = freePort(t)
	}
	for i := range n {
		o := &server.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: freePort(t),
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true, ClientAdvertise: "",
			Cluster: server.ClusterOpts{Name: "fleet", Host: "127.0.0.1", Port: routePorts[i], NoAdvertise: true}}
		for j, p := range routePorts {
			if j != i {
				o.Routes = append(o.Routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
			}
		}
		c.opts = append(c.opts, o)
	}
	for i := range n {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, s := range c.nodes {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	c.waitLeader()
	return c
}

func (c *cluster) start(i int) {
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("server %d not ready", i)
	}
	c.nodes[i] = s
}

func (c *cluster) stop(i int) {
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
	c.nodes[i] = nil
}

// waitLeader waits until the servers running have elected a JetStream meta leader.
func (c *cluster) waitLeader() {
	c.t.Helper()
	eventually(c.t, 30*time.Second, "no JetStream meta leader", func() bool {
		for _, s := range c.nodes {
			if s != nil && s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
}

func (c *cluster) url(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port) }

// urls lists every server's URL, starting with server i's.
func (c *cluster) urls(i int) []string {
	var out []string
	for j := range c.opts {
		out = append(out, c.url((i+j)%len(c.opts)))
	}
	return out
}

// proxy forwards a loopback port to a server until cut: then it closes every
// connection and refuses new ones, as a partition would, until restored.
type proxy struct {
	t      testing.TB
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{t: t, target: target, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	p.restore()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) url() string { return "nats://" + p.addr }

func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}
