//! Times of day and the week: the spans the code counts in, the hour of the week, and reading
//! and writing times the way a user types them over ssh (UTC) or reads them (local time).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::input::BadInput;
use crate::sample::WallMs;

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;
pub const HOURS_PER_WEEK: usize = 168;

/// The start of the minute `ts` falls in (a floor, also before 1970; saturating at the ends of
/// time, which open-ended ranges use).
pub fn minute_of(ts: WallMs) -> WallMs {
    ts.saturating_sub(ts.rem_euclid(MINUTE_MS))
}

/// 0 = Monday 00:00-01:00 ... 167 = Sunday 23:00, at `offset_s` from UTC.
pub fn hour_of_week(ts: WallMs, offset_s: i64) -> usize {
    let local_h = (ts.div_euclid(SECOND_MS) + offset_s).div_euclid(3600);
    // 1970-01-01 was a Thursday (3 days after a Monday).
    (local_h + 3 * 24).rem_euclid(HOURS_PER_WEEK as i64) as usize
}

/// "Tuesday 20:00" for hour `h` of the week.
pub fn hour_of_week_name(h: usize) -> String {
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    format!("{} {:02}:00", DAYS[h / 24 % 7], h % 24)
}

/// Parse `--since`/`--until`: "now", a duration ago ("2h", "7d", "90m"), an RFC 3339 time
/// ("2026-11-25T18:00:00Z", "...+01:00"), "2026-11-25 18:00[:00]" (UTC) or a date "2026-11-25".
pub fn parse_time(s: &str, now: WallMs) -> Result<WallMs, BadInput> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        // "1000000y" ago is before the epoch: an error, not a wrapped-around time.
        return i64::try_from(d.as_millis())
            .ok()
            .and_then(|d| now.checked_sub(d))
            .filter(|t| *t >= 0)
            .ok_or_else(|| BadInput::new(s, "ago is before 1970"));
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(to_ms(t));
    }
    let with_secs = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let without = format_description!("[year]-[month]-[day] [hour]:[minute]");
    for fmt in [with_secs, without] {
        if let Ok(t) = PrimitiveDateTime::parse(&s.replace('T', " "), fmt) {
            return Ok(to_ms(t.assume_utc()));
        }
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(to_ms(d.midnight().assume_utc()));
    }
    Err(BadInput::new(
        s,
        "is not a time: use e.g. \"2h\" (ago), \"2026-11-25\", \"2026-11-25 18:00\" (UTC) or RFC 3339",
    ))
}

fn to_ms(t: OffsetDateTime) -> WallMs {
    (t.unix_timestamp_nanos() / 1_000_000) as WallMs
}

fn datetime(ms: WallMs) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// "2026-11-25 18:04:05" (UTC), for humans.
pub fn format_time(ms: WallMs) -> String {
    datetime(ms)
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .unwrap_or_else(|_| ms.to_string())
}

/// "18:04" (UTC), for tight columns.
pub fn format_hm(ms: WallMs) -> String {
    datetime(ms).format(format_description!("[hour]:[minute]")).unwrap_or_default()
}

/// "3h 05m", "42s": a duration for humans, to the second.
pub fn format_span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A measured value with its unit, rounded for people: "48.2 ms", "3.1%" for a 0-1 ratio.
pub fn with_unit(v: f64, unit: &str) -> String {
    match unit {
        "ratio" => format!("{:.1}%", v * 100.0),
        "" => format!("{v:.3}"),
        u if v.abs() >= 100.0 => format!("{v:.0} {u}"),
        u => format!("{v:.1} {u}"),
    }
}

/// "2026-11-25 19:04:05" in the household's local time (the report, alerts).
pub fn format_local(ms: WallMs) -> String {
    format_time(ms + local_offset_s(ms) * 1000)
}

fn local_datetime(ms: WallMs) -> OffsetDateTime {
    datetime(ms + local_offset_s(ms) * 1000)
}

