package etcdlock

import (
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// Builds before the done value (1e356e8) kept a completed key's done marker
// under a key of its own, legacyDoneKey. Claims honour such a marker with a
// second compare, on a key that is normally absent; legacyScopes lets a
// Backend drop that compare for a scope once it has seen that the scope holds
// none. A claim that still compares also counts the scope's legacy markers
// (its probe, at most one a legacyProbeEvery per scope, since a count walks
// every marker of the scope); when the count, read in the claim's own
// transaction, is zero, the scope is clean for the rest of the Backend's life.
// Only an older build writes a legacy marker, and older builds must not run
// beside this one (the package documentation says to stop them first), so none
// can appear in a clean scope afterwards.

// legacyProbeEvery bounds how often claims of one scope count its legacy
// markers while some remain.
const legacyProbeEvery = time.Minute

// maxLegacyScopes bounds what legacyScopes remembers: when it is full, it
// forgets everything and learns again (a clean scope is probed once more).
const maxLegacyScopes = 1 << 16

// legacyScopes remembers, per scope, whether its legacy done markers may
// still exist and when a claim last counted them.
type legacyScopes struct {
	mu sync.Mutex
	m  map[string]legacyScope
}

type legacyScope struct {
	clean  bool      // no legacy marker left
	probed time.Time // when a claim last counted them
}

// plan says what a claim in scope at now must add: the compare of the key's
// legacy marker (unless the scope is clean), and the probe (when none was sent
// in the last legacyProbeEvery).
func (l *legacyScopes) plan(scope string, now time.Time) (compare, probe bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.m[scope]
	switch {
	case ok && s.clean:
		return false, false
	case ok && now.Sub(s.probed) < legacyProbeEvery && now.Sub(s.probed) >= 0:
		return true, false
	}
	l.set(scope, legacyScope{probed: now})
	return true, true
}

// set remembers s for scope, forgetting everything first if full; l.mu held.
func (l *legacyScopes) set(scope string, s legacyScope) {
	if _, ok := l.m[scope]; !ok && (l.m == nil || len(l.m) >= maxLegacyScopes) {
		l.m = map[string]legacyScope{}
	}
	l.m[scope] = s
}

// learn records the answer of a probe of scope: count legacy markers.
func (l *legacyScopes) learn(scope string, count int64) {
	if count != 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set(scope, legacyScope{clean: true})
}

// isClean reports whether scope is known to hold no legacy marker.
func (l *legacyScopes) isClean(scope string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[scope].clean
}

// legacyPrefix is the prefix of scope's legacy done markers.
func (b *Backend) legacyPrefix(scope string) string { return b.scopePrefix(scope) + "done/" }

// legacyOps is what a claim of key adds to honour legacy done markers: a
// compare that key's marker is absent and a count of it (an else operation);
// and, when plan says so, the probe, a count of the scope's markers, at the end
// of both branches. Nothing for a clean scope.
func (b *Backend) legacyOps(key locking.Key) (cmps []clientv3.Cmp, then, els []clientv3.Op) {
	compare, probe := b.legacy.plan(key.Scope, b.clock.Now())
	if !compare {
		return nil, nil, nil
	}
	ld := b.legacyDoneKey(key)
	cmps = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(ld), "=", 0)}
	els = []clientv3.Op{clientv3.OpGet(ld, clientv3.WithCountOnly())}
	if probe {
		p := clientv3.OpGet(b.legacyPrefix(key.Scope), clientv3.WithPrefix(), clientv3.WithCountOnly())
		then, els = []clientv3.Op{p}, append(els, p)
	}
	return cmps, then, els
}

// learnLegacy reads the probe, if resp (the answer to a claim transaction
// built with legacyOps, whose own operations come first: nThen on success,
// nElse otherwise) carries one.
func (b *Backend) learnLegacy(key locking.Key, resp *clientv3.TxnResponse, nThen, nElse int) {
	i := nElse + 1 // after the else's count of the key's own marker
	if resp.Succeeded {
		i = nThen
	}
	if i >= len(resp.Responses) {
		return
	}
	if rr := resp.Responses[i].GetResponseRange(); rr != nil {
		b.legacy.learn(key.Scope, rr.Count)
	}
}
