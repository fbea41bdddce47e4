//! Byte and time encodings of Notary's JSON: Go's `[]byte` (padded standard
//! base64) and `time.Time` (RFC 3339).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Error;

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits
/// tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes like Go's `json.Unmarshal` into `[]byte` (which skips CR and LF).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.contains(['\r', '\n']) {
        let cleaned: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        GO_STD.decode(cleaned)
    } else {
        GO_STD.decode(text)
    }
}

/// serde for `[]byte` fields.
pub mod base64_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::base64_encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::base64_decode(&text).map_err(D::Error::custom)
    }
}

/// serde for nullable `[]byte` fields.
pub mod base64_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_str(&super::base64_encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::base64_decode(&text).map_err(D::Error::custom))
            .transpose()
    }
}

/// Parses an RFC 3339 time as Go's `time.Time.UnmarshalJSON` does.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|source| Error::InvalidTime {
        value: text.to_string(),
        source: Box::new(source),
    })
}

/// Formats like Go's `time.RFC3339Nano` (trailing zeros of the fraction
/// trimmed; `Z` for UTC), which is how Notary writes `expires`.
pub fn format_time(at: OffsetDateTime) -> String {
    let offset = at.offset();
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let nanos = at.nanosecond();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    if offset.is_utc() {
        out.push('Z');
    } else {
        let (hours, minutes, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        out.push_str(&format!(
            "{sign}{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs()
        ));
    }
    out
}

/// Go's `"Mon Jan 2 15:04:05 MST 2006"`, used in Notary's expiry errors.
pub fn format_expiry_for_humans(at: OffsetDateTime) -> String {
    let zone = if at.offset().is_utc() {
        "UTC".to_string()
    } else {
        let (hours, minutes, _) = at.offset().as_hms();
        let sign = if at.offset().is_negative() { '-' } else { '+' };
        format!(
            "{sign}{:02}{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs()
        )
    };
    let weekday = &at.weekday().to_string()[..3];
    let month = &at.month().to_string()[..3];
    format!(
        "{weekday} {month} {} {:02}:{:02}:{:02} {zone} {}",
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn go_base64_tolerates_newlines_and_requires_padding() {
        assert_eq!(base64_decode("AA\nEC").unwrap(), vec![0, 1, 2]);
        assert!(base64_decode("AAE").is_err());
        assert_eq!(base64_decode("AAE=").unwrap(), vec![0, 1]);
    }

    #[test]
    fn times_round_trip_in_go_format() {
        let text = "2029-11-22T07:31:28.3376484Z";
        let parsed = parse_time(text).unwrap();
        assert_eq!(format_time(parsed), text);
        let offset = "2116-07-03T17:56:36.027379879-05:00";
        assert_eq!(format_time(parse_time(offset).unwrap()), offset);
        assert_eq!(
            format_time(datetime!(2030-01-02 03:04:05 UTC)),
            "2030-01-02T03:04:05Z"
        );
    }

    #[test]
    fn expiry_is_formatted_like_go() {
        assert_eq!(
            format_expiry_for_humans(datetime!(2006-01-02 15:04:05 UTC)),
            "Mon Jan 2 15:04:05 UTC 2006"
        );
    }
}
