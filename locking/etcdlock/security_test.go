package etcdlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

// TestAuthentication runs against an etcd with authentication on, where the
// user oncecron may read and write only its namespace's keys: with the right
// password the backend claims, renews and completes; a wrong password, an
// unknown user, no credentials at all and a namespace outside the user's
// permission each fail New at once with ErrInvalid and an error that names the
// endpoint, the user and the cause.
func TestAuthentication(t *testing.T) {
	srv := testenv.StartEtcd(t)
	ns := newNamespace()
	testenv.EnableEtcdAuth(t, srv.Addr(), nil, "root-secret",
		testenv.EtcdUser{Name: "oncecron", Password: "right", Prefix: "/" + ns + "/"})

	t.Run("right password", func(t *testing.T) {
		b := newBackendAt(t, srv.Addr(), ns, etcdlock.WithAuth("oncecron", "right"))
		useBackend(t, b)
	})
	for _, tc := range []struct {
		name, ns, user, pass string
		want                 []string
	}{
		{"wrong password", ns, "oncecron", "wrong", []string{`user "oncecron"`, "authentication failed"}},
		{"unknown user", ns, "mallory", "guess", []string{`user "mallory"`, "authentication failed"}},
		{"no credentials", ns, "", "", []string{"no user name and password were given", "user name is empty"}},
		{"namespace not permitted", newNamespace(), "oncecron", "right", []string{`user "oncecron"`, "permission denied"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []etcdlock.Option{etcdlock.WithNamespace(tc.ns), etcdlock.WithLogger(testLogger(t))}
			if tc.user != "" {
				opts = append(opts, etcdlock.WithAuth(tc.user, tc.pass))
			}
			checkRefused(t, srv.Addr(), locking.ErrInvalid, append(tc.want, srv.Addr()), opts...)
		})
	}
}

// TestTLS runs against an etcd that serves clients over TLS only and requires
// a client certificate signed by its authority: a client with one works (also
// through WithTLS's PEM files); clients without a certificate, trusting
// another authority, or speaking plain text are refused within the dial
// timeout with an error naming the endpoint and the cause.
func TestTLS(t *testing.T) {
	certs := testenv.NewCerts(t)
	srv := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: certs, ClientCertAuth: true})
	other := testenv.NewCerts(t)

	t.Run("client certificate", func(t *testing.T) {
		b := newBackendAt(t, srv.Addr(), newNamespace(), etcdlock.WithTLSConfig(testenv.ClientTLS(t, certs.CAFile, certs)))
		useBackend(t, b)
	})
	t.Run("PEM files", func(t *testing.T) {
		b := newBackendAt(t, "https://"+srv.Addr(), newNamespace(), etcdlock.WithTLS(etcdlock.TLSFiles{
			CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile, ServerName: "localhost",
		}))
		useBackend(t, b)
	})
	for _, tc := range []struct {
		name string
		opts []etcdlock.Option
		want []string
	}{
		{"no client certificate", []etcdlock.Option{etcdlock.WithTLSConfig(testenv.ClientTLS(t, certs.CAFile, nil))}, []string{"certificate required"}},
		{"client certificate of another authority", []etcdlock.Option{etcdlock.WithTLSConfig(testenv.ClientTLS(t, certs.CAFile, other))}, []string{"unknown certificate authority"}},
		{"server of another authority", []etcdlock.Option{etcdlock.WithTLSConfig(testenv.ClientTLS(t, other.CAFile, certs))}, []string{"certificate signed by unknown authority"}},
		{"plain text", nil, []string{"expect TLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits for the dial timeout
			opts := append([]etcdlock.Option{etcdlock.WithNamespace(newNamespace()), etcdlock.WithLogger(testLogger(t)),
				etcdlock.WithDialTimeout(time.Second)}, tc.opts...)
			checkRefused(t, srv.Addr(), locking.ErrUnavailable, append(tc.want, srv.Addr()), opts...)
		})
	}
}

// TestTLSWithAuthentication: TLS and password authentication together, as a
// production cluster runs them.
func TestTLSWithAuthentication(t *testing.T) {
	certs := testenv.NewCerts(t)
	srv := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: certs})
	ns := newNamespace()
	tc := testenv.ClientTLS(t, certs.CAFile, nil)
	testenv.EnableEtcdAuth(t, srv.Addr(), tc, "root-secret",
		testenv.EtcdUser{Name: "oncecron", Password: "right", Prefix: "/" + ns + "/"})
	b := newBackendAt(t, srv.Addr(), ns, etcdlock.WithTLSConfig(tc), etcdlock.WithAuth("oncecron", "right"))
	useBackend(t, b)
	checkRefused(t, srv.Addr(), locking.ErrInvalid, []string{`user "oncecron"`, "authentication failed"},
		etcdlock.WithNamespace(ns), etcdlock.WithTLSConfig(tc), etcdlock.WithAuth("oncecron", "wrong"))
}

// useBackend claims, renews, waits for (a watch) and completes a key: every
// kind of request the backend makes.
func useBackend(t *testing.T, b *etcdlock.Backend) {
	t.Helper()
	ctx := testCtx(t)
	l := newLocker(t, b)
	key := locking.Key{Scope: "secure", Name: "k"}
	lease, err := l.Claim(ctx, key, ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := lease.Renew(ctx); err != nil {
		t.Errorf("renew: %v", err)
	}
	// Acquire of a held key queues and watches its predecessor.
	wkey := locking.Key{Scope: "secure", Name: "w"}
	holder, err := l.Claim(ctx, wkey, ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	acquired := make(chan error, 1)
	go func() {
		w, err := l.Acquire(ctx, wkey, ttl)
		if err == nil {
			err = w.Release(ctx)
		}
		acquired <- err
	}()
	time.AfterFunc(100*time.Millisecond, func() { _ = holder.Release(ctx) })
	if err := <-acquired; err != nil {
		t.Errorf("acquire: %v", err)
	}
	if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute); err != nil {
		t.Errorf("complete: %v", err)
	}
	if _, err := l.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim of the completed key: %v, want ErrDone", err)
	}
}

// checkRefused checks that New fails fast with an error wrapping sentinel and
// containing every string of want.
func checkRefused(t *testing.T, addr string, sentinel error, want []string, opts ...etcdlock.Option) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	b, err := etcdlock.New(ctx, []string{addr}, opts...)
	if err == nil {
		_ = b.Close()
		t.Fatal("New succeeded")
	}
	t.Logf("New: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
	if !errors.Is(err, sentinel) {
		t.Errorf("New: got %v, want %v", err, sentinel)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("New: error %q does not say %q", err, s)
		}
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("New took %v to fail", took)
	}
}
