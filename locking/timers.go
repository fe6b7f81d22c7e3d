package locking

import (
	"container/heap"
	"sync"
	"time"
)

// timerSet runs the watchdog timers of all the leases of a Locker on one timer
// of its clock. A lease arms a renewal a third of its TTL ahead as soon as it
// is won, and most leases end long before that: a timer of the runtime per lease
// costs the claim an insertion into the runtime's timer heap and, whenever the
// new timer is the earliest one, a wake-up of the thread sleeping in the network
// poller (a system call on another CPU, on the path of every claim). Here a
// timer that is due no earlier than the one already armed is only pushed on a
// heap under a mutex, and a stopped one is only removed from it; the clock's
// timer is reset only for a timer due earlier than every other, and fires at
// most once per distinct due time.
//
// Its timers behave as the clock's AfterFunc: f runs in a goroutine of its own
// (the last one due in the firing's goroutine), no earlier than the clock says
// it is due, and Stop reports whether it prevented the call.
type timerSet struct {
	clock Clock

	mu    sync.Mutex
	h     timerHeap
	armed time.Time // when the clock's timer fires; zero when none is armed
	t     Timer     // the clock's timer, armed for armed
	gen   uint64    // counts armings, so that a superseded firing leaves armed alone
}

// setTimer is one timer of a timerSet.
type setTimer struct {
	s    *timerSet
	when time.Time
	f    func()
	idx  int // position in the heap; -1 once it fired or was stopped
}

// AfterFunc arms f to run after d.
func (s *timerSet) AfterFunc(d time.Duration, f func()) Timer {
	t := &setTimer{s: s, f: f}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	t.when = now.Add(max(d, 0))
	heap.Push(&s.h, t)
	if s.armed.IsZero() || t.when.Before(s.armed) {
		s.arm(now)
	}
	return t
}

// arm sets the clock's timer for the earliest timer of the heap; the caller
// holds mu and the heap is not empty.
func (s *timerSet) arm(now time.Time) {
	if s.t != nil {
		s.t.Stop() // if it fires anyway, that firing finds its generation superseded
	}
	s.gen++
	gen := s.gen
	s.armed = s.h[0].when
	s.t = s.clock.AfterFunc(s.armed.Sub(now), func() { s.fire(gen) })
}

// fire runs the timers that are due, and arms the clock's timer for the next.
func (s *timerSet) fire(gen uint64) {
	s.mu.Lock()
	if gen == s.gen {
		s.armed = time.Time{}
	}
	now := s.clock.Now()
	var due []func()
	for len(s.h) > 0 && !s.h[0].when.After(now) {
		t := heap.Pop(&s.h).(*setTimer)
		due = append(due, t.f)
	}
	if len(s.h) > 0 && (s.armed.IsZero() || s.h[0].when.Before(s.armed)) {
		s.arm(now)
	}
	s.mu.Unlock()
	for i, f := range due {
		if i == len(due)-1 {
			f()
		} else {
			go f()
		}
	}
}

// C returns nil: a timerSet timer only calls its function.
func (t *setTimer) C() <-chan time.Time { return nil }

// Stop prevents the call of f and reports whether it did (false once f was
// called or is about to be, or after an earlier Stop). The clock's timer stays
// armed: when it fires with nothing due it only arms itself for the next timer.
func (t *setTimer) Stop() bool {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.idx < 0 {
		return false
	}
	heap.Remove(&s.h, t.idx)
	return true
}

// timerHeap is a min-heap of timers by due time.
type timerHeap []*setTimer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h *timerHeap) Push(x any) {
	t := x.(*setTimer)
	t.idx = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.idx = -1
	*h = old[:n-1]
	return t
}
