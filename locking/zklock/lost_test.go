package zklock

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/locking"
)

// requestConn counts the request packets written on a ZooKeeper connection:
// go-zookeeper writes each packet with one Write, a 4-byte length and then the
// request header's xid, positive for user requests (pings, auth and set-watches
// have negative xids; the connect request has 0 there).
type requestConn struct {
	net.Conn
	n *atomic.Int64
}

func (c requestConn) Write(p []byte) (int, error) {
	if len(p) >= 8 && int32(binary.BigEndian.Uint32(p[4:8])) > 0 {
		c.n.Add(1)
	}
	return c.Conn.Write(p)
}

// countedBackend is a backend whose requests are counted.
func countedBackend(t *testing.T) (*Backend, *atomic.Int64) {
	t.Helper()
	n := &atomic.Int64{}
	b := newBackend(t, "", WithDialer(func(network, addr string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		return requestConn{c, n}, nil
	}))
	return b, n
}

// requests returns how many requests fn sent on the counted backend.
func requests(n *atomic.Int64, fn func()) int64 {
	before := n.Load()
	fn()
	return n.Load() - before
}

func TestLostClaimCostsOneRequest(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	holder := newBackend(t, "")
	b, n := countedBackend(t)
	scope := testScope(t)
	key := locking.Key{Scope: scope, Name: "k"}
	// The loser's first claim in the scope checks the scope's nodes once; take
	// that out of the count.
	warm, err := b.Claim(ctx, locking.Key{Scope: scope, Name: "warm"}, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, warm); err != nil {
		t.Fatal(err)
	}

	g, err := holder.Claim(ctx, key, locking.NewOwner(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		var err error
		if k := requests(n, func() { _, err = b.Claim(ctx, key, locking.NewOwner(), time.Second) }); k != 1 {
			t.Errorf("lost claim %d sent %d requests, want 1", i, k)
		}
		if !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("claim of a held key: %v, want ErrHeld", err)
		}
	}
	// A repeated claim of the holder returns the same grant (and may read).
	again, err := holder.Claim(ctx, key, g.Owner, 2*time.Second)
	if err != nil || again.Token != g.Token {
		t.Errorf("repeated claim: token %d, %v; want %d", again.Token, err, g.Token)
	}

	// A free key: one request, and the winner's token rises.
	free := locking.Key{Scope: scope, Name: "free"}
	var fg locking.Grant
	if k := requests(n, func() { fg, err = b.Claim(ctx, free, locking.NewOwner(), time.Second) }); k != 1 || err != nil {
		t.Fatalf("claim of a free key: %d requests, %v", k, err)
	}
	if fg.Token <= g.Token {
		t.Errorf("token %d after %d, want it to rise", fg.Token, g.Token)
	}

	// A done key: the claim fails at the lock node, then reads the marker's
	// retention.
	if err := holder.Complete(ctx, g, locking.Record{Key: key, Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if k := requests(n, func() { _, err = b.Claim(ctx, key, locking.NewOwner(), time.Second) }); k != 2 || !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim of a done key: %d requests, %v; want 2, ErrDone", k, err)
	}
	if err := b.Release(ctx, fg); err != nil {
		t.Fatal(err)
	}
}

// oldMarker writes a done marker as Complete writes it, by hand: a persistent
// node at the lock path with the marker as data and a child named after owner.
func oldMarker(t *testing.T, c *zk.Conn, b *Backend, key locking.Key, owner string, token uint64, retention time.Duration) {
	t.Helper()
	data, _ := json.Marshal(doneMarker{Owner: owner, Token: token, RetentionMS: retention.Milliseconds()})
	lock := b.lockPath(key)
	acl := zk.WorldACL(zk.PermAll)
	if _, err := c.Multi(
		&zk.CreateRequest{Path: lock, Data: data, Acl: acl, Flags: zk.FlagPersistent},
		&zk.CreateRequest{Path: lock + "/" + owner, Acl: acl, Flags: zk.FlagPersistent},
	); err != nil {
		t.Fatal(err)
	}
}

func TestHandMadeDoneMarkers(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	b := newBackend(t, "")
	c := rawConn(t)
	scope := testScope(t)
	if err := b.ensureScope(ctx, scope); err != nil {
		t.Fatal(err)
	}
	live := locking.Key{Scope: scope, Name: "live"}
	oldMarker(t, c, b, live, locking.NewOwner(), 1, time.Hour)
	if _, err := b.Claim(ctx, live, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim of a live done marker: %v, want ErrDone", err)
	}
	if _, err := b.Acquire(ctx, live, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrDone) {
		t.Errorf("acquire of a live done marker: %v, want ErrDone", err)
	}

	expired := locking.Key{Scope: scope, Name: "expired"}
	oldMarker(t, c, b, expired, locking.NewOwner(), 1, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	g, err := b.Claim(ctx, expired, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatalf("claim of an expired done marker: %v", err)
	}
	if data, st, err := c.Get(b.lockPath(expired)); err != nil || st.EphemeralOwner == 0 || string(data) != g.Owner {
		t.Errorf("lock node after replacing the marker: %q, %+v, %v", data, st, err)
	}
	// A marker left by Complete, expired: replaced too, with a higher token.
	if err := b.Complete(ctx, g, locking.Record{Key: expired}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, expired, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim right after Complete: %v, want ErrDone", err)
	}
	time.Sleep(150 * time.Millisecond)
	g2, err := b.Claim(ctx, expired, locking.NewOwner(), time.Second)
	if err != nil || g2.Token <= g.Token {
		t.Fatalf("claim after the retention: token %d (before %d), %v", g2.Token, g.Token, err)
	}
	if err := b.Release(ctx, g2); err != nil {
		t.Fatal(err)
	}
}

// TestOlderHolders checks the exclusion with a holder that claims as earlier
// versions did (own and lock nodes, no held node) and the other way round.
func TestOlderHolders(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	b := newBackend(t, "")
	c := rawConn(t)
	scope := testScope(t)
	if err := b.ensureScope(ctx, scope); err != nil {
		t.Fatal(err)
	}
	key := locking.Key{Scope: scope, Name: "k"}
	old := locking.NewOwner()
	claimAsOlder(t, b, c, key, old)
	if _, err := b.Claim(ctx, key, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim of a key held the old way: %v, want ErrHeld", err)
	}
	if _, err := c.Multi(
		&zk.DeleteRequest{Path: b.ownPath(key, old), Version: -1},
		&zk.DeleteRequest{Path: b.lockPath(key), Version: -1},
	); err != nil {
		t.Fatal(err)
	}
	g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// An older claimer creates the lock node first: it finds it taken.
	if _, err := c.Create(b.lockPath(key), []byte(old), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNodeExists) {
		t.Errorf("an old-style claim of a held key: %v, want NodeExists", err)
	}
	if err := b.Release(ctx, g); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b.lockPath(key), b.heldPath(key), b.ownPath(key, g.Owner)} {
		if ok, _, err := c.Exists(p); err != nil || ok {
			t.Errorf("%s left after Release (%v)", p, err)
		}
	}
}

// claimAsOlder claims key for owner on c as versions before the held node did:
// lock and own nodes and the fence, no held node.
func claimAsOlder(t *testing.T, b *Backend, c *zk.Conn, key locking.Key, owner string) {
	t.Helper()
	acl := zk.WorldACL(zk.PermAll)
	if _, err := c.Multi(
		&zk.CreateRequest{Path: b.lockPath(key), Data: []byte(owner), Acl: acl, Flags: zk.FlagEphemeral},
		&zk.CreateRequest{Path: b.ownPath(key, owner), Acl: acl, Flags: zk.FlagEphemeral},
		&zk.SetDataRequest{Path: b.fencePath(key.Scope), Version: -1},
	); err != nil {
		t.Fatal(err)
	}
}
