package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // hermetic zone data for the tests
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func formatAll(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec string
		opts Options
		msg  string
	}{
		{"", Options{}, "empty spec"},
		{"   ", Options{}, "empty spec"},
		{"* * * *", Options{}, "expected 5 or 6 fields, got 4"},
		{"* * * * * * *", Options{}, "expected 5 or 6 fields, got 7"},
		{"61 * * * *", Options{}, `minute field "61": 61 is out of range 0-59`},
		{"0 60 * * * *", Options{}, `minute field "60": 60 is out of range 0-59`},
		{"60 * * * * *", Options{}, `second field "60": 60 is out of range 0-59`},
		{"* 24 * * *", Options{}, `hour field "24": 24 is out of range 0-23`},
		{"* * 0 * *", Options{}, `day-of-month field "0": 0 is out of range 1-31`},
		{"* * * 13 *", Options{}, `month field "13": 13 is out of range 1-12`},
		{"* * * foo *", Options{}, `month field "foo": "foo" is not a number or a month name`},
		{"* * * * 7", Options{}, `day-of-week field "7": 7 is out of range 0-6`},
		{"* * * * MON-FOO", Options{}, `day-of-week field "MON-FOO": "FOO" is not a number or a day-of-week name`},
		{"x * * * *", Options{}, `minute field "x": "x" is not a number`},
		{"5-1 * * * *", Options{}, `minute field "5-1": range start 5 is after its end 1`},
		{"1-2-3 * * * *", Options{}, `minute field "1-2-3": too many hyphens in "1-2-3"`},
		{"*/0 * * * *", Options{}, `minute field "*/0": step must be positive`},
		{"*/90 * * * *", Options{}, `minute field "*/90": step 90 is larger than the field's range 0-59`},
		{"*/a * * * *", Options{}, `minute field "*/a": step "a" is not a number`},
		{"*/1/2 * * * *", Options{}, `minute field "*/1/2": too many slashes in "*/1/2"`},
		{"1,,2 * * * *", Options{}, `minute field "1,,2": empty list element`},
		{"-1 * * * *", Options{}, `minute field "-1": "" is not a number`},
		{"+1 * * * *", Options{}, `minute field "+1": unexpected character '+'`},
		{"1;2 * * * *", Options{}, `minute field "1;2": unexpected character ';'`},
		{"0 0 30 2 *", Options{}, "schedule never fires: no selected month has the selected day of month"},
		{"0 0 31 4,6 *", Options{}, "schedule never fires: no selected month has the selected day of month"},
		{"@daly", Options{}, `unknown descriptor "@daly" (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)`},
		{"@daily 5", Options{}, "descriptor @daily takes no arguments"},
		{"@every", Options{}, `@every takes exactly one duration, as in "@every 30s"`},
		{"@every 1 s", Options{}, `@every takes exactly one duration, as in "@every 30s"`},
		{"@every x", Options{}, `@every: invalid duration "x" (use Go syntax such as 30s, 5m, 1h30m)`},
		{"@every 0s", Options{}, "@every: duration 0s is shorter than 1s"},
		{"@every -5s", Options{}, "@every: duration -5s is shorter than 1s"},
		{"@every 500ms", Options{}, "@every: duration 500ms is shorter than 1s"},
		{"@every 1500ms", Options{}, "@every: duration 1.5s is not a whole number of seconds"},
		{"@every 1s", Options{Anchor: time.Unix(0, 5)}, "@every: anchor 1970-01-01T00:00:00.000000005Z is not a whole second"},
		{"CRON_TZ=Mars/Olympus 0 * * * *", Options{}, `unknown time zone "Mars/Olympus"`},
		{"TZ=Local 0 * * * *", Options{}, `time zone "Local" is not allowed: replicas may run in different zones; use an IANA name such as "Europe/Paris"`},
		{"CRON_TZ=UTC", Options{}, "CRON_TZ prefix must be followed by a space and a schedule"},
		{"TZ=UTC", Options{}, "TZ prefix must be followed by a space and a schedule"},
		{"CRON_TZ=UTC ", Options{}, "CRON_TZ prefix must be followed by a space and a schedule"},
		{"TZ=UTC * * * *", Options{}, "expected 5 or 6 fields, got 4"},
		{"* * * * *", Options{DST: DSTPolicy(9)}, "unknown DST policy 9"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Parse(tt.spec, tt.opts)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %q", tt.spec, s, tt.msg)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if pe.Msg != tt.msg {
				t.Errorf("Msg = %q\n want %q", pe.Msg, tt.msg)
			}
			if pe.Spec != tt.spec {
				t.Errorf("Spec = %q, want %q", pe.Spec, tt.spec)
			}
			if want := fmt.Sprintf("schedule: invalid spec %q: %s", tt.spec, tt.msg); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
			if got := errors.Is(err, ErrNeverFires); got != strings.HasPrefix(tt.msg, "schedule never fires") {
				t.Errorf("errors.Is(err, ErrNeverFires) = %v", got)
			}
		})
	}
}

