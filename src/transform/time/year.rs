//! The year of a time written without one: RFC 3164 syslog (`Nov 23 10:00:01`) and `time_format`s
//! like `%b %d %H:%M:%S`.
//!
//! The rule, as one pure function of the parsed month/day/time, now and the zone: **the latest
//! year that does not put the time more than a day after now.** So a line is placed nearest to now
//! on the side it comes from — the past — with a day's grace for clocks and zones ahead:
//!
//! - `Jan  1 00:00:05` read at Dec 31 23:00 is next year's (an hour ahead);
//! - `Dec 31 23:59` read at Jan 1 00:10 is last year's;
//! - `Dec 10` read in June is last December's, not next December's — although that one is a few
//!   days nearer, logs do not come from half a year ahead, while old files are replayed;
//! - `Feb 29` is the latest Feb 29 that was (in a year without one, the last leap year's: a
//!   writer whose clock said Feb 29 was in a leap year);
//! - the wall time is read in the zone: in a DST gap (02:30 on a spring-forward day) with the
//!   offset before the gap, i.e. as 03:30 summer time; in a fold (02:30 on a fall-back day) as the
//!   first of the two ("compatible", as RFC 5545 and Temporal do).

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How far ahead of now a yearless time may be placed.
const GRACE: SignedDuration = SignedDuration::from_hours(24);
/// Years looked back for a date that exists: 8 covers Feb 29 across a century that is not leap
/// (2096 → 2104).
const YEARS_BACK: i16 = 8;

