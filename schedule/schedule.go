package schedule

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/robfig/cron/v3"
)

// Options are the settings of Parse that do not appear in the spec itself.
type Options struct {
	// Location is the zone in which cron fields are read. Nil means UTC.
	// A CRON_TZ= or TZ= prefix in the spec overrides it. Avoid time.Local:
	// replicas in different zones would name different ticks.
	Location *time.Location
	// DST says what cron fields do on daylight-saving transitions. The zero
	// value is DSTAdjust.
	DST DSTPolicy
	// Anchor is the instant on which @every schedules are aligned: they fire
	// at Anchor + k·D for every integer k. The zero value means the Unix
	// epoch. It must be a whole second.
	Anchor time.Time
}

// Schedule computes the fire instants of a job. Implementations are
// immutable and safe for concurrent use.
type Schedule interface {
	// Next returns the first fire instant strictly after after, in UTC, or
	// the zero time if a cron schedule does not fire within five years
	// after after (or after is outside the years 1-9999).
	Next(after time.Time) time.Time
	// Between returns, in increasing order, the fire instants t with
	// from < t <= to, at most max of them (the earliest ones). It returns
	// nil if max <= 0.
	Between(from, to time.Time, max int) []time.Time
}

const (
	horizonYears = 5
	minYear      = 1
	maxYear      = 9999
	starBit      = 1 << 63
)

func inRange(t time.Time) bool {
	y := t.Year()
	return y >= minYear && y <= maxYear
}

func between(s Schedule, from, to time.Time, max int) []time.Time {
	var out []time.Time
	for t := from; len(out) < max; {
		n := s.Next(t)
		if n.IsZero() || n.After(to) {
			break
		}
		out = append(out, n)
		t = n
	}
	return out
}

// every is an @every schedule: Anchor + k·period.
type every struct {
	anchor time.Time // UTC, whole second
	period time.Duration
	text   string
}

// Next implements Schedule.
func (e *every) Next(after time.Time) time.Time {
	if !inRange(after) {
		return time.Time{}
	}
	p := int64(e.period / time.Second)
	as := e.anchor.Unix()
	// anchor is a whole second, so floor((after-anchor)/p) only needs after's
	// whole seconds.
	d := after.Unix() - as
	k := d / p
	if d%p != 0 && d < 0 {
		k-- // floor division
	}
	return time.Unix(as+(k+1)*p, 0).UTC()
}

// Between implements Schedule.
func (e *every) Between(from, to time.Time, max int) []time.Time {
	return between(e, from, to, max)
}

// String returns the normalized spec, such as "@every 30s".
func (e *every) String() string { return e.text }

// spec is a cron schedule evaluated on civil (wall-clock) time.
type spec struct {
	second, minute, hour, dom, month, dow uint64
	loc                                   *time.Location
	dst                                   DSTPolicy
	text                                  string
}

func newSpec(ss *cron.SpecSchedule, loc *time.Location, dst DSTPolicy, text string) (Schedule, string) {
	s := &spec{
		second: ss.Second, minute: ss.Minute, hour: ss.Hour,
		dom: ss.Dom, month: ss.Month, dow: ss.Dow,
		loc: loc, dst: dst, text: text,
	}
	for _, m := range []uint64{s.second, s.minute, s.hour, s.dom, s.month, s.dow} {
		if m&^starBit == 0 {
			return nil, fmt.Sprintf("%s: a field matches no value", ErrNeverFires)
		}
	}
	if !s.dayPossible() {
		return nil, fmt.Sprintf("%s: no selected month has the selected day of month", ErrNeverFires)
	}
	return s, ""
}

// dayPossible reports whether some day of some selected month matches, when
// the day-of-week does not widen the choice (robfig's star-bit rule).
func (s *spec) dayPossible() bool {
	if s.dom&starBit == 0 && s.dow&starBit == 0 {
		return true // day-of-month OR day-of-week: any weekday occurs
	}
	// day-of-month AND day-of-week: every weekday occurs on every day
	// number over the years, so only month lengths matter.
	maxDays := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if s.month&(1<<m) == 0 {
			continue
		}
		for d := 1; d <= maxDays[m]; d++ {
			if s.dom&(1<<d) != 0 {
				return true
			}
		}
	}
	return false
}

// String returns the spec as given to Parse, without surrounding space.
func (s *spec) String() string { return s.text }

// Between implements Schedule.
func (s *spec) Between(from, to time.Time, max int) []time.Time {
	return between(s, from, to, max)
}

// civil returns the wall time of instant t at UTC offset off (seconds),
// represented as a time.Time in UTC so that arithmetic on it has no DST.
func civil(t time.Time, off int) time.Time {
	return time.Unix(t.Unix()+int64(off), 0).UTC()
}