func TestNext(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	london := mustLoc(t, "Europe/London")
	lordHowe := mustLoc(t, "Australia/Lord_Howe")
	shanghai := mustLoc(t, "Asia/Shanghai")
	tests := []struct {
		name string
		spec string
		loc  *time.Location
		dst  DSTPolicy
		from string
		want []string // the next fires after from, in order
	}{
		// Field counts and descriptors (UTC).
		{"5 fields", "30 2 * * *", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T02:30:00Z", "2026-01-02T02:30:00Z"}},
		{"6 fields", "15 30 2 * * *", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T02:30:15Z", "2026-01-02T02:30:15Z"}},
		{"every second", "* * * * * *", nil, DSTAdjust, "2026-01-01T00:00:00.5Z",
			[]string{"2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"}},
		{"strictly after", "0 * * * *", nil, DSTAdjust, "2026-01-01T01:00:00Z",
			[]string{"2026-01-01T02:00:00Z"}},
		{"@hourly", "@hourly", nil, DSTAdjust, "2026-01-01T00:10:00Z",
			[]string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"}},
		{"@daily", "@daily", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2026-01-02T00:00:00Z"}},
		{"@midnight", "@midnight", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2026-01-02T00:00:00Z"}},
		{"@weekly", "@weekly", nil, DSTAdjust, "2026-01-01T00:00:00Z", // a Thursday
			[]string{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
		{"@monthly", "@monthly", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"}},
		{"@yearly", "@yearly", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2027-01-01T00:00:00Z"}},
		{"@annually", "@annually", nil, DSTAdjust, "2026-06-01T00:00:00Z",
			[]string{"2027-01-01T00:00:00Z"}},
		{"leap day", "0 0 29 2 *", nil, DSTAdjust, "2026-01-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"dom or dow", "0 0 13 * FRI", nil, DSTAdjust, "2026-02-01T00:00:00Z", // Fri 6th, Fri 13th, ...
			[]string{"2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z"}},
		{"dom and star dow", "0 0 13 * *", nil, DSTAdjust, "2026-02-01T00:00:00Z",
			[]string{"2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z"}},
		{"names and ranges", "0 9 * JAN-FEB MON-FRI", nil, DSTAdjust, "2026-01-30T10:00:00Z", // Fri
			[]string{"2026-02-02T09:00:00Z"}},
		{"dec to jan wrap", "0 0 1 1,12 *", nil, DSTAdjust, "2026-12-01T00:00:00Z",
			[]string{"2027-01-01T00:00:00Z", "2027-12-01T00:00:00Z"}},
		{"never within horizon", "0 0 29 2 *", nil, DSTAdjust, "2096-03-01T00:00:00Z",
			[]string{"0001-01-01T00:00:00Z"}},

		// Zones: CRON_TZ overrides Options.Location.
		{"Options.Location", "0 9 * * *", shanghai, DSTAdjust, "2026-07-01T00:00:00Z",
			[]string{"2026-07-01T01:00:00Z"}},
		{"CRON_TZ prefix", "CRON_TZ=Asia/Shanghai 0 9 * * *", ny, DSTAdjust, "2026-07-01T00:00:00Z",
			[]string{"2026-07-01T01:00:00Z"}},
		{"TZ prefix descriptor", "TZ=Asia/Shanghai @daily", nil, DSTAdjust, "2026-07-01T00:00:00Z",
			[]string{"2026-07-01T16:00:00Z"}},
		{"Shanghai has no DST", "30 2 * * *", shanghai, DSTSkip, "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T18:30:00Z", "2026-03-08T18:30:00Z", "2026-03-09T18:30:00Z"}},

		// New York spring forward, 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
		{"NY gap adjust", "30 2 * * *", ny, DSTAdjust, "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
		{"NY gap skip", "30 2 * * *", ny, DSTSkip, "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"}},
		{"NY gap both", "30 2 * * *", ny, DSTBoth, "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
		{"NY gap collapses to one fire", "*/15 2 * * *", ny, DSTAdjust, "2026-03-08T06:00:00Z",
			[]string{"2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"}},
		{"NY gap and 03:00 are one tick", "*/15 2,3 * * *", ny, DSTAdjust, "2026-03-08T06:00:00Z",
			[]string{"2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"}},
		{"NY gap skip keeps 03:00", "*/15 2,3 * * *", ny, DSTSkip, "2026-03-08T06:00:00Z",
			[]string{"2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"}},
		{"NY gap hourly", "0 * * * *", ny, DSTAdjust, "2026-03-08T05:30:00Z",
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
		{"NY gap 6 fields", "59 59 2 * * *", ny, DSTAdjust, "2026-03-08T00:00:00Z",
			[]string{"2026-03-08T07:00:00Z", "2026-03-09T06:59:59Z"}},
		{"NY from exactly the transition", "30 2 * * *", ny, DSTAdjust, "2026-03-08T07:00:00Z",
			[]string{"2026-03-09T06:30:00Z"}},
		{"NY from just before the transition", "30 2 * * *", ny, DSTAdjust, "2026-03-08T06:59:59.9Z",
			[]string{"2026-03-08T07:00:00Z"}},

		// New York fall back, 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
		{"NY fold hourly adjust", "0 * * * *", ny, DSTAdjust, "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"}},
		{"NY fold hourly skip", "0 * * * *", ny, DSTSkip, "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"}},
		{"NY fold hourly both", "0 * * * *", ny, DSTBoth, "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
		{"NY fold half-hourly both", "*/30 * * * *", ny, DSTBoth, "2026-11-01T04:45:00Z",
			[]string{"2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"}},
		{"NY fold daily at 01:30 adjust", "30 1 * * *", ny, DSTAdjust, "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"NY fold daily at 01:30 both", "30 1 * * *", ny, DSTBoth, "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"}},
		{"NY fold from inside second pass adjust", "*/30 * * * *", ny, DSTAdjust, "2026-11-01T06:10:00Z",
			[]string{"2026-11-01T07:00:00Z"}},
		{"NY fold from inside second pass both", "*/30 * * * *", ny, DSTBoth, "2026-11-01T06:10:00Z",
			[]string{"2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"}},
		{"NY beyond the zone database", "30 2 * * *", ny, DSTAdjust, "2040-12-30T07:30:00Z",
			[]string{"2040-12-31T07:30:00Z", "2041-01-01T07:30:00Z", "2041-01-02T07:30:00Z"}},
		{"NY @daily across fold", "@daily", ny, DSTBoth, "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T04:00:00Z", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"}},

		// London: 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.
		{"London gap adjust", "30 1 * * *", london, DSTAdjust, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
		{"London gap skip", "30 1 * * *", london, DSTSkip, "2026-03-28T12:00:00Z",
			[]string{"2026-03-30T00:30:00Z"}},
		{"London fold both", "30 1 * * *", london, DSTBoth, "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"}},
		{"London fold adjust", "30 1 * * *", london, DSTAdjust, "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},

		// Lord Howe: a 30-minute shift. 2026-04-05 02:00 +11 -> 01:30 +1030
		// (15:00Z on the 4th); 2026-10-04 02:00 +1030 -> 02:30 +11 (15:30Z on the 3rd).
		{"Lord Howe fold adjust", "*/15 1 * * *", lordHowe, DSTAdjust, "2026-04-04T14:10:00Z",
			[]string{"2026-04-04T14:15:00Z", "2026-04-04T14:30:00Z", "2026-04-04T14:45:00Z", "2026-04-05T14:30:00Z"}},
		{"Lord Howe fold both", "*/15 1 * * *", lordHowe, DSTBoth, "2026-04-04T14:10:00Z",
			[]string{"2026-04-04T14:15:00Z", "2026-04-04T14:30:00Z", "2026-04-04T14:45:00Z", "2026-04-04T15:00:00Z", "2026-04-04T15:15:00Z", "2026-04-05T14:30:00Z"}},
		{"Lord Howe gap adjust", "*/10 2 * * *", lordHowe, DSTAdjust, "2026-10-03T15:00:00Z",
			[]string{"2026-10-03T15:30:00Z", "2026-10-03T15:40:00Z", "2026-10-03T15:50:00Z", "2026-10-04T15:00:00Z"}},
		{"Lord Howe gap skip", "*/10 2 * * *", lordHowe, DSTSkip, "2026-10-03T15:00:00Z",
			[]string{"2026-10-03T15:30:00Z", "2026-10-03T15:40:00Z", "2026-10-03T15:50:00Z", "2026-10-04T15:00:00Z"}},
		{"Lord Howe gap only", "15 2 * * *", lordHowe, DSTSkip, "2026-10-03T15:00:00Z",
			[]string{"2026-10-04T15:15:00Z"}},
		{"Lord Howe gap only adjust", "15 2 * * *", lordHowe, DSTAdjust, "2026-10-03T15:00:00Z",
			[]string{"2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec, Options{Location: tt.loc, DST: tt.dst})
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Time
			at := mustTime(t, tt.from)
			if strings.Contains(tt.from, ".") {
				at, _ = time.Parse(time.RFC3339Nano, tt.from)
			}
			for range tt.want {
				n := s.Next(at)
				got = append(got, n)
				if n.IsZero() {
					break
				}
				if n.Location() != time.UTC {
					t.Errorf("Next returned location %v, want UTC", n.Location())
				}
				at = n
			}
			if g := formatAll(got); !slices.Equal(g, tt.want) {
				t.Errorf("fires after %s:\n got %v\nwant %v", tt.from, g, tt.want)
			}
		})
	}
}

func TestEveryAnchoring(t *testing.T) {
	anchor := mustTime(t, "2026-01-01T00:00:07Z")
	tests := []struct {
		spec   string
		anchor time.Time
		after  string
		want   string
	}{
		{"@every 10s", time.Time{}, "2026-05-05T10:00:00Z", "2026-05-05T10:00:10Z"},
		{"@every 10s", time.Time{}, "2026-05-05T10:00:03.999Z", "2026-05-05T10:00:10Z"},
		{"@every 10s", time.Time{}, "2026-05-05T10:00:09Z", "2026-05-05T10:00:10Z"},
		{"@every 10s", anchor, "2026-05-05T10:00:00Z", "2026-05-05T10:00:07Z"},
		{"@every 10s", anchor, "2026-05-05T10:00:07Z", "2026-05-05T10:00:17Z"},
		{"@every 10s", anchor, "2025-12-31T23:59:59Z", "2026-01-01T00:00:07Z"},
		{"@every 10s", anchor, "2025-12-31T23:59:56Z", "2025-12-31T23:59:57Z"},
		{"@every 7s", time.Time{}, "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z"},
		{"@every 7s", time.Time{}, "1969-12-31T23:59:52Z", "1969-12-31T23:59:53Z"},
		{"@every 1h30m", time.Time{}, "2026-01-01T00:00:00Z", "2026-01-01T01:30:00Z"},
		{"CRON_TZ=America/New_York @every 1h", time.Time{}, "2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.spec+" after "+tt.after, func(t *testing.T) {
			s, err := Parse(tt.spec, Options{Anchor: tt.anchor, DST: DSTSkip})
			if err != nil {
				t.Fatal(err)
			}
			after, err := time.Parse(time.RFC3339Nano, tt.after)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(after).Format(time.RFC3339); got != tt.want {
				t.Errorf("Next(%s) = %s, want %s", tt.after, got, tt.want)
			}
		})
	}

	// Two replicas started at different moments name the same ticks.
	s, err := Parse("@every 30s", Options{Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Between(mustTime(t, "2026-05-05T10:00:01Z"), mustTime(t, "2026-05-05T10:03:00Z"), 100)
	b := s.Between(mustTime(t, "2026-05-05T10:01:13Z"), mustTime(t, "2026-05-05T10:03:00Z"), 100)
	if len(a) == 0 || len(b) == 0 {
		t.Fatal("no fires")
	}
	if i := slices.IndexFunc(a, b[0].Equal); i < 0 || !slices.EqualFunc(a[i:], b, time.Time.Equal) {
		t.Errorf("replicas disagree:\n%v\n%v", formatAll(a), formatAll(b))
	}
	for _, f := range a {
		if f.Sub(anchor)%(30*time.Second) != 0 {
			t.Errorf("%s is off the grid", f)
		}
	}
}

func TestBetween(t *testing.T) {
	s, err := Parse("*/20 * * * *", Options{})
	if err != nil {
		t.Fatal(err)
	}
	from, to := mustTime(t, "2026-01-01T00:00:00Z"), mustTime(t, "2026-01-01T01:00:00Z")
	tests := []struct {
		name     string
		from, to time.Time
		max      int
		want     []string
	}{
		{"half-open interval", from, to, 10,
			[]string{"2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z", "2026-01-01T01:00:00Z"}},
		{"max", from, to, 2, []string{"2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z"}},
		{"zero max", from, to, 0, nil},
		{"negative max", from, to, -1, nil},
		{"empty interval", to, from, 10, nil},
		{"nothing inside", from.Add(time.Minute), from.Add(2 * time.Minute), 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Between(tt.from, tt.to, tt.max)
			if tt.want == nil {
				if got != nil {
					t.Errorf("got %v, want nil", formatAll(got))
				}
				return
			}
			if g := formatAll(got); !slices.Equal(g, tt.want) {
				t.Errorf("got %v, want %v", g, tt.want)
			}
		})
	}
}

func TestDSTPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want DSTPolicy
		err  string
	}{
		{"adjust", DSTAdjust, ""},
		{"skip", DSTSkip, ""},
		{"both", DSTBoth, ""},
		{"", 0, `unknown DST policy "" (want adjust, skip or both)`},
		{"Adjust", 0, `unknown DST policy "Adjust" (want adjust, skip or both)`},
	}
	for _, tt := range tests {
		got, err := ParseDSTPolicy(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseDSTPolicy(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			var p DSTPolicy
			if p.UnmarshalText([]byte(tt.in)) == nil {
				t.Errorf("UnmarshalText(%q) succeeded", tt.in)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDSTPolicy(%q) = %v, %v", tt.in, got, err)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
		b, err := got.MarshalText()
		var back DSTPolicy
		if err != nil || back.UnmarshalText(b) != nil || back != got {
			t.Errorf("text round trip of %v failed: %q, %v", got, b, err)
		}
	}
	if s := DSTPolicy(7).String(); s != "DSTPolicy(7)" {
		t.Errorf("String() = %q", s)
	}
	if _, err := DSTPolicy(-1).MarshalText(); err == nil {
		t.Error("MarshalText of an invalid policy succeeded")
	}
}

func TestString(t *testing.T) {
	for spec, want := range map[string]string{
		"0 * * * *":             "0 * * * *",
		"@every 90s":            "@every 1m30s",
		"CRON_TZ=UTC @every 1h": "@every 1h0m0s",
		"TZ=UTC @daily":         "TZ=UTC @daily",
	} {
		s, err := Parse(spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.(fmt.Stringer).String(); got != want {
			t.Errorf("String() of %q = %q, want %q", spec, got, want)
		}
	}
}

func TestNextOutOfRange(t *testing.T) {
	for _, spec := range []string{"* * * * *", "@every 1s"} {
		s, err := Parse(spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []time.Time{time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
			if n := s.Next(at); !n.IsZero() {
				t.Errorf("%q: Next(%v) = %v, want zero", spec, at, n)
			}
		}
	}
}

// TestNextMatchesReference compares Next with a brute-force model around
// real transitions: every wall-clock minute is mapped to all the instants
// that show it by trying every offset, and the DST rules are applied to
// that mapping directly.
func TestNextMatchesReference(t *testing.T) {
	windows := []struct {
		zone  string
		start string
	}{
		{"America/New_York", "2026-03-07T00:00:00Z"},
		{"America/New_York", "2026-10-31T00:00:00Z"},
		{"Europe/London", "2026-03-28T00:00:00Z"},
		{"Europe/London", "2026-10-24T00:00:00Z"},
		{"Australia/Lord_Howe", "2026-04-03T12:00:00Z"},
		{"Australia/Lord_Howe", "2026-10-02T12:00:00Z"},
		{"Asia/Shanghai", "2026-03-07T00:00:00Z"},
		{"Pacific/Apia", "2011-12-28T00:00:00Z"}, // skipped a whole day
		// Past the zone database's last year Go extends the zone's rule;
		// its ZoneBounds is unreliable around the end of leap years.
		{"America/New_York", "2040-12-29T00:00:00Z"},
		{"America/New_York", "2041-03-09T00:00:00Z"},
		{"America/New_York", "2041-11-02T00:00:00Z"},
		{"Australia/Lord_Howe", "2044-12-30T00:00:00Z"},
	}
	specs := []string{"0 * * * *", "*/15 * * * *", "30 1,2 * * *", "*/10 2 * * *", "45 * * * *", "0 12 * * *", "0 0 * * *"}
	for _, w := range windows {
		loc := mustLoc(t, w.zone)
		from := mustTime(t, w.start)
		to := from.Add(72 * time.Hour)
		for _, sp := range specs {
			for _, dst := range []DSTPolicy{DSTAdjust, DSTSkip, DSTBoth} {
				s, err := Parse(sp, Options{Location: loc, DST: dst})
				if err != nil {
					t.Fatal(err)
				}
				want := referenceFires(s.(*spec), from, to)
				got := formatAll(s.Between(from, to, 1000))
				if !slices.Equal(got, want) {
					t.Errorf("%s %q %v:\n got %v\nwant %v", w.zone, sp, dst, got, want)
				}
			}
		}
	}
}

func referenceFires(s *spec, from, to time.Time) []string {
	matches := func(c time.Time) bool {
		return s.month&(1<<uint(c.Month())) != 0 && s.dayMatches(c) &&
			s.hour&(1<<uint(c.Hour())) != 0 && s.minute&(1<<uint(c.Minute())) != 0 &&
			s.second&(1<<uint(c.Second())) != 0
	}
	set := map[time.Time]bool{}
	// Wall times from a day before to a day after cover every instant in
	// (from, to] for offsets within ±26h.
	for c := from.Add(-26 * time.Hour); c.Before(to.Add(26 * time.Hour)); c = c.Add(time.Minute) {
		if !matches(c) {
			continue
		}
		var instants []time.Time
		for off := -15 * time.Hour; off <= 15*time.Hour; off += 15 * time.Minute {
			i := c.Add(-off)
			y, mo, d := i.In(s.loc).Date()
			h, mi, se := i.In(s.loc).Clock()
			if time.Date(y, mo, d, h, mi, se, 0, time.UTC).Equal(c) {
				instants = append(instants, i)
			}
		}
		slices.SortFunc(instants, time.Time.Compare)
		switch {
		case len(instants) == 0 && s.dst != DSTSkip:
			// The gap ends at the first instant showing a later wall time.
			for i := c.Add(-27 * time.Hour); ; i = i.Add(time.Minute) {
				y, mo, d := i.In(s.loc).Date()
				h, mi, se := i.In(s.loc).Clock()
				if time.Date(y, mo, d, h, mi, se, 0, time.UTC).After(c) {
					set[i] = true
					break
				}
			}
		case len(instants) > 0 && s.dst == DSTBoth:
			for _, i := range instants {
				set[i] = true
			}
		case len(instants) > 0:
			set[instants[0]] = true
		}
	}
	var out []time.Time
	for i := range set {
		if i.After(from) && !i.After(to) {
			out = append(out, i.UTC())
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return formatAll(out)
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"* * * * *", "0 30 2 * * *", "@daily", "@every 30s", "@every 0s",
		"CRON_TZ=America/New_York 30 2 * * *", "TZ=", "TZ=UTC", "CRON_TZ= x",
		"*/15 2 * * *", "0 0 30 2 *", "1-5/2,7 */3 ? JAN-mar MON", "@", "60 * * * *",
		"* * * * * * *", "TZ=Australia/Lord_Howe */10 2 * * *", "1-2-3/4/5",
	} {
		f.Add(seed, int64(1772953200), uint8(0))
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec string, at int64, dst uint8) {
		s, err := Parse(spec, Options{Location: ny, DST: DSTPolicy(dst % 3)})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Msg == "" {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		after := time.Unix(at%(1<<35), 0)
		prev := after
		for _, n := range s.Between(after, after.AddDate(0, 0, 3), 5) {
			if !n.After(prev) || n.Nanosecond() != 0 {
				t.Fatalf("%q: fire %v after %v", spec, n, prev)
			}
			prev = n
		}
	})
}

func BenchmarkNext(b *testing.B) {
	ny := mustLoc(b, "America/New_York")
	for _, bc := range []struct{ name, spec string }{
		{"every-second", "* * * * * *"},
		{"daily-new-york", "30 2 * * *"},
		{"yearly-leap-day", "0 0 29 2 *"},
	} {
		s, err := Parse(bc.spec, Options{Location: ny})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			for b.Loop() {
				at = s.Next(at)
				if at.IsZero() || at.Year() > 2100 {
					at = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
				}
			}
		})
	}
}

// TestLongWalk follows daily schedules for decades in DST zones, well past
// the zone database's last explicit year, checking they keep advancing one
// civil day at a time.
func TestLongWalk(t *testing.T) {
	for _, zone := range []string{"America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Apia"} {
		loc := mustLoc(t, zone)
		for _, dst := range []DSTPolicy{DSTAdjust, DSTSkip, DSTBoth} {
			s, err := Parse("30 2 * * *", Options{Location: loc, DST: dst})
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
			for at.Year() < 2070 {
				n := s.Next(at)
				if !n.After(at) || n.Sub(at) > 49*time.Hour {
					t.Fatalf("%s %v: Next(%v) = %v", zone, dst, at, n)
				}
				at = n
			}
		}
	}
}
