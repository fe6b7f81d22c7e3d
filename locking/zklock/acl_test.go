package zklock

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
)

// TestWrongCredentials: ZooKeeper accepts any digest credentials when a session
// presents them, so a wrong password would only show as NoAuth on the first
// claim. New reads the namespace root's ACL and fails at once with an ACLError
// (and ErrInvalid) that names the node and the user and says why: a wrong
// password, another identity's nodes, or no credentials. The password never
// appears in the error.
func TestWrongCredentials(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	ns := runNamespace + "-creds"
	owner := newBackend(t, "", WithNamespace(ns), WithDigestAuth("oncecron", "s3cret"))
	key := locking.Key{Scope: testScope(t), Name: "k"}
	if _, err := owner.Claim(ctx, key, locking.NewOwner(), time.Second); err != nil {
		t.Fatal(err)
	}
	root := DefaultRoot + "-" + ns
	for _, tc := range []struct {
		name  string
		opts  []Option
		admit bool // the ACL admits the user (with another password)
		want  []string
	}{
		{"wrong password", []Option{WithDigestAuth("oncecron", "not-the-s3cret")}, true,
			[]string{"node " + root, `digest user "oncecron" do not match its ACL`, "wrong password"}},
		{"another identity", []Option{WithDigestAuth("mallory", "guess-s3cret")}, false,
			[]string{"node " + root, `digest user "mallory"`, "admits only oncecron", "another identity"}},
		{"no credentials", nil, false,
			[]string{"node " + root, "no digest credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{WithSessionTimeout(testSessionTimeout), WithNamespace(ns)}, tc.opts...)
			b, err := New(testCtx(t, 20*time.Second), []string{testenv.ZKAddr(t)}, opts...)
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded")
			}
			t.Logf("New: %v", err)
			var ae *ACLError
			if !errors.As(err, &ae) || !errors.Is(err, locking.ErrInvalid) {
				t.Fatalf("New: %v, want an *ACLError wrapping ErrInvalid", err)
			}
			if ae.Path != root || ae.Below {
				t.Errorf("ACLError.Path = %q (below: %v), want %q", ae.Path, ae.Below, root)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
	// The right credentials still work.
	b := newBackend(t, "", WithNamespace(ns), WithDigestAuth("oncecron", "s3cret"))
	if _, err := b.Claim(ctx, locking.Key{Scope: key.Scope, Name: "k2"}, locking.NewOwner(), time.Second); err != nil {
		t.Errorf("claim with the right credentials: %v", err)
	}
}

// TestNoAuthOnUse: where the root admits the session but a scope's nodes
// belong to another identity, New succeeds and the claim fails with an
// ACLError that wraps zk.ErrNoAuth and ErrInvalid and names the namespace.
func TestNoAuthOnUse(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	ns := runNamespace + "-noauth"
	b := newBackend(t, "", WithNamespace(ns), WithDigestAuth("oncecron", "s3cret"))
	scope := testScope(t)
	other := rawConn(t, "mallory", "guess")
	acl := append(zk.DigestACL(zk.PermAll, "mallory", "guess"), zk.WorldACL(zk.PermRead)...)
	sp := b.scopePath(scope)
	for _, p := range []string{b.root, sp, sp + "/lock", sp + "/own", sp + "/rec", sp + "/wait", b.fencePath(scope)} {
		a := acl
		if p == b.root {
			a = zk.WorldACL(zk.PermAll)
		}
		if _, err := other.Create(p, nil, zk.FlagPersistent, a); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatalf("create %s: %v", p, err)
		}
	}
	_, err := b.Claim(ctx, locking.Key{Scope: scope, Name: "k"}, locking.NewOwner(), time.Second)
	t.Logf("claim: %v", err)
	var ae *ACLError
	if !errors.As(err, &ae) || !errors.Is(err, zk.ErrNoAuth) || !errors.Is(err, locking.ErrInvalid) {
		t.Fatalf("claim: %v, want an *ACLError wrapping zk.ErrNoAuth and ErrInvalid", err)
	}
	for _, s := range []string{"a node under " + b.root, `digest user "oncecron"`, "not authenticated"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}
