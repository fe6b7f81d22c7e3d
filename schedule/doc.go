// Package schedule is oncecron's schedule math: it turns a cron spec into
// the exact instants at which a job fires.
//
// # Ticks are instants
//
// Every replica of oncecron reads the same table and races, on a lock
// backend, for each tick: a (job, scheduled instant) pair. For the race to
// be fair the instant must be the same on every replica, so it is always
// computed from the spec (Schedule.Next of the previous tick), never from a
// replica's clock reading. All instants returned are whole seconds in UTC,
// strictly increasing and unique.
//
// # Specs
//
// Parse accepts 5-field specs (minute hour day-of-month month day-of-week),
// 6-field specs (a leading seconds field), the descriptors @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly, and
// "@every D". A "CRON_TZ=Zone " or "TZ=Zone " prefix sets the zone in which
// the fields are read and overrides Options.Location (default UTC). Field
// syntax and the day rule are robfig/cron's: when either day field is
// written with a star (*, ? or */1), a day must match both day-of-month and
// day-of-week; otherwise it must match either. Specs that can never fire
// (February 30th, a step wider than its field) are rejected.
//
// # Wall-clock time and daylight saving
//
// Cron fields describe wall-clock (civil) times in the schedule's zone.
// Next finds matching wall times and maps each to the instant(s) at which
// that wall time is shown. Where the zone changes its UTC offset, that
// mapping is not one-to-one, and the Options.DST policy decides:
//
//   - Spring forward (a gap): the wall times in [transition + old offset,
//     transition + new offset) are never shown, e.g. 02:00-02:59:59 on
//     2026-03-08 in America/New_York, or 02:00-02:29:59 on 2026-10-04 in
//     Australia/Lord_Howe. Under DSTAdjust and DSTBoth, if one or more of
//     them match, the job fires exactly once, at the transition instant
//     (the first instant of the new offset, shown as 03:00 resp. 02:30).
//     If a wall time after the gap also maps to that instant (03:00 in
//     "*/15 2,3 * * *"), it is the same tick: it fires once. Under DSTSkip
//     gap wall times do not fire.
//   - Fall back (a fold): the wall times in [transition + new offset,
//     transition + old offset) are shown twice, e.g. 01:00-01:59:59 on
//     2026-11-01 in America/New_York. Under DSTAdjust and DSTSkip they fire
//     at their first occurrence only (before the transition); under DSTBoth
//     they fire at both occurrences, so "*/30 * * * *" fires at 01:00 EDT,
//     01:30 EDT, 01:00 EST, 01:30 EST, 02:00 EST.
//
// Wall times outside gaps and folds fire once at their only instant,
// whatever the policy. Transitions are taken from the Go time zone
// database (time.Time.ZoneBounds), so any offset change, including
// Lord Howe's 30-minute one and changes of standard time, is handled the
// same way.
//
// # @every
//
// "@every D" fires at Options.Anchor + k·D for every integer k (the anchor
// defaults to the Unix epoch), so all replicas agree on the ticks whatever
// their start times. D must be a whole number of seconds, at least 1s.
// Being a fixed duration, it ignores zones and DST policies.
//
// # Limits
//
// A cron schedule that does not fire within five years after the given
// instant reports the zero time (so "0 0 29 2 *" is found, but not across
// 2100, which is no leap year). Next walks field by field, jumping to the
// next candidate month, day, hour, minute or second, so it costs about the
// same for a spec firing every second or once a year.
package schedule
