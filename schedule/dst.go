package schedule

import "fmt"

// DSTPolicy says what a cron schedule does with wall-clock times that a
// daylight-saving transition skips (the spring-forward gap) or repeats (the
// autumn fold). It has no effect on @every schedules, which are fixed
// durations, nor in zones without transitions. See the package documentation
// for the exact rules.
type DSTPolicy int

const (
	// DSTAdjust (config value "adjust", the default) fires wall times that fall
	// in a gap once, at the instant the gap ends, and wall times that occur
	// twice only at their first occurrence.
	DSTAdjust DSTPolicy = iota
	// DSTSkip (config value "skip") does not fire wall times that fall in a
	// gap, and fires wall times that occur twice only at their first
	// occurrence.
	DSTSkip
	// DSTBoth (config value "both") fires wall times that fall in a gap once,
	// at the instant the gap ends (as DSTAdjust), and wall times that occur
	// twice at both occurrences.
	DSTBoth
)

var dstNames = [...]string{DSTAdjust: "adjust", DSTSkip: "skip", DSTBoth: "both"}

// String returns the configuration name of p: "adjust", "skip" or "both".
func (p DSTPolicy) String() string {
	if p.valid() {
		return dstNames[p]
	}
	return fmt.Sprintf("DSTPolicy(%d)", int(p))
}

func (p DSTPolicy) valid() bool { return p >= 0 && int(p) < len(dstNames) }

// ParseDSTPolicy returns the policy named s ("adjust", "skip" or "both").
func ParseDSTPolicy(s string) (DSTPolicy, error) {
	for i, n := range dstNames {
		if s == n {
			return DSTPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown DST policy %q (want adjust, skip or both)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (p DSTPolicy) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("invalid DST policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *DSTPolicy) UnmarshalText(b []byte) error {
	v, err := ParseDSTPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
