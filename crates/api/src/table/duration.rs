//! Go's `duration.HumanDuration`: the AGE and "… ago" text that kubectl and the API server print.

use jiff::{SignedDuration, Timestamp};

/// Formats a duration as upstream `k8s.io/apimachinery/pkg/util/duration.HumanDuration` does:
/// about two significant figures, from `45s` through `5m30s`, `3h4m`, `2d3h`, `729d` to `2y10d`.
///
/// Durations down to one second in the past print as `0s` (clock skew between machines);
/// anything more negative is `<invalid>`. Years are 365 days.
pub fn human_duration(d: SignedDuration) -> String {
    // `as_secs` truncates toward zero like Go's `int(d.Seconds())`, so -1.5s is -1 → "0s".
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dy}d")
        };
    }
    format!("{years}y")
}

/// Upstream `translateTimestampSince`: the age of `timestamp` at `now`, or `<unknown>` when the
/// timestamp is absent (Go's zero time).
pub(super) fn since(timestamp: Option<Timestamp>, now: Timestamp) -> String {
    match timestamp {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    #[test]
    fn human_duration_matches_upstream_table() {
        let cases: &[(SignedDuration, &str)] = &[
            (SignedDuration::from_millis(-2500), "<invalid>"),
            (secs(-2), "<invalid>"),
            (SignedDuration::from_millis(-1500), "0s"),
            (secs(-1), "0s"),
            (secs(0), "0s"),
            (secs(5), "5s"),
            (secs(45), "45s"),
            (secs(119), "119s"),
            (secs(120), "2m"),
            (secs(123), "2m3s"),
            (secs(5 * 60 + 30), "5m30s"),
            (secs(9 * 60 + 59), "9m59s"),
            (secs(10 * 60), "10m"),
            (secs(10 * 60 + 59), "10m"),
            (secs(179 * 60 + 59), "179m"),
            (secs(3 * 3600), "3h"),
            (secs(3 * 3600 + 4 * 60 + 5), "3h4m"),
            (secs(7 * 3600 + 59 * 60), "7h59m"),
            (secs(8 * 3600 + 30 * 60), "8h"),
            (secs(47 * 3600 + 59 * 60), "47h"),
            (secs(48 * 3600), "2d"),
            (secs(51 * 3600), "2d3h"),
            (secs(5 * 86400), "5d"),
            (secs(8 * 86400 - 1), "7d23h"),
            (secs(8 * 86400), "8d"),
            (secs(729 * 86400), "729d"),
            (secs(730 * 86400), "2y"),
            (secs(733 * 86400), "2y3d"),
            (secs((365 * 2 + 10) * 86400), "2y10d"),
            (secs(8 * 365 * 86400), "8y"),
            (secs((9 * 365 + 100) * 86400), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "duration {d:?}");
        }
    }

    #[test]
    fn sub_second_precision_is_truncated_not_rounded() {
        assert_eq!(human_duration(SignedDuration::from_millis(119_999)), "119s");
        assert_eq!(
            human_duration(SignedDuration::from_millis(599_999)),
            "9m59s"
        );
    }

    #[test]
    fn since_missing_timestamp_is_unknown() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().expect("valid");
        assert_eq!(since(None, now), "<unknown>");
        let t: Timestamp = "2024-05-01T11:57:30Z".parse().expect("valid");
        assert_eq!(since(Some(t), now), "2m30s");
    }
}
