package fleet

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/portsentry-go/portsentry/internal/bans"
)

func bansBan(p string, now time.Time) bans.Ban {
	return bans.Ban{Prefix: netip.MustParsePrefix(p), Start: now, Until: now.Add(time.Hour)}
}

// hostPermissions are the permissions docs/fleet.md gives a host with FLEET_MODE
// "both": publish to its own subjects and to the parts of the JetStream API it uses
// (no stream update, delete or purge, no message delete), read only its own inbox.
func hostPermissions(name, stream string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			OriginSubjects(name),
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.STREAM.CREATE." + stream,
			"$JS.API.CONSUMER.CREATE." + stream + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
			"$JS.API.CONSUMER.INFO." + stream + ".>",
			"$JS.API.CONSUMER.DELETE." + stream + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix(name) + ".>"}},
	}
}

// TestFleetPermissions: with the documented permissions the fleet works, and a host
// can neither speak for another nor purge or delete the stream's bans.
func TestFleetPermissions(t *testing.T) {
	const stream = "PORTSENTRY_BANS"
	o := &server.Options{Host: "127.0.0.1", Port: freePort(t), JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	for _, n := range []string{"a", "b", "c"} {
		o.Users = append(o.Users, &server.User{Username: n, Password: "pw-" + n, Permissions: hostPermissions(n, stream)})
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := func(n string) []string { return []string{fmt.Sprintf("nats://%s:pw-%s@127.0.0.1:%d", n, n, o.Port)} }
	a, b, c := newHost(t, "a", url("a")), newHost(t, "b", url("b")), newHost(t, "c", url("c"))
	eventually(t, within, "not every host linked", all([]*host{a, b, c}, func(h *host) bool { return h.a.streamOK.Load() }))
	x := netip.MustParsePrefix("203.0.113.9/32")
	a.block(t, x, time.Hour)
	eventually(t, within, "a's ban did not reach b and c", all([]*host{b, c}, func(h *host) bool { return h.holds(x, "a") }))

	violations := make(chan error, 16)
	nc, err := nats.Connect(url("b")[0], nats.CustomInboxPrefix(InboxPrefix("b")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	now := time.Now()
	forged := FromBan("a", OpBan, bansBan("198.51.100.99/32", now), now)
	if err := nc.Publish(Subject("a", forged.Prefix), forged.Encode()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("publishing as a: %v, want a permission violation", err)
		}
	case <-time.After(within):
		t.Fatal("publishing on a's subject as b was not refused")
	}
	for _, api := range []string{"$JS.API.STREAM.PURGE." + stream, "$JS.API.STREAM.DELETE." + stream,
		"$JS.API.STREAM.MSG.DELETE." + stream, "$JS.API.STREAM.UPDATE." + stream} {
		if _, err := nc.Request(api, []byte("{}"), 2*time.Second); err == nil {
			t.Errorf("%s was answered", api)
		}
	}
	if !c.holds(x, "a") || c.has(forged.Prefix) {
		t.Error("c's bans changed")
	}
}

// TestExampleServerConfig: the example server configuration we ship parses, and gives
// each host exactly the permissions TestFleetPermissions proves enough.
func TestExampleServerConfig(t *testing.T) {
	o, err := server.ProcessConfigFile("../../packaging/debian/nats-fleet.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !o.JetStream || o.Cluster.Name == "" || len(o.Routes) != 2 {
		t.Errorf("JetStream %v, cluster %q, %d routes", o.JetStream, o.Cluster.Name, len(o.Routes))
	}
	if len(o.Users) != 2 {
		t.Fatalf("%d users", len(o.Users))
	}
	for _, u := range o.Users {
		want := hostPermissions(u.Username, "PORTSENTRY_BANS")
		got := u.Permissions
		if got == nil || !slices.Equal(got.Publish.Allow, want.Publish.Allow) || !slices.Equal(got.Subscribe.Allow, want.Subscribe.Allow) ||
			len(got.Publish.Deny)+len(got.Subscribe.Deny) > 0 {
			t.Errorf("%s: permissions %+v %+v, want %+v %+v", u.Username, got.Publish, got.Subscribe, want.Publish, want.Subscribe)
		}
	}
}
