//! Instants as kiln writes them: Unix seconds in the plan, RFC 3339 in UTC in outputs and
//! messages, TOML datetimes in specs. Calendar arithmetic is the `time` crate's; nothing here
//! reads a clock or a time-zone database.
//!
//! Every crate that turns seconds into text uses [`format_rfc3339`], so one instant reads the
//! same in a certificate summary, an OCI image config and a plan.

use time::format_description::well_known::Rfc3339;
use time::{Month, OffsetDateTime, PrimitiveDateTime, UtcOffset};
use toml::value::{Date, Datetime, Offset, Time};

/// Seconds since 1970-01-01T00:00:00Z of a TOML datetime that has a date, a time and an offset.
pub(crate) fn unix_seconds(datetime: &Datetime) -> Result<i64, &'static str> {
    let (Some(date), Some(time), Some(offset)) = (datetime.date, datetime.time, datetime.offset)
    else {
        return Err("needs a date, a time and an offset, for example 2026-01-01T00:00:00Z");
    };
    let offset_seconds = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i32::from(minutes) * 60,
    };
    let not_a_date = "is not a date of the calendar, for example 2026-01-01T00:00:00Z";
    let month = Month::try_from(date.month).map_err(|_| not_a_date)?;
    let day = time::Date::from_calendar_date(i32::from(date.year), month, date.day)
        .map_err(|_| not_a_date)?;
    let clock =
        time::Time::from_hms(time.hour, time.minute, time.second).map_err(|_| not_a_date)?;
    let offset = UtcOffset::from_whole_seconds(offset_seconds).map_err(|_| not_a_date)?;
    Ok(PrimitiveDateTime::new(day, clock)
        .assume_offset(offset)
        .unix_timestamp())
}

/// The UTC TOML datetime (whole seconds) of `seconds` since the Unix epoch. Instants outside
/// the years 0000 to 9999, which TOML cannot write, become that range's nearest end.
pub(crate) fn to_toml_datetime(seconds: i64) -> Datetime {
    let instant = utc(seconds);
    Datetime {
        date: Some(Date {
            year: u16::try_from(instant.year()).unwrap_or(0),
            month: u8::from(instant.month()),
            day: instant.day(),
        }),
        time: Some(Time {
            hour: instant.hour(),
            minute: instant.minute(),
            second: instant.second(),
            nanosecond: 0,
        }),
        offset: Some(Offset::Z),
    }
}

/// `seconds` since the Unix epoch as RFC 3339 in UTC, in whole seconds:
/// `2026-01-01T00:00:00Z`. Instants outside the years 0000 to 9999 (which RFC 3339 cannot
/// write) become that range's nearest end.
pub fn format_rfc3339(seconds: i64) -> String {
    utc(seconds)
        .format(&Rfc3339)
        .unwrap_or_else(|_| unreachable!("every instant of the years 0000 to 9999 formats"))
}

/// The UTC instant of `seconds`, clamped to the years 0000 to 9999.
fn utc(seconds: i64) -> OffsetDateTime {
    let first = PrimitiveDateTime::new(
        time::Date::from_calendar_date(0, Month::January, 1).unwrap_or(time::Date::MIN),
        time::Time::MIDNIGHT,
    )
    .assume_utc();
    let last = PrimitiveDateTime::new(
        time::Date::from_calendar_date(9999, Month::December, 31).unwrap_or(time::Date::MAX),
        time::Time::from_hms(23, 59, 59).unwrap_or(time::Time::MIDNIGHT),
    )
    .assume_utc();
    OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap_or(if seconds < 0 { first } else { last })
        .clamp(first, last)
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
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn instants_beyond_rfc_3339_are_clamped() {
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
        assert_eq!(
            to_toml_datetime(i64::MAX).to_string(),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn dates_not_in_the_calendar_are_refused() {
        // Built field by field: TOML's own parser may refuse some of these first.
        for (month, day) in [(2, 29), (4, 31), (13, 1), (0, 1), (1, 0)] {
            let mut datetime = to_toml_datetime(1_767_225_600);
            datetime.date = Some(Date {
                year: 2026,
                month,
                day,
            });
            assert!(unix_seconds(&datetime).is_err(), "2026-{month}-{day}");
        }
        let mut leap_second = to_toml_datetime(1_767_225_600);
        leap_second.time = Some(Time {
            hour: 23,
            minute: 59,
            second: 60,
            nanosecond: 0,
        });
        assert!(unix_seconds(&leap_second).is_err());
    }

    #[test]
    fn local_datetimes_are_refused() {
        let datetime: Datetime = "2026-01-01T00:00:00".parse().expect("parses");
        assert!(unix_seconds(&datetime).is_err());
    }
}
