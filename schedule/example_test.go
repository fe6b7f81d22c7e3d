package schedule_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/oncecron/oncecron/schedule"
)

func ExampleParse() {
	s, err := schedule.Parse("0 30 2 * * *", schedule.Options{})
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	// Output: 2026-01-01 02:30:00 +0000 UTC
}

func ExampleParse_error() {
	_, err := schedule.Parse("0 30 2 *", schedule.Options{})
	fmt.Println(err)
	var pe *schedule.ParseError
	if errors.As(err, &pe) {
		fmt.Println(pe.Msg)
	}
	// Output:
	// schedule: invalid spec "0 30 2 *": expected 5 or 6 fields, got 4
	// expected 5 or 6 fields, got 4
}

// In New York, 02:00-02:59 does not exist on 2026-03-08. Under the default
// policy the four quarter-hours of that hour fire once, when the clock jumps.
func ExampleParse_springForward() {
	s, err := schedule.Parse("CRON_TZ=America/New_York */15 2 * * *", schedule.Options{DST: schedule.DSTAdjust})
	if err != nil {
		panic(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	for _, t := range s.Between(time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 7, 0, 0, 0, time.UTC), 10) {
		fmt.Println(t.In(ny))
	}
	// Output:
	// 2026-03-08 03:00:00 -0400 EDT
	// 2026-03-09 02:00:00 -0400 EDT
	// 2026-03-09 02:15:00 -0400 EDT
	// 2026-03-09 02:30:00 -0400 EDT
	// 2026-03-09 02:45:00 -0400 EDT
}

// In New York, 01:00-01:59 happens twice on 2026-11-01. DSTBoth fires both times.
func ExampleParse_fallBack() {
	ny, _ := time.LoadLocation("America/New_York")
	s, err := schedule.Parse("*/30 * * * *", schedule.Options{Location: ny, DST: schedule.DSTBoth})
	if err != nil {
		panic(err)
	}
	for _, t := range s.Between(time.Date(2026, 11, 1, 4, 45, 0, 0, time.UTC), time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC), 10) {
		fmt.Println(t.In(ny))
	}
	// Output:
	// 2026-11-01 01:00:00 -0400 EDT
	// 2026-11-01 01:30:00 -0400 EDT
	// 2026-11-01 01:00:00 -0500 EST
	// 2026-11-01 01:30:00 -0500 EST
	// 2026-11-01 02:00:00 -0500 EST
}

// @every fires on a grid anchored at Options.Anchor, whatever the instant
// Next is asked about.
func ExampleParse_every() {
	anchor := time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC)
	s, err := schedule.Parse("@every 1m", schedule.Options{Anchor: anchor})
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Next(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)))
	fmt.Println(s.Next(time.Date(2026, 6, 1, 12, 0, 42, 0, time.UTC)))
	// Output:
	// 2026-06-01 12:00:05 +0000 UTC
	// 2026-06-01 12:01:05 +0000 UTC
}

func ExampleSchedule_Between() {
	s, err := schedule.Parse("@hourly", schedule.Options{})
	if err != nil {
		panic(err)
	}
	// Catch-up after an outage from 10:30 to 14:10: at most 2 missed ticks.
	for _, t := range s.Between(time.Date(2026, 1, 1, 10, 30, 0, 0, time.UTC), time.Date(2026, 1, 1, 14, 10, 0, 0, time.UTC), 2) {
		fmt.Println(t)
	}
	// Output:
	// 2026-01-01 11:00:00 +0000 UTC
	// 2026-01-01 12:00:00 +0000 UTC
}

func ExampleParseDSTPolicy() {
	p, err := schedule.ParseDSTPolicy("skip")
	fmt.Println(p, err, p == schedule.DSTSkip)
	_, err = schedule.ParseDSTPolicy("never")
	fmt.Println(err)
	// Output:
	// skip <nil> true
	// unknown DST policy "never" (want adjust, skip or both)
}

func ExampleLoadLocation() {
	_, err := schedule.LoadLocation("Local")
	fmt.Println(err != nil)
	l, _ := schedule.LoadLocation("")
	fmt.Println(l)
	// Output:
	// true
	// UTC
}
