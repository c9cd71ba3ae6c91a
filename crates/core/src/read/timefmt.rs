//! Event times: parsing the time fields Windows collectors write, and formatting times the
//! way the analytic's `security_content_ctime` macro does.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// Parses a textual event time into epoch seconds. Accepted:
/// - RFC 3339 / ISO 8601 with a `T` or a space, any fraction, `Z` or a numeric offset
///   (`2024-03-05T10:11:12.1234567Z`, `2024-03-05 10:11:12 +0100`);
/// - `YYYY-MM-DD HH:MM:SS[.fff]` with no zone (NXLog's EventTime), taken as UTC;
/// - epoch seconds written as a number.
///
/// Returns None for anything else (the caller then uses the Fluent Bit timestamp).
pub fn parse_time_text(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.len() < 4 || s.len() > 64 {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(epoch(dt.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %:z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(epoch(dt.with_timezone(&Utc)));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(epoch(Utc.from_utc_datetime(&naive)));
        }
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().filter(|f| f.is_finite());
    }
    None
}

fn epoch(dt: DateTime<Utc>) -> f64 {
    dt.timestamp() as f64 + dt.timestamp_subsec_nanos() as f64 / 1e9
}

/// `%Y-%m-%dT%H:%M:%S` in UTC, as the analytic's `security_content_ctime` writes times.
pub fn ctime(secs: f64) -> String {
    format_utc(secs, "%Y-%m-%dT%H:%M:%S")
}

/// RFC 3339 with milliseconds, in UTC.
pub fn rfc3339(secs: f64) -> String {
    format_utc(secs, "%Y-%m-%dT%H:%M:%S%.3fZ")
}

fn format_utc(secs: f64, fmt: &str) -> String {
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    match DateTime::<Utc>::from_timestamp(whole as i64, nanos) {
        Some(dt) => dt.format(fmt).to_string(),
        None => crate::analytic::UNKNOWN.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_collector_formats() {
        let t = 1_709_633_472.0; // 2024-03-05T10:11:12Z
        assert_eq!(parse_time_text("2024-03-05T10:11:12Z"), Some(t));
        assert_eq!(
            parse_time_text("2024-03-05T10:11:12.1234567Z"),
            Some(t + 0.1234567)
        );
        assert_eq!(parse_time_text("2024-03-05 10:11:12 +0000"), Some(t));
        assert_eq!(parse_time_text("2024-03-05 11:11:12 +0100"), Some(t));
        assert_eq!(parse_time_text("2024-03-05 10:11:12"), Some(t));
        assert_eq!(
            parse_time_text("2024-03-05T10:11:12.500+00:00"),
            Some(t + 0.5)
        );
        assert_eq!(parse_time_text("1709633472"), Some(t));
        assert_eq!(parse_time_text("yesterday"), None);
        assert_eq!(
            parse_time_text("2024-03-05 10:11:12 Pacific Standard Time"),
            None
        );
    }

    #[test]
    fn ctime_matches_the_macro() {
        assert_eq!(ctime(1_709_633_472.9), "2024-03-05T10:11:12");
        assert_eq!(rfc3339(1_709_633_472.25), "2024-03-05T10:11:12.250Z");
    }
}
