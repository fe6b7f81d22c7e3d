package etcdlock_test

import (
	"errors"
	"testing"

	"github.com/oncecron/oncecron/locking"
)

// TestLegacyMarkersLearnedPerScope: a Backend compares a scope's legacy done
// markers (see TestLegacyDoneMarker) until one of its claims counts none there,
// then stops comparing for that scope; it learns from won and lost claims,
// batches and Acquire alike, and a scope that still holds markers keeps
// honouring every one, including one written later.
//
// A marker written after a scope was learned clean can only come from an older
// build running beside this one, which the package documentation rules out; the
// test writes one only to show that the compare is gone.
func TestLegacyMarkersLearnedPerScope(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b := newBackend(t, ns)
	other := newBackend(t, ns)
	raw := rawClient(t)
	k := func(scope, name string) locking.Key { return locking.Key{Scope: scope, Name: name} }
	mark := func(scope, name string) {
		t.Helper()
		if _, err := raw.Put(ctx, "/"+ns+"/"+scope+"/done/"+name, locking.NewOwner()); err != nil {
			t.Fatal(err)
		}
	}

	learn := map[string]func() error{
		"won": func() error { _, err := b.Claim(ctx, k("won", "a"), locking.NewOwner(), ttl); return err },
		"lost": func() error {
			if _, err := other.Claim(ctx, k("lost", "a"), locking.NewOwner(), ttl); err != nil {
				return err
			}
			if _, err := b.Claim(ctx, k("lost", "a"), locking.NewOwner(), ttl); !errors.Is(err, locking.ErrHeld) {
				return errors.Join(errors.New("claim of a held key: want ErrHeld"), err)
			}
			return nil
		},
		"batch": func() error {
			return b.ClaimBatch(ctx, []locking.ClaimRequest{{Key: k("batch", "a"), Owner: locking.NewOwner(), TTL: ttl}})[0].Err
		},
		"acquire": func() error { _, err := b.Acquire(ctx, k("acquire", "a"), locking.NewOwner(), ttl); return err },
	}
	for scope, f := range learn {
		if err := f(); err != nil {
			t.Fatalf("%s: %v", scope, err)
		}
		mark(scope, "late")
		if _, err := b.Claim(ctx, k(scope, "late"), locking.NewOwner(), ttl); err != nil {
			t.Errorf("%s: claim in a scope learned clean: %v; the legacy compare should be gone", scope, err)
		}
	}

	// A scope with a marker stays compared: the probe of a claim that wins
	// another key of the scope counts it.
	mark("dirty", "a")
	if _, err := b.Claim(ctx, k("dirty", "b"), locking.NewOwner(), ttl); err != nil {
		t.Fatal(err)
	}
	mark("dirty", "late")
	for _, name := range []string{"a", "late"} {
		if _, err := b.Claim(ctx, k("dirty", name), locking.NewOwner(), ttl); !errors.Is(err, locking.ErrDone) {
			t.Errorf("claim of dirty/%s, which has a legacy marker: %v, want ErrDone", name, err)
		}
		if _, err := b.Acquire(ctx, k("dirty", name), locking.NewOwner(), ttl); !errors.Is(err, locking.ErrDone) {
			t.Errorf("acquire of dirty/%s, which has a legacy marker: %v, want ErrDone", name, err)
		}
	}
}
