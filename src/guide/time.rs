//! XMLTV time stamps (`YYYYMMDDhhmmss +0000`) from Unix seconds, in UTC.
//!
//! Rules: pure integer arithmetic on the proleptic Gregorian calendar (no time zone
//! database, no clock); times whose year is outside 1..=9999 have no XMLTV form.

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian.
///
/// Works in 400-year eras (146 097 days each) counted from 0000-03-01, so that the leap
/// day is the last day of its "year" and needs no special case.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // month, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both values are small and positive by construction.
    (year, month as u32, day as u32)
}

/// Unix seconds → (year, month, day, hour, minute, second) in UTC.
pub fn civil_from_unix(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (year, month, day) = civil_from_days(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400) as u32; // 0..86400 fits
    (year, month, day, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `t` (Unix seconds) as `YYYYMMDDhhmmss +0000`.
///
/// Guarantees: `Some` exactly when the year is within 1..=9999, and then the string is
/// 20 ASCII bytes in that format.
pub fn xmltv_time(t: i64) -> Option<String> {
    let (year, month, day, hour, minute, second) = civil_from_unix(t);
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02} +0000"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> String {
        xmltv_time(s).unwrap_or_default()
    }

    #[test]
    fn known_timestamps() {
        assert_eq!(t(0), "19700101000000 +0000");
        assert_eq!(t(-1), "19691231235959 +0000");
        assert_eq!(t(86_399), "19700101235959 +0000");
        assert_eq!(t(951_782_400), "20000229000000 +0000"); // 2000 is a leap year
        assert_eq!(t(951_868_800), "20000301000000 +0000");
        assert_eq!(t(1_709_164_800), "20240229000000 +0000");
        assert_eq!(t(1_709_251_199), "20240229235959 +0000");
        assert_eq!(t(1_740_787_200), "20250301000000 +0000"); // 2025: no Feb 29
        assert_eq!(t(4_107_542_399), "21000228235959 +0000"); // 2100 is not a leap year
        assert_eq!(t(4_107_542_400), "21000301000000 +0000");
        assert_eq!(t(1_234_567_890), "20090213233130 +0000");
        assert_eq!(t(1_700_000_000), "20231114221320 +0000");
        assert_eq!(t(2_147_483_647), "20380119031407 +0000");
        assert_eq!(t(2_147_483_648), "20380119031408 +0000"); // past i32
        assert_eq!(t(4_102_444_800), "21000101000000 +0000");
        assert_eq!(t(253_402_300_799), "99991231235959 +0000");
        assert_eq!(t(-62_135_596_800), "00010101000000 +0000");
    }

    #[test]
    fn out_of_range_years_have_no_form() {
        assert_eq!(xmltv_time(253_402_300_800), None); // 10000-01-01
        assert_eq!(xmltv_time(-62_135_596_801), None); // year 0
        assert_eq!(xmltv_time(i64::MAX), None);
        assert_eq!(xmltv_time(i64::MIN), None);
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 1900..2500 day by day and check the calendar never skips or repeats.
        let mut prev = civil_from_days(-25_567); // 1900-01-01
        assert_eq!(prev, (1900, 1, 1));
        for d in -25_566..193_000 {
            let cur = civil_from_days(d);
            let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match prev.1 {
                2 if leap(prev.0) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if prev.2 < len {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!(cur, expected, "day {d}");
            prev = cur;
        }
    }
}
