package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

// ParseError reports an invalid schedule spec. Msg is the reason alone
// (for example "expected 5 or 6 fields, got 4"), suitable for embedding in a
// message that already names the spec's origin.
type ParseError struct {
	Spec string // the spec as given to Parse
	Msg  string // why it is invalid
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("schedule: invalid spec %q: %s", e.Spec, e.Msg)
}

// ErrNeverFires is wrapped by the ParseError returned for a spec whose
// fields can never match together, such as "0 0 30 2 *" (February 30th).
var ErrNeverFires = errors.New("schedule never fires")

// Unwrap returns ErrNeverFires for specs that can never fire, else nil.
func (e *ParseError) Unwrap() error {
	if strings.HasPrefix(e.Msg, ErrNeverFires.Error()) {
		return ErrNeverFires
	}
	return nil
}

// parser is robfig's parser with the seconds field optional; a value, so
// it is not mutable global state.
func parser() cron.Parser {
	return cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// field describes one position of a cron spec.
type field struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	months = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
	weekdays = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
)

// fields returns the six positions of a 6-field spec, in order.
func fields() [6]field {
	return [6]field{
		{name: "second", min: 0, max: 59},
		{name: "minute", min: 0, max: 59},
		{name: "hour", min: 0, max: 23},
		{name: "day-of-month", min: 1, max: 31},
		{name: "month", min: 1, max: 12, names: months},
		{name: "day-of-week", min: 0, max: 6, names: weekdays},
	}
}

// Parse parses a cron spec into a Schedule. It accepts
//
//   - 5 fields: minute hour day-of-month month day-of-week;
//   - 6 fields: second minute hour day-of-month month day-of-week;
//   - descriptors: @yearly (@annually), @monthly, @weekly, @daily
//     (@midnight), @hourly, and "@every D" with D a Go duration of a whole
//     number of seconds, at least 1s;
//   - any of those after a "CRON_TZ=Zone " or "TZ=Zone " prefix, which
//     overrides opts.Location.
//
// Field syntax is robfig/cron's: *, ?, lists (a,b), ranges (a-b), steps
// (*/n, a-b/n, a/n) and month and weekday names (JAN, MON). An invalid
// spec yields a *ParseError.
func Parse(spec string, opts Options) (Schedule, error) {
	s, msg := parse(spec, opts)
	if msg != "" {
		return nil, &ParseError{Spec: spec, Msg: msg}
	}
	return s, nil
}

func parse(spec string, opts Options) (Schedule, string) {
	if !opts.DST.valid() {
		return nil, fmt.Sprintf("unknown DST policy %d", int(opts.DST))
	}
	loc := opts.Location
	if loc == nil {
		loc = time.UTC
	}
	body := strings.TrimSpace(spec)
	if body == "" {
		return nil, "empty spec"
	}
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if !strings.HasPrefix(body, p) {
			continue
		}
		i := strings.IndexFunc(body, unicode.IsSpace)
		if i < 0 {
			return nil, fmt.Sprintf("%s prefix must be followed by a space and a schedule", p[:len(p)-1])
		}
		zone := body[len(p):i]
		l, err := LoadLocation(zone)
		if err != nil {
			return nil, err.Error()
		}
		loc = l
		body = strings.TrimSpace(body[i:])
		break
	}
	if strings.HasPrefix(body, "@") {
		return parseDescriptor(body, strings.TrimSpace(spec), loc, opts)
	}

	parts := strings.Fields(body)
	if len(parts) != 5 && len(parts) != 6 {
		return nil, fmt.Sprintf("expected 5 or 6 fields, got %d", len(parts))
	}
	fs := fields()
	if len(parts) == 5 {
		parts = append([]string{"0"}, parts...)
	}
	for i, p := range parts {
		if msg := checkField(p, fs[i]); msg != "" {
			return nil, msg
		}
	}
	cs, err := parser().Parse(strings.Join(parts, " "))
	if err != nil {
		return nil, err.Error() // a case checkField missed; robfig's text is the best we have
	}
	ss, ok := cs.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Sprintf("unexpected schedule type %T", cs)
	}
	return newSpec(ss, loc, opts.DST, strings.TrimSpace(spec))
}

