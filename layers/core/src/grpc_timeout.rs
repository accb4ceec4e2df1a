//! The gRPC `grpc-timeout` header: how long the caller will wait, as at most eight digits and a
//! unit (`H`ours, `M`inutes, `S`econds, `m`illis, `u` micros, `n`anos), from the gRPC over
//! HTTP/2 protocol.
//!
//! ```
//! use std::time::Duration;
//! use vitals_core::grpc_timeout;
//!
//! let value = grpc_timeout::encode(Duration::from_millis(250));
//! assert_eq!(value.to_str().unwrap(), "250000u");
//! assert_eq!(grpc_timeout::parse(&value), Some(Duration::from_millis(250)));
//! assert_eq!(grpc_timeout::parse(&"1.5S".parse().unwrap()), None);
//! ```

use std::time::Duration;

use http::HeaderValue;

/// The header's name.
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The largest number the header may carry in one unit.
const MAX_DIGITS_VALUE: u128 = 99_999_999;

/// The header value for `timeout`: the finest unit whose count fits in eight digits, rounded
/// up so the callee never thinks it has less time than the caller gives; a timeout beyond
/// 99,999,999 hours is sent as that.
pub fn encode(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (count, unit) = units
        .iter()
        .map(|&(size, unit)| (nanos.div_ceil(size), unit))
        .find(|&(count, _)| count <= MAX_DIGITS_VALUE)
        .unwrap_or((MAX_DIGITS_VALUE, 'H'));
    let mut text = [0u8; 9];
    let mut digits = count;
    let mut len = 0;
    loop {
        // `digits % 10` is below ten.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (digits % 10) as u8;
        text[len] = b'0' + digit;
        len += 1;
        digits /= 10;
        if digits == 0 {
            break;
        }
    }
    text[..len].reverse();
    let mut unit_byte = [0u8; 4];
    text[len] = unit.encode_utf8(&mut unit_byte).as_bytes()[0];
    HeaderValue::from_bytes(&text[..=len]).unwrap_or_else(|_| HeaderValue::from_static("0n"))
}

/// The timeout in a header value; `None` for anything but one to eight ASCII digits and a
/// unit.
pub fn parse(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let count = digits
        .iter()
        .fold(0_u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(count * 3_600),
        b'M' => Duration::from_secs(count * 60),
        b'S' => Duration::from_secs(count),
        b'm' => Duration::from_millis(count),
        b'u' => Duration::from_micros(count),
        b'n' => Duration::from_nanos(count),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_in_the_finest_unit_that_fits_and_never_rounds_down() {
        let text = |d: Duration| encode(d).to_str().unwrap().to_owned();
        assert_eq!(text(Duration::ZERO), "0n");
        assert_eq!(text(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(text(Duration::from_nanos(100_000_001)), "100001u");
        assert_eq!(text(Duration::from_millis(200)), "200000u");
        assert_eq!(text(Duration::from_secs(100)), "100000m");
        assert_eq!(text(Duration::from_secs(100_000_000)), "1666667M");
        assert_eq!(text(Duration::MAX), "99999999H");
        for millis in [1, 7, 999, 1_000, 86_400_000] {
            let sent = Duration::from_millis(millis);
            let read = parse(&encode(sent)).unwrap();
            assert!(
                read >= sent && read.saturating_sub(sent) < Duration::from_millis(1),
                "{millis}"
            );
        }
    }

    #[test]
    fn parses_only_what_the_protocol_allows() {
        let parse_str = |s: &str| parse(&HeaderValue::from_str(s).unwrap());
        assert_eq!(parse_str("1H"), Some(Duration::from_hours(1)));
        assert_eq!(parse_str("2M"), Some(Duration::from_mins(2)));
        assert_eq!(
            parse_str("99999999H"),
            Some(Duration::from_hours(99_999_999))
        );
        assert_eq!(parse_str("5n"), Some(Duration::from_nanos(5)));
        for bad in [
            "",
            "S",
            "123456789S",
            "10s",
            "-1S",
            "1.5S",
            " 1S",
            "1SS",
            "１S",
        ] {
            assert_eq!(parse_str(bad), None, "{bad:?}");
        }
    }
}
