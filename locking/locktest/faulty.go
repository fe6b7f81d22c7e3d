package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// FaultyBackend wraps a Backend for backends without a network to cut (the
// in-memory one): while cut, every call hangs until its context ends and then
// fails with ErrUnavailable, as a call over a partitioned network would.
// Networked backends are cut with a real proxy instead.
type FaultyBackend struct {
	locking.Backend
	mu   sync.Mutex
	cut  bool
	heal chan struct{}
}

// NewFaultyBackend wraps b, initially healthy.
func NewFaultyBackend(b locking.Backend) *FaultyBackend {
	return &FaultyBackend{Backend: b, heal: make(chan struct{})}
}

// Cut implements Fault.
func (f *FaultyBackend) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.cut {
		f.cut = true
		f.heal = make(chan struct{})
	}
}

// Heal implements Fault.
func (f *FaultyBackend) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		f.cut = false
		close(f.heal)
	}
}

func (f *FaultyBackend) gate(ctx context.Context, op string) error {
	f.mu.Lock()
	cut, heal := f.cut, f.heal
	f.mu.Unlock()
	if !cut {
		return nil
	}
	select {
	case <-heal:
		// The request "arrives" only after the cut; a real network would have
		// dropped it. Fail it as the timeout the caller would have seen.
		return fmt.Errorf("faulty %s: %w", op, locking.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("faulty %s: %w", op, errors.Join(locking.ErrUnavailable, ctx.Err()))
	case <-time.After(time.Hour):
		return fmt.Errorf("faulty %s: %w", op, locking.ErrUnavailable)
	}
}

// Claim implements locking.Backend.
func (f *FaultyBackend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	if err := f.gate(ctx, "claim"); err != nil {
		return locking.Grant{}, err
	}
	return f.Backend.Claim(ctx, key, owner, ttl)
}

// Renew implements locking.Backend.
func (f *FaultyBackend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	if err := f.gate(ctx, "renew"); err != nil {
		return locking.Grant{}, err
	}
	return f.Backend.Renew(ctx, g, ttl)
}

// Complete implements locking.Backend.
func (f *FaultyBackend) Complete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) error {
	if err := f.gate(ctx, "complete"); err != nil {
		return err
	}
	return f.Backend.Complete(ctx, g, rec, retention)
}

// Release implements locking.Backend.
func (f *FaultyBackend) Release(ctx context.Context, g locking.Grant) error {
	if err := f.gate(ctx, "release"); err != nil {
		return err
	}
	return f.Backend.Release(ctx, g)
}

// AddRecord implements locking.Backend.
func (f *FaultyBackend) AddRecord(ctx context.Context, rec locking.Record) error {
	if err := f.gate(ctx, "add record"); err != nil {
		return err
	}
	return f.Backend.AddRecord(ctx, rec)
}

// Records implements locking.Backend.
func (f *FaultyBackend) Records(ctx context.Context, scope string, limit int) ([]locking.Record, error) {
	if err := f.gate(ctx, "records"); err != nil {
		return nil, err
	}
	return f.Backend.Records(ctx, scope, limit)
}

// Close implements locking.Backend. The wrapped backend is closed by its owner.
func (f *FaultyBackend) Close() error { return nil }