// LoadLocation loads the IANA time zone name as time.LoadLocation does,
// with two differences: the empty name is UTC, and "Local" is refused,
// because replicas running in different local zones would name different
// ticks. Its errors read well after a field name.
func LoadLocation(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, errors.New(`time zone "Local" is not allowed: replicas may run in different zones; use an IANA name such as "Europe/Paris"`)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return l, nil
}

// checkField validates one field with messages clearer than robfig's; the
// bitmask itself is then computed by robfig.
func checkField(s string, f field) string {
	bad := func(format string, a ...any) string {
		return fmt.Sprintf("%s field %q: %s", f.name, s, fmt.Sprintf(format, a...))
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("*?,-/", r)) {
			return bad("unexpected character %q", r)
		}
	}
	value := func(v string) (int, string) {
		if n, ok := f.names[strings.ToLower(v)]; ok {
			return n, ""
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			if f.names != nil {
				return 0, bad("%q is not a number or a %s name", v, f.name)
			}
			return 0, bad("%q is not a number", v)
		}
		if n < f.min || n > f.max {
			return 0, bad("%d is out of range %d-%d", n, f.min, f.max)
		}
		return n, ""
	}
	for _, item := range strings.Split(s, ",") {
		if item == "" {
			return bad("empty list element")
		}
		rangeAndStep := strings.Split(item, "/")
		if len(rangeAndStep) > 2 {
			return bad("too many slashes in %q", item)
		}
		if len(rangeAndStep) == 2 {
			step, err := strconv.Atoi(rangeAndStep[1])
			if err != nil {
				return bad("step %q is not a number", rangeAndStep[1])
			}
			if step <= 0 {
				return bad("step must be positive")
			}
			if step > f.max-f.min+1 {
				return bad("step %d is larger than the field's range %d-%d", step, f.min, f.max)
			}
		}
		r := rangeAndStep[0]
		if r == "*" || r == "?" {
			continue
		}
		lowHigh := strings.Split(r, "-")
		if len(lowHigh) > 2 {
			return bad("too many hyphens in %q", item)
		}
		lo, msg := value(lowHigh[0])
		if msg != "" {
			return msg
		}
		if len(lowHigh) == 2 {
			hi, msg := value(lowHigh[1])
			if msg != "" {
				return msg
			}
			if lo > hi {
				return bad("range start %d is after its end %d", lo, hi)
			}
		}
	}
	return ""
}

func parseDescriptor(body, text string, loc *time.Location, opts Options) (Schedule, string) {
	parts := strings.Fields(body)
	switch parts[0] {
	case "@every":
		if len(parts) != 2 {
			return nil, "@every takes exactly one duration, as in \"@every 30s\""
		}
		d, err := time.ParseDuration(parts[1])
		if err != nil {
			return nil, fmt.Sprintf("@every: invalid duration %q (use Go syntax such as 30s, 5m, 1h30m)", parts[1])
		}
		if d < time.Second {
			return nil, fmt.Sprintf("@every: duration %s is shorter than 1s", d)
		}
		if d%time.Second != 0 {
			return nil, fmt.Sprintf("@every: duration %s is not a whole number of seconds", d)
		}
		anchor := opts.Anchor
		if anchor.IsZero() {
			anchor = time.Unix(0, 0)
		}
		if anchor.Nanosecond() != 0 {
			return nil, fmt.Sprintf("@every: anchor %s is not a whole second", anchor.Format(time.RFC3339Nano))
		}
		if y := anchor.Year(); y < minYear || y > maxYear {
			return nil, fmt.Sprintf("@every: anchor year %d is outside %d-%d", y, minYear, maxYear)
		}
		return &every{anchor: anchor.UTC(), period: d, text: "@every " + d.String()}, ""
	case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
		if len(parts) != 1 {
			return nil, fmt.Sprintf("descriptor %s takes no arguments", parts[0])
		}
		cs, err := parser().Parse(parts[0])
		if err != nil {
			return nil, err.Error()
		}
		ss, ok := cs.(*cron.SpecSchedule)
		if !ok {
			return nil, fmt.Sprintf("unexpected schedule type %T", cs)
		}
		return newSpec(ss, loc, opts.DST, text)
	}
	return nil, fmt.Sprintf("unknown descriptor %q (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)", parts[0])
}
