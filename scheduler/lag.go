package scheduler

import (
	"sync"
	"time"
)

// lagWindow is how long a claim's answer time counts in the claim lead: the
// longest answer of the last one to two windows.
const lagWindow = 10 * time.Second

// lagMeter keeps the longest time the backend took to answer a tick's claim
// (from the claim's sending, queueing in the client included) over the last
// one to two windows. A burst of a thousand claims on etcd or ZooKeeper takes
// a few hundred milliseconds; the dispatcher then claims that much further
// ahead (see Scheduler.lead), so that the answers are in by the instant.
type lagMeter struct {
	mu        sync.Mutex
	start     time.Time
	cur, prev time.Duration
}

// note records that a claim sent at sent was answered at now.
func (m *lagMeter) note(sent, now time.Time) {
	d := now.Sub(sent)
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.start) > lagWindow {
		m.prev, m.cur, m.start = m.cur, 0, now
	}
	m.cur = max(m.cur, d)
}

// get returns the longest answer time of the last one to two windows.
func (m *lagMeter) get() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(m.cur, m.prev)
}