// Next implements Schedule. It walks the zone's periods of constant UTC
// offset (time.Time.ZoneBounds). Inside a period, instant and wall time
// differ by a constant, so the first matching wall time is the first fire;
// the DST policy decides what happens at a period's start.
func (s *spec) Next(after time.Time) time.Time {
	if !inRange(after) {
		return time.Time{}
	}
	t := after.Truncate(time.Second).Add(time.Second)
	limit := t.AddDate(horizonYears, 0, 0)
	for t.Before(limit) {
		start, end, off, prevOff := s.period(t)
		if end.IsZero() || end.After(limit) {
			end = limit
		}
		from := civil(t, off)
		switch {
		case prevOff < off && t.Equal(start) && s.dst != DSTSkip:
			// Spring forward: wall times in [start+prevOff, start+off)
			// never happen; any match among them fires once, at start.
			if _, ok := s.firstCivil(civil(start, prevOff), from); ok {
				return start.UTC()
			}
		case prevOff > off && s.dst != DSTBoth:
			// Fall back: wall times before start+prevOff already
			// happened in the previous period.
			if seen := civil(start, prevOff); from.Before(seen) {
				from = seen
			}
		}
		if c, ok := s.firstCivil(from, civil(end, off)); ok {
			return time.Unix(c.Unix()-int64(off), 0).UTC()
		}
		t = end
	}
	return time.Time{}
}

// period returns the zone period (constant UTC offset off) that contains
// t: [start, end), either zero when unbounded, and the offset prevOff in
// effect just before start.
func (s *spec) period(t time.Time) (start, end time.Time, off, prevOff int) {
	lt := t.In(s.loc)
	_, off = lt.Zone()
	start, end = lt.ZoneBounds()
	if !start.IsZero() && start.After(t) || !end.IsZero() && !end.After(t) {
		// ZoneBounds can disagree with Zone past the last year of the
		// time zone database, where Go extends the zone's rule (seen at
		// the end of leap years). Find the next offset change within a
		// day by bisection, and report no transition at t.
		start, end = time.Time{}, t.Add(24*time.Hour)
		if _, o := end.In(s.loc).Zone(); o != off {
			lo, hi := t, end // offset(lo) == off, offset(hi) != off
			for hi.Sub(lo) > time.Second {
				mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
				if _, o := mid.In(s.loc).Zone(); o == off {
					lo = mid
				} else {
					hi = mid
				}
			}
			end = hi
		}
		return start, end, off, off
	}
	prevOff = off
	if !start.IsZero() {
		_, prevOff = start.Add(-time.Second).In(s.loc).Zone()
	}
	return start, end, off, prevOff
}

// nextBit returns the lowest set bit of mask (star bit excluded) that is
// >= from.
func nextBit(mask uint64, from int) (int, bool) {
	if from >= 63 {
		return 0, false
	}
	m := mask &^ starBit & (^uint64(0) << uint(from))
	if m == 0 {
		return 0, false
	}
	return bits.TrailingZeros64(m), true
}

// dayMatches is robfig/cron's rule: if either day field was written with a
// star (*, ?, or */1), both must match; otherwise either may.
func (s *spec) dayMatches(c time.Time) bool {
	domMatch := 1<<uint(c.Day())&s.dom > 0
	dowMatch := 1<<uint(c.Weekday())&s.dow > 0
	if s.dom&starBit > 0 || s.dow&starBit > 0 {
		return domMatch && dowMatch
	}
	return domMatch || dowMatch
}

// firstCivil returns the first wall time c with from <= c < until matching
// all fields. Wall times are UTC-located time.Time values; from is a whole
// second. Each step jumps to the next candidate of the first field that
// does not match, so it never walks second by second.
func (s *spec) firstCivil(from, until time.Time) (time.Time, bool) {
	c := from
	for c.Before(until) {
		y, mo, d := c.Date()
		h, mi, se := c.Clock()
		if s.month&(1<<uint(mo)) == 0 {
			if m, ok := nextBit(s.month, int(mo)+1); ok {
				c = time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
			} else {
				m, _ := nextBit(s.month, 1)
				c = time.Date(y+1, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
			}
			continue
		}
		if !s.dayMatches(c) {
			c = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if s.hour&(1<<uint(h)) == 0 {
			if n, ok := nextBit(s.hour, h+1); ok {
				c = time.Date(y, mo, d, n, 0, 0, 0, time.UTC)
			} else {
				c = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			}
			continue
		}
		if s.minute&(1<<uint(mi)) == 0 {
			if n, ok := nextBit(s.minute, mi+1); ok {
				c = time.Date(y, mo, d, h, n, 0, 0, time.UTC)
			} else {
				c = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
			}
			continue
		}
		if s.second&(1<<uint(se)) == 0 {
			if n, ok := nextBit(s.second, se+1); ok {
				c = time.Date(y, mo, d, h, mi, n, 0, time.UTC)
			} else {
				c = time.Date(y, mo, d, h, mi+1, 0, 0, time.UTC)
			}
			continue
		}
		return c, true
	}
	return time.Time{}, false
}
