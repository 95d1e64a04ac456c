//! Cron schedules as the CronJob controller reads them (robfig/cron's standard parser): five
//! fields `minute hour day-of-month month day-of-week` with `*`, `?`, lists, ranges, steps and
//! month/day names, or a descriptor (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`, `@every <duration>`). Times are evaluated in a jiff time zone.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// A schedule that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ParseError(String);

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Field bitsets (bit n set = value n allowed).
    Fields {
        /// Minutes 0–59.
        minute: u64,
        /// Hours 0–23.
        hour: u64,
        /// Days of month 1–31.
        dom: u64,
        /// Months 1–12.
        month: u64,
        /// Days of week 0–6 (Sunday 0).
        dow: u64,
        /// The day-of-month field was `*`/`?` (then both day fields must match, else either).
        dom_star: bool,
        /// The day-of-week field was `*`/`?`.
        dow_star: bool,
    },
    /// `@every <duration>`: a fixed period from the previous activation.
    Every(SignedDuration),
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], base: u32) -> Result<u32, ParseError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(u32::try_from(i).unwrap_or(0) + base);
    }
    s.parse::<u32>()
        .map_err(|_| ParseError(format!("failed to parse int from {s}")))
}

/// One field: returns its bitset and whether it was a bare `*`/`?`.
fn field(
    s: &str,
    min: u32,
    max: u32,
    names: &[&str],
    base: u32,
) -> Result<(u64, bool), ParseError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st = st
                    .parse::<u32>()
                    .map_err(|_| ParseError(format!("failed to parse int from {st}")))?;
                (r, Some(st))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step.is_none() {
                star = true;
            }
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, base)?, value(b, names, base)?)
        } else {
            let v = value(range, names, base)?;
            // `N/step` means from N to the end.
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(ParseError(format!(
                "end of range ({hi}) above maximum ({max}): {part}"
            )));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(ParseError(format!(
                "step of range should be a positive number: {part}"
            )));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star && s.split(',').count() == 1))
}

