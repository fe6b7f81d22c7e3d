// Command benchsummary reads `go test -bench` output (several runs of the same
// benchmarks, as scripts/bench.sh collects them) and prints, per package and
// benchmark, the median of every metric over the runs, and the ratio of each
// oncecron benchmark to its raw floor.
//
//	go run ./scripts/benchsummary [-md] [FILE...]   (stdin without FILE)
//
// Metrics whose unit ends in "-winner" (zero-winner, two-winner: rounds that
// must not happen) are summed over the runs instead.
//
// Pairs: in each package, a benchmark whose name starts with "Raw" is the floor
// of the one other benchmark that is paired with it by "Race": a Raw...Race...
// benchmark is the floor of the package's other benchmark with "Race" in its
// name (ClaimLostRace), any other Raw benchmark the floor of the package's
// ClaimComplete. A pair is printed when both sides ran. Its ratio is given two
// ways: median(oncecron)/median(raw), and the median of the per-round ratios
// (run k of one over run k of the other; bench.sh runs the whole set once per
// round, so both sides of a round saw the same machine).
//
// Sub-benchmarks of the comparison module (bench/, names Group/contender): in
// each group, a contender named "raw" or "raw-<variant>" is the floor of every
// other contender of the group whose name ends in "-<variant>" (the longest
// such variant wins), or else of every other contender, with plain "raw".
// Metrics whose unit starts with "ns/" (ns/winner, ns/lost) are printed as
// durations.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

const module = "github.com/oncecron/oncecron/"

type bench struct {
	pkg, name string
	runs      []map[string]float64 // unit -> value, one map per run
}

type set struct {
	order   []*bench
	byKey   map[string]*bench
	headers []string // goos, goarch, cpu lines (first seen)
}

func (s *set) get(pkg, name string) *bench {
	k := pkg + "\x00" + name
	if b, ok := s.byKey[k]; ok {
		return b
	}
	b := &bench{pkg: pkg, name: name}
	s.byKey[k] = b
	s.order = append(s.order, b)
	return b
}

func parse(r io.Reader, s *set) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pkg := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, "pkg: ")), module)
			continue
		case strings.HasPrefix(line, "goos: "), strings.HasPrefix(line, "goarch: "), strings.HasPrefix(line, "cpu: "):
			if !slices.Contains(s.headers, line) {
				s.headers = append(s.headers, line)
			}
			continue
		case !strings.HasPrefix(line, "Benchmark"):
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's name line without results (it logged or failed)
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the -GOMAXPROCS suffix
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			m[f[i+1]] = v
		}
		b := s.get(pkg, name)
		b.runs = append(b.runs, m)
	}
	return sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	ys := slices.Clone(xs)
	sort.Float64s(ys)
	n := len(ys)
	if n%2 == 1 {
		return ys[n/2]
	}
	return (ys[n/2-1] + ys[n/2]) / 2
}

func summed(unit string) bool { return strings.HasSuffix(unit, "-winner") }