/// The instant of `month`/`day` at `time` in `tz` in the year chosen by the rule above; `None`
/// when the date exists in none of the years looked at (Feb 30, Apr 31).
pub fn place_in_year(
    month: i8,
    day: i8,
    time: Time,
    now: Timestamp,
    tz: &TimeZone,
) -> Option<Timestamp> {
    let latest = now.checked_add(GRACE).ok()?;
    let now_civil = tz.to_datetime(now);
    let year = now_civil.year();
    // Next year's is within a day of now only for a January time read in December: anything
    // else skips it without asking the zone (this runs per syslog line).
    let next = i16::from(month == 1 && now_civil.month() == 12);
    (year.saturating_sub(YEARS_BACK)..=year.saturating_add(next))
        .rev()
        .find_map(|y| {
            let dt: DateTime = Date::new(y, month, day).ok()?.to_datetime(time);
            let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            (ts <= latest).then_some(ts)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (now, zone, month, day, time, want as RFC 3339 UTC or None)
    #[test]
    fn years_are_chosen_nearest_to_now_and_never_far_ahead() {
        let berlin = "Europe/Berlin";
        let ny = "America/New_York";
        type Case<'a> = (&'a str, &'a str, i8, i8, &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            // New Year, both ways
            (
                "2026-12-31T23:00:00Z",
                "UTC",
                1,
                1,
                "00:00:05",
                Some("2027-01-01T00:00:05Z"),
            ),
            (
                "2027-01-01T00:10:00Z",
                "UTC",
                12,
                31,
                "23:59:00",
                Some("2026-12-31T23:59:00Z"),
            ),
            // ... in the input's zone: 23:30 UTC on Dec 31 is already Jan 1 in Berlin
            (
                "2026-12-31T23:30:00Z",
                berlin,
                1,
                1,
                "00:20:00",
                Some("2026-12-31T23:20:00Z"),
            ),
            (
                "2026-12-31T22:30:00Z",
                ny,
                1,
                1,
                "00:00:01",
                Some("2027-01-01T05:00:01Z"),
            ),
            // today, and a few seconds ahead (clock skew)
            (
                "2026-06-15T12:00:00Z",
                "UTC",
                6,
                15,
                "11:59:00",
                Some("2026-06-15T11:59:00Z"),
            ),
            (
                "2026-06-15T12:00:00Z",
                "UTC",
                6,
                15,
                "12:00:30",
                Some("2026-06-15T12:00:30Z"),
            ),
            // a day ahead is the limit; past it the line is last year's
            (
                "2026-06-15T12:00:00Z",
                "UTC",
                6,
                16,
                "12:00:00",
                Some("2026-06-16T12:00:00Z"),
            ),
            (
                "2026-06-15T12:00:00Z",
                "UTC",
                6,
                16,
                "12:00:01",
                Some("2025-06-16T12:00:01Z"),
            ),
            // December read in June is last December, though next December is nearer
            (
                "2026-06-15T12:00:00Z",
                "UTC",
                12,
                10,
                "00:00:00",
                Some("2025-12-10T00:00:00Z"),
            ),
            // Feb 29: this year's in a leap year, else the last leap year's
            (
                "2028-03-01T00:00:00Z",
                "UTC",
                2,
                29,
                "10:00:00",
                Some("2028-02-29T10:00:00Z"),
            ),
            (
                "2026-03-01T00:00:00Z",
                "UTC",
                2,
                29,
                "10:00:00",
                Some("2024-02-29T10:00:00Z"),
            ),
            (
                "2027-12-31T23:00:00Z",
                "UTC",
                2,
                29,
                "10:00:00",
                Some("2024-02-29T10:00:00Z"),
            ),
            (
                "2028-02-28T12:00:00Z",
                "UTC",
                2,
                29,
                "10:00:00",
                Some("2028-02-29T10:00:00Z"),
            ),
            // 2100 is not a leap year: back to 2096
            (
                "2101-03-01T00:00:00Z",
                "UTC",
                2,
                29,
                "00:00:00",
                Some("2096-02-29T00:00:00Z"),
            ),
            // dates no year has
            ("2026-06-15T12:00:00Z", "UTC", 2, 30, "00:00:00", None),
            ("2026-06-15T12:00:00Z", "UTC", 4, 31, "00:00:00", None),
            ("2026-06-15T12:00:00Z", "UTC", 13, 1, "00:00:00", None),
            // DST in the zone: winter +1, summer +2
            (
                "2026-07-15T12:00:00Z",
                berlin,
                7,
                15,
                "12:00:00",
                Some("2026-07-15T10:00:00Z"),
            ),
            (
                "2026-07-15T12:00:00Z",
                berlin,
                1,
                15,
                "12:00:00",
                Some("2026-01-15T11:00:00Z"),
            ),
            // spring forward 2026-03-29 02:00 → 03:00: 02:30 never happened, read as 03:30 CEST
            (
                "2026-04-01T00:00:00Z",
                berlin,
                3,
                29,
                "02:30:00",
                Some("2026-03-29T01:30:00Z"),
            ),
            // fall back 2026-10-25 03:00 → 02:00: 02:30 happened twice, the first is taken
            (
                "2026-11-01T00:00:00Z",
                berlin,
                10,
                25,
                "02:30:00",
                Some("2026-10-25T00:30:00Z"),
            ),
            (
                "2026-11-01T00:00:00Z",
                ny,
                11,
                1,
                "01:30:00",
                Some("2026-11-01T05:30:00Z"),
            ),
            // a gap right at now: read at 01:10 UTC (03:10 CEST), 02:30 is placed at 01:30 UTC,
            // 20 minutes ahead, and stays this year's
            (
                "2026-03-29T01:10:00Z",
                berlin,
                3,
                29,
                "02:30:00",
                Some("2026-03-29T01:30:00Z"),
            ),
        ];
        for (now, zone, month, day, time, want) in cases {
            let tz = TimeZone::get(zone).unwrap_or_else(|e| panic!("{zone}: {e}"));
            let time: Time = time.parse().expect("time");
            let got = place_in_year(*month, *day, time, at(now), &tz);
            assert_eq!(
                got,
                want.map(at),
                "{month}-{day} {time} read at {now} in {zone}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever now is, the time placed is at most a day ahead and less than a year (plus the
        /// day) behind, for every date that exists in the year before now's.
        #[test]
        fn placed_times_are_within_a_year_behind_and_a_day_ahead(
            secs in 0i64..4_000_000_000,
            month in 1i8..=12,
            day in 1i8..=28,
            h in 0i8..24,
            m in 0i8..60,
        ) {
            let now = Timestamp::from_second(secs).expect("ts");
            let tz = TimeZone::get("Europe/Berlin").expect("tz");
            let time = Time::new(h, m, 0, 0).expect("time");
            let got = place_in_year(month, day, time, now, &tz).expect("placed");
            let ahead = got.duration_since(now);
            proptest::prop_assert!(ahead <= GRACE, "{got} is more than a day after {now}");
            proptest::prop_assert!(
                ahead > -SignedDuration::from_hours(367 * 24),
                "{got} is over a year before {now}"
            );
        }
    }
}
