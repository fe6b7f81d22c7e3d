package zklock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// MinSweepNodes is the smallest budget of a Sweep pass that always makes progress
// (list the root, list a phase, read a node, delete it).
const MinSweepNodes = 4

// Sweep deletes what ZooKeeper does not expire on its own: done markers whose
// retention ran out, history records beyond WithMaxRecords or older than
// WithRecordRetention, and empty per-name wait nodes. It sends at most maxNodes
// requests and continues where the previous pass stopped, so a large tree is
// covered over several passes. Every delete is guarded (a done marker is deleted
// together with its owner child, so never a newer one that took its path), so
// any number of replicas may sweep at once. It returns how many nodes it deleted.
func (b *Backend) Sweep(ctx context.Context, maxNodes int) (int, error) {
	if maxNodes < MinSweepNodes {
		return 0, b.wrap("sweep", "", fmt.Errorf("%w: maxNodes %d below %d", locking.ErrInvalid, maxNodes, MinSweepNodes))
	}
	sw := &sweeper{b: b, budget: maxNodes}
	if !sw.spend() {
		return 0, nil
	}
	scopes, err := b.children(ctx, b.root)
	if err != nil {
		return 0, b.wrap("sweep", "", err)
	}
	sort.Strings(scopes)
	b.mu.Lock()
	cur := b.sweepAt
	b.mu.Unlock()
	start := sort.SearchStrings(scopes, cur.scope)
	order := append(slices.Clone(scopes[start:]), scopes[:start]...)
	for i, scope := range order {
		at := sweepCursor{scope: scope}
		if i == 0 && scope == cur.scope {
			at = cur
		}
		next, done, err := sw.scope(ctx, at)
		if err != nil {
			return sw.deleted, b.wrap("sweep", scope, err)
		}
		if !done {
			b.mu.Lock()
			b.sweepAt = next
			b.mu.Unlock()
			return sw.deleted, nil
		}
	}
	b.mu.Lock()
	b.sweepAt = sweepCursor{}
	b.mu.Unlock()
	return sw.deleted, nil
}

type sweeper struct {
	b       *Backend
	budget  int
	deleted int
}

func (s *sweeper) spend() bool {
	if s.budget <= 0 {
		return false
	}
	s.budget--
	return true
}

// sweepCursor is where a sweep pass stopped: a scope, a phase within it and the
// last child name that phase finished.
type sweepCursor struct {
	scope string
	phase int // 0 done markers, 1 wait nodes, 2 records
	name  string
}

// scope sweeps one scope from cursor at. If the budget runs out it returns false
// and the cursor to resume from.
func (s *sweeper) scope(ctx context.Context, at sweepCursor) (sweepCursor, bool, error) {
	b := s.b
	scope := at.scope
	if locking.ValidateScope(scope) != nil {
		return at, true, nil // not one of ours
	}
	if at.phase == 0 { // done markers past their retention
		if !s.spend() {
			return at, false, nil
		}
		names, err := b.children(ctx, b.lockDir(scope))
		if err != nil {
			return at, false, err
		}
		sort.Strings(names)
		for _, name := range names {
			if name <= at.name {
				continue
			}
			if s.budget < 2 { // a read and maybe a delete
				return at, false, nil
			}
			s.spend()
			p := b.lockDir(scope) + "/" + name
			data, stat, _, _, err := b.get(ctx, p)
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return at, false, err
			}
			if err == nil && stat.EphemeralOwner == 0 {
				if m, perr := parseDone(data); perr == nil && b.expired(stat.Ctime, m.RetentionMS) {
					s.spend()
					_, _, _, err = b.multi(ctx, []any{
						&zk.DeleteRequest{Path: p + "/" + m.Owner, Version: -1},
						&zk.DeleteRequest{Path: p, Version: -1},
					}, nil)
					switch {
					case err == nil:
						s.deleted++
					case errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrNotEmpty):
					default:
						return at, false, err
					}
				}
			}
			at.name = name
		}
		at.phase, at.name = 1, ""
	}
	if at.phase == 1 { // empty wait nodes: a delete fails with NotEmpty while anyone waits
		if !s.spend() {
			return at, false, nil
		}
		waits, err := b.children(ctx, b.waitRoot(scope))
		if err != nil {
			return at, false, err
		}
		sort.Strings(waits)
		for _, name := range waits {
			if name <= at.name {
				continue
			}
			if !s.spend() {
				return at, false, nil
			}
			err := b.deleteNode(ctx, b.waitRoot(scope)+"/"+name, -1)
			switch {
			case err == nil:
				s.deleted++
			case errors.Is(err, zk.ErrNotEmpty):
			default:
				return at, false, err
			}
			at.name = name
		}
		at.phase, at.name = 2, ""
	}
	// History records, oldest first: beyond the count, then past the retention.
	if !s.spend() {
		return at, false, nil
	}
	kids, err := b.children(ctx, b.recDir(scope))
	if err != nil {
		return at, false, err
	}
	recs := sortedRecords(kids)
	for len(recs) > b.maxRecs {
		if !s.spend() {
			return at, false, nil
		}
		if err := b.deleteNode(ctx, b.recDir(scope)+"/"+recs[0], -1); err != nil {
			return at, false, err
		}
		s.deleted++
		recs = recs[1:]
	}
	if b.recRet > 0 {
		cutoff := b.clock.Now().Add(-b.recRet)
		for _, r := range recs {
			if s.budget < 2 {
				return at, false, nil
			}
			s.spend()
			var stat *zk.Stat
			var exists bool
			p := b.recDir(scope) + "/" + r
			err := b.do(ctx, func() error {
				_, _, err := b.exec(func() error {
					var e error
					exists, stat, e = b.conn.Exists(p)
					return e
				})
				return err
			})
			if err != nil {
				return at, false, err
			}
			if !exists {
				continue
			}
			if !time.UnixMilli(stat.Ctime).Before(cutoff) {
				break
			}
			s.spend()
			if err := b.deleteNode(ctx, p, -1); err != nil {
				return at, false, err
			}
			s.deleted++
		}
	}
	return at, true, nil
}

// janitor runs Sweep every interval (±10%) until Close.
func (b *Backend) janitor(every time.Duration, maxNodes int) {
	for {
		d := every - every/10 + time.Duration(rand.Int64N(int64(every/5)+1))
		t := time.NewTimer(d)
		select {
		case <-b.closing:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		n, err := b.Sweep(ctx, maxNodes)
		cancel()
		switch {
		case err != nil && !errors.Is(err, locking.ErrClosed):
			b.log.Warn("janitor pass failed", zap.Int("deleted", n), zap.Error(err))
		case n > 0:
			b.log.Debug("janitor pass", zap.Int("deleted", n))
		}
	}
}