// summary returns the median (or sum) of unit over b's runs, and whether any
// run reported it.
func (b *bench) summary(unit string) (float64, bool) {
	var xs []float64
	for _, r := range b.runs {
		if v, ok := r[unit]; ok {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return 0, false
	}
	if summed(unit) {
		var t float64
		for _, x := range xs {
			t += x
		}
		return t, true
	}
	return median(xs), true
}

func (b *bench) values(unit string) []float64 {
	var xs []float64
	for _, r := range b.runs {
		xs = append(xs, r[unit])
	}
	return xs
}

// units returns b's units: ns/op first, then the custom metrics, then B/op and
// allocs/op.
func (b *bench) units() []string {
	seen := map[string]bool{}
	var us []string
	for _, r := range b.runs {
		for u := range r {
			if !seen[u] {
				seen[u] = true
				us = append(us, u)
			}
		}
	}
	rank := func(u string) int {
		switch u {
		case "ns/op":
			return 0
		case "B/op":
			return 2
		case "allocs/op":
			return 3
		}
		return 1
	}
	sort.Slice(us, func(i, j int) bool {
		if ri, rj := rank(us[i]), rank(us[j]); ri != rj {
			return ri < rj
		}
		return us[i] < us[j]
	})
	return us
}

func fmtDur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func fmtVal(unit string, v float64) string {
	switch {
	case unit == "ns/op":
		return fmtDur(v)
	case strings.HasPrefix(unit, "ns/"):
		return unit[len("ns/"):] + "=" + fmtDur(v)
	case summed(unit):
		return fmt.Sprintf("%s=%.0f", unit, v)
	case v == float64(int64(v)) || v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

type pair struct{ mine, raw *bench }

func pairs(s *set) []pair {
	var out []pair
	for _, raw := range s.order {
		if !strings.HasPrefix(raw.name, "Raw") {
			continue
		}
		race := strings.Contains(raw.name, "Race")
		var cands []*bench
		for _, b := range s.order {
			if b.pkg != raw.pkg || strings.HasPrefix(b.name, "Raw") {
				continue
			}
			if race && strings.Contains(b.name, "Race") || !race && b.name == "ClaimComplete" {
				cands = append(cands, b)
			}
		}
		if len(cands) == 1 {
			out = append(out, pair{cands[0], raw})
		}
	}
	// Group/contender sub-benchmarks, each with the raw floor of its group.
	for _, b := range s.order {
		group, sub, ok := strings.Cut(b.name, "/")
		if !ok || isRaw(sub) {
			continue
		}
		var floor *bench
		for _, raw := range s.order {
			g, rsub, ok := strings.Cut(raw.name, "/")
			if !ok || raw.pkg != b.pkg || g != group || !isRaw(rsub) {
				continue
			}
			variant := strings.TrimPrefix(rsub, "raw")
			if !strings.HasSuffix(sub, variant) {
				continue
			}
			if floor == nil || len(variant) > len(strings.TrimPrefix(strings.SplitN(floor.name, "/", 2)[1], "raw")) {
				floor = raw
			}
		}
		if floor != nil {
			out = append(out, pair{b, floor})
		}
	}
	return out
}

func isRaw(sub string) bool { return sub == "raw" || strings.HasPrefix(sub, "raw-") }

// roundRatios returns mine/raw for each round both ran.
func roundRatios(p pair) []float64 {
	a, b := p.mine.values("ns/op"), p.raw.values("ns/op")
	var rs []float64
	for i := 0; i < len(a) && i < len(b); i++ {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return rs
}

func main() {
	md := flag.Bool("md", false, "print Markdown tables")
	flag.Parse()
	s := &set{byKey: map[string]*bench{}}
	if flag.NArg() == 0 {
		if err := parse(os.Stdin, s); err != nil {
			fmt.Fprintln(os.Stderr, "benchsummary:", err)
			os.Exit(1)
		}
	}
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchsummary:", err)
			os.Exit(1)
		}
		err = parse(f, s)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchsummary:", name+":", err)
			os.Exit(1)
		}
	}
	if len(s.order) == 0 {
		fmt.Fprintln(os.Stderr, "benchsummary: no benchmark results in the input")
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()

	for _, h := range s.headers {
		fmt.Fprintln(w, h)
	}
	fmt.Fprintln(w)
	if *md {
		fmt.Fprintln(w, "| package | benchmark | runs | median time/op | range | other metrics (median; *-winner: total) |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---|")
	} else {
		fmt.Fprintf(w, "%-20s %-40s %4s %12s %25s  %s\n", "package", "benchmark", "runs", "median/op", "min .. max", "other metrics (median; *-winner: total over runs)")
	}
	for _, b := range s.order {
		med, _ := b.summary("ns/op")
		ns := b.values("ns/op")
		rng := fmtDur(slices.Min(ns)) + " .. " + fmtDur(slices.Max(ns))
		var other []string
		for _, u := range b.units() {
			if u == "ns/op" {
				continue
			}
			if v, ok := b.summary(u); ok {
				other = append(other, fmtVal(u, v))
			}
		}
		if *md {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s |\n", b.pkg, b.name, len(b.runs), fmtDur(med), rng, strings.Join(other, ", "))
		} else {
			fmt.Fprintf(w, "%-20s %-40s %4d %12s %25s  %s\n", b.pkg, b.name, len(b.runs), fmtDur(med), rng, strings.Join(other, "  "))
		}
	}

	ps := pairs(s)
	if len(ps) == 0 {
		return
	}
	fmt.Fprintln(w)
	if *md {
		fmt.Fprintln(w, "| package | oncecron | raw floor | oncecron median | raw median | ratio of medians | median of per-round ratios | per-round ratios min .. max |")
		fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|")
	} else {
		fmt.Fprintln(w, "ratios oncecron/raw (goal <= 1.10)")
		fmt.Fprintf(w, "%-20s %-40s %-24s %10s %10s %8s %12s %16s\n", "package", "oncecron (or other)", "raw floor", "oncecron", "raw", "ratio", "round-ratio", "rounds min..max")
	}
	for _, p := range ps {
		a, _ := p.mine.summary("ns/op")
		b, _ := p.raw.summary("ns/op")
		rr := roundRatios(p)
		rmed, rrng := "-", "-"
		if len(rr) > 0 {
			rmed = fmt.Sprintf("%.2f", median(rr))
			rrng = fmt.Sprintf("%.2f .. %.2f", slices.Min(rr), slices.Max(rr))
		}
		ratio := "-"
		if b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		if *md {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", p.mine.pkg, p.mine.name, p.raw.name, fmtDur(a), fmtDur(b), ratio, rmed, rrng)
		} else {
			fmt.Fprintf(w, "%-20s %-40s %-24s %10s %10s %8s %12s %16s\n", p.mine.pkg, p.mine.name, p.raw.name, fmtDur(a), fmtDur(b), ratio, rmed, rrng)
		}
	}
}