/// "2026-11-25 19:04", local: the report's tables.
pub fn format_local_minute(ms: WallMs) -> String {
    local_datetime(ms).format(format_description!("[year]-[month]-[day] [hour]:[minute]")).unwrap_or_default()
}

/// "19:04" or, with `seconds`, "19:04:05", local: a time within a day already named.
pub fn format_local_clock(ms: WallMs, seconds: bool) -> String {
    let t = local_datetime(ms);
    match seconds {
        true => t.format(format_description!("[hour]:[minute]:[second]")),
        false => t.format(format_description!("[hour]:[minute]")),
    }
    .unwrap_or_default()
}

/// "2026-11-25", local.
pub fn format_local_date(ms: WallMs) -> String {
    local_datetime(ms).format(format_description!("[year]-[month]-[day]")).unwrap_or_default()
}

/// "11-25 19h", local: an axis label over several days.
pub fn format_local_day_hour(ms: WallMs) -> String {
    local_datetime(ms).format(format_description!("[month]-[day] [hour]h")).unwrap_or_default()
}

/// The local time zone's offset from UTC at `ms`, in seconds (0 when unknown).
pub fn local_offset_s(ms: WallMs) -> i64 {
    let t: libc::time_t = (ms / 1000) as libc::time_t;
    // SAFETY: an all-zero tm is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_floor_even_before_1970() {
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
        assert!(minute_of(i64::MIN) <= i64::MIN + MINUTE_MS);
        assert_eq!(minute_of(i64::MAX), i64::MAX - i64::MAX % MINUTE_MS);
    }

    #[test]
    fn hour_of_week_counts_from_monday() {
        // 2026-11-30 is a Monday
        let monday = to_ms(
            Date::parse("2026-11-30", format_description!("[year]-[month]-[day]")).unwrap().midnight().assume_utc(),
        );
        assert_eq!(hour_of_week(monday, 0), 0);
        assert_eq!(hour_of_week(monday + 20 * HOUR_MS + 59 * MINUTE_MS, 0), 20);
        assert_eq!(hour_of_week(monday - 1, 0), 167);
        assert_eq!(hour_of_week(monday, 3600), 1);
        assert_eq!(hour_of_week(monday, -3600), 167);
        assert_eq!(hour_of_week_name(44), "Tuesday 20:00");
    }

    #[test]
    fn local_parts_are_cut_by_format_not_by_byte() {
        let t = 1_764_547_200_000 + 5 * HOUR_MS + 4 * MINUTE_MS + 5_000;
        let full = format_local(t);
        assert_eq!(format_local_minute(t), full[..16]);
        assert_eq!(format_local_clock(t, true), full[11..]);
        assert_eq!(format_local_clock(t, false), full[11..16]);
        assert_eq!(format_local_date(t), full[..10]);
        assert_eq!(format_local_day_hour(t), format!("{} {}h", &full[5..10], &full[11..13]));
    }

    const NOW: WallMs = 1_764_090_000_000; // 2025-11-25 17:00:00 UTC

    #[test]
    fn parses_what_people_type() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_time("2025-11-25T17:00:00Z", NOW), Ok(NOW));
        assert_eq!(parse_time("2025-11-25T18:00:00+01:00", NOW), Ok(NOW));
        assert_eq!(parse_time("2025-11-25 17:00", NOW), Ok(NOW));
        assert_eq!(parse_time("2025-11-25 17:00:30", NOW), Ok(NOW + 30_000));
        assert_eq!(parse_time("2025-11-25", NOW), Ok(NOW - 17 * 3_600_000));
        assert!(parse_time("yesterday-ish", NOW).unwrap_err().to_string().contains("yesterday-ish"));
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format_time(NOW), "2025-11-25 17:00:00");
        assert_eq!(format_span(42_000), "42s");
        assert_eq!(format_span(3 * 3_600_000 + 5 * 60_000), "3h 05m");
        assert_eq!(format_span(-5), "0s");
    }
}
