//! Conversions between TOML datetimes and Unix seconds, with no clock and no time-zone database.

use toml::value::{Date, Datetime, Offset, Time};

/// Seconds since 1970-01-01T00:00:00Z of a TOML datetime that has a date, a time and an offset.
pub(crate) fn unix_seconds(datetime: &Datetime) -> Result<i64, &'static str> {
    let (Some(date), Some(time), Some(offset)) = (datetime.date, datetime.time, datetime.offset)
    else {
        return Err("needs a date, a time and an offset, for example 2026-01-01T00:00:00Z");
    };
    let offset_minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    Ok(seconds)
}

/// The UTC TOML datetime (whole seconds) of `seconds` since the Unix epoch.
pub(crate) fn to_toml_datetime(seconds: i64) -> Datetime {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Datetime {
        date: Some(Date {
            year: u16::try_from(year).unwrap_or(u16::MAX),
            month: month as u8,
            day: day as u8,
        }),
        time: Some(Time {
            hour: (second_of_day / 3600) as u8,
            minute: (second_of_day % 3600 / 60) as u8,
            second: (second_of_day % 60) as u8,
            nanosecond: 0,
        }),
        offset: Some(Offset::Z),
    }
}

/// RFC 3339 in UTC with whole seconds: `2026-01-01T00:00:00Z`.
pub(crate) fn format_rfc3339(seconds: i64) -> String {
    to_toml_datetime(seconds).to_string()
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: i64) {
        let datetime: Datetime = text.parse().expect("test datetimes parse");
        assert_eq!(unix_seconds(&datetime), Ok(expect), "{text}");
    }

    #[test]
    fn known_instants() {
        check("1970-01-01T00:00:00Z", 0);
        check("2000-03-01T00:00:00Z", 951_868_800);
        check("2026-01-01T00:00:00Z", 1_767_225_600);
        check("2026-01-01T01:00:00+01:00", 1_767_225_600);
        check("2024-02-29T12:34:56Z", 1_709_210_096);
    }

    #[test]
    fn round_trip() {
        for seconds in [0, 1, 86_399, 951_868_800, 1_767_225_600, 4_102_444_799] {
            let datetime = to_toml_datetime(seconds);
            assert_eq!(unix_seconds(&datetime), Ok(seconds));
        }
        assert_eq!(format_rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn local_datetimes_are_refused() {
        let datetime: Datetime = "2026-01-01T00:00:00".parse().expect("parses");
        assert!(unix_seconds(&datetime).is_err());
    }
}