impl Schedule {
    /// Parse a schedule in the standard five-field syntax or a descriptor.
    pub fn parse(spec: &str) -> Result<Schedule, ParseError> {
        let spec = spec.trim();
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(ParseError(
                "CRON_TZ or TZ used in schedule is not supported".into(),
            ));
        }
        if let Some(d) = spec.strip_prefix('@') {
            let five = match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    if let Some(dur) = d.strip_prefix("every ") {
                        return parse_go_duration(dur.trim()).map(Schedule::Every);
                    }
                    return Err(ParseError(format!("unrecognized descriptor: {spec}")));
                }
            };
            return Schedule::parse(five);
        }
        let f: Vec<&str> = spec.split_whitespace().collect();
        if f.len() != 5 {
            return Err(ParseError(format!(
                "expected exactly 5 fields, found {}: {spec}",
                f.len()
            )));
        }
        let (minute, _) = field(f[0], 0, 59, &[], 0)?;
        let (hour, _) = field(f[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(f[2], 1, 31, &[], 0)?;
        let (month, _) = field(f[3], 1, 12, &MONTHS, 1)?;
        // Day of week 7 is Sunday too.
        let (mut dow, dow_star) = field(f[4], 0, 7, &DAYS, 0)?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & !(1 << 7);
        }
        Ok(Schedule::Fields {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let Schedule::Fields {
            dom,
            dow,
            dom_star,
            dow_star,
            ..
        } = self
        else {
            return true;
        };
        let dom_ok = dom & (1 << d.day()) != 0;
        let dow_ok = dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if *dom_star || *dow_star {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        }
    }

    /// The first activation strictly after `after`, evaluated in `tz`; `None` if there is none
    /// within five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, month) = match self {
            Schedule::Every(d) => {
                // robfig rounds the period down to whole seconds and activates on second 0.
                let secs = d.as_secs().max(1);
                return after
                    .checked_add(SignedDuration::from_secs(secs))
                    .ok()
                    .and_then(|t| t.round(jiff::Unit::Second).ok());
            }
            Schedule::Fields {
                minute,
                hour,
                month,
                ..
            } => (*minute, *hour, *month),
        };
        let start = after.to_zoned(tz.clone());
        let mut t: DateTime = start
            .datetime()
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = t.year() + 5;
        while t.year() <= limit {
            if month & (1 << t.month()) == 0 {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if hour & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if minute & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = t.to_zoned(tz.clone()).ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// Go's time.ParseDuration for `@every` (units h, m, s, ms, us/µs, ns; fractions allowed).
fn parse_go_duration(s: &str) -> Result<SignedDuration, ParseError> {
    let bad = || ParseError(format!("failed to parse duration @every {s}"));
    if s.is_empty() {
        return Err(bad());
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return Err(bad()),
        };
        total_nanos += n * mult;
        rest = &rest[unit_end..];
    }
    // Whole nanoseconds: the fraction below 1 ns is meaningless for a schedule.
    Ok(SignedDuration::from_nanos(total_nanos as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn five_fields_steps_ranges_names_and_descriptors() {
        let utc = TimeZone::UTC;
        let every5 = Schedule::parse("*/5 * * * *").expect("parse");
        assert_eq!(
            every5.next(ts("2024-01-01T10:02:30Z"), &utc),
            Some(ts("2024-01-01T10:05:00Z"))
        );
        assert_eq!(
            every5.next(ts("2024-01-01T10:05:00Z"), &utc),
            Some(ts("2024-01-01T10:10:00Z")),
            "strictly after"
        );
        let weekdays = Schedule::parse("30 9 * * MON-FRI").expect("parse");
        // 2024-01-06 is a Saturday.
        assert_eq!(
            weekdays.next(ts("2024-01-06T00:00:00Z"), &utc),
            Some(ts("2024-01-08T09:30:00Z"))
        );
        let hourly = Schedule::parse("@hourly").expect("parse");
        assert_eq!(
            hourly.next(ts("2024-01-01T10:59:59Z"), &utc),
            Some(ts("2024-01-01T11:00:00Z"))
        );
        let yearly = Schedule::parse("@yearly").expect("parse");
        assert_eq!(
            yearly.next(ts("2024-03-01T00:00:00Z"), &utc),
            Some(ts("2025-01-01T00:00:00Z"))
        );
        // Day of month OR day of week when both are restricted.
        let either = Schedule::parse("0 0 13 * FRI").expect("parse");
        assert_eq!(
            either.next(ts("2024-09-01T00:00:00Z"), &utc),
            Some(ts("2024-09-06T00:00:00Z")),
            "the first Friday comes before the 13th"
        );
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .expect("parse")
                .next(ts("2024-01-01T00:00:00Z"), &utc),
            None
        );
        let every = Schedule::parse("@every 90s").expect("parse");
        assert_eq!(
            every.next(ts("2024-01-01T00:00:00Z"), &utc),
            Some(ts("2024-01-01T00:01:30Z"))
        );
    }

    #[test]
    fn bad_schedules_are_rejected() {
        for bad in [
            "* * * *",
            "61 * * * *",
            "* * * * MOO",
            "@fortnightly",
            "CRON_TZ=UTC * * * * *",
            "*/0 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_follow_the_time_zone() {
        let ny = TimeZone::get("America/New_York").expect("tzdb");
        let daily9 = Schedule::parse("0 9 * * *").expect("parse");
        // 09:00 in New York in winter is 14:00 UTC, in summer 13:00 UTC.
        assert_eq!(
            daily9.next(ts("2024-01-15T00:00:00Z"), &ny),
            Some(ts("2024-01-15T14:00:00Z"))
        );
        assert_eq!(
            daily9.next(ts("2024-07-15T00:00:00Z"), &ny),
            Some(ts("2024-07-15T13:00:00Z"))
        );
    }
}
