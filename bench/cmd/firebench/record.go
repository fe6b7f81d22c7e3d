package main

import (
	"slices"
	"sync/atomic"
	"time"
)

// recorder counts the runs of every tick of a measured window, across all the
// instances of one contender: jobs × secs ticks, tick (job j, second s) at
// index j*secs + s, s counted from first (a Unix second). It keeps the delay
// of the first run of each tick. It takes no lock: a thousand jobs starting in
// the same millisecond must not queue behind the measurement.
type recorder struct {
	jobs, secs int
	first      atomic.Int64 // Unix second of the first measured tick
	count      []atomic.Int32
	delay      []atomic.Int64 // ns from the scheduled instant to the first run's start
}

func newRecorder(jobs, secs int, first int64) *recorder {
	r := &recorder{jobs: jobs, secs: secs, count: make([]atomic.Int32, jobs*secs), delay: make([]atomic.Int64, jobs*secs)}
	r.first.Store(first)
	return r
}

// setFirst sets the window's first second (a Unix second).
func (r *recorder) setFirst(first int64) { r.first.Store(first) }

// record notes that job started a run of the tick scheduled at sched (a whole
// second), at now. Ticks outside the window are ignored.
func (r *recorder) record(job int, sched, now time.Time) {
	s := sched.Unix() - r.first.Load()
	if s < 0 || s >= int64(r.secs) || job < 0 || job >= r.jobs {
		return
	}
	i := job*r.secs + int(s)
	if r.count[i].Add(1) == 1 {
		r.delay[i].Store(int64(now.Sub(sched)))
	}
}

// result is what one run of one contender measured.
type result struct {
	contender string
	round     int
	jobs      int
	ticks     int // ticks in the window: jobs × seconds
	run       int // ticks run at least once
	p50, p99  time.Duration
	max       time.Duration
	dupRuns   int // runs beyond the first of a tick
	dupTicks  int // ticks run more than once
	misses    int // ticks never run
	// cpuPerTick is the process's CPU time (user + system) from the
	// contender's start to its stop, divided by the ticks fired meanwhile
	// (jobs × seconds): what one tick costs, start-up and stop included.
	cpuPerTick time.Duration
	err        error
}

func (r *recorder) result() result {
	res := result{jobs: r.jobs, ticks: r.jobs * r.secs}
	ds := make([]time.Duration, 0, len(r.count))
	for i := range r.count {
		n := int(r.count[i].Load())
		switch {
		case n == 0:
			res.misses++
			continue
		case n > 1:
			res.dupTicks++
			res.dupRuns += n - 1
		}
		ds = append(ds, time.Duration(r.delay[i].Load()))
	}
	res.run = len(ds)
	if len(ds) > 0 {
		slices.Sort(ds)
		res.p50 = quantile(ds, 0.50)
		res.p99 = quantile(ds, 0.99)
		res.max = ds[len(ds)-1]
	}
	return res
}

// quantile returns the q-quantile of sorted ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
