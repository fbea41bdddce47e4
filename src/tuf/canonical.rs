//! Canonical JSON exactly as Notary signs and verifies it (PROTOCOL.md §4.3,
//! `docker/go: canonical/json/encode.go`).
//!
//! Notary verifies a signature by decoding the raw `signed` value into a
//! generic map (every number becomes a float64) and re-encoding it with these
//! rules, so we do the same over a `serde_json::Value`:
//! - no whitespace; object keys sorted bytewise over their UTF-8;
//! - strings escape only `"` and `\`; every other byte is emitted raw;
//! - numbers must be integral and are written as base-10 integers.

use serde_json::{Number, Value};

use super::Error;

/// Encodes `value` in Notary's canonical form.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Parses JSON bytes and re-encodes them canonically (what Notary's verifier
/// does with the raw `signed` bytes).
pub fn canonicalize(json: &[u8]) -> Result<Vec<u8>, Error> {
    let value: Value = serde_json::from_slice(json).map_err(Error::MalformedJson)?;
    to_canonical(&value)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(out, number)?,
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map keeps insertion order if any
            // crate in the build enables its `preserve_order` feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Go decodes every number into a float64 and the canonical encoder writes
/// `int64(f)`. Integers that fit an `i64` exactly are written as they are;
/// everything else goes through `f64` like Go does.
fn write_number(out: &mut Vec<u8>, number: &Number) -> Result<(), Error> {
    let as_float = number.as_f64().unwrap_or(f64::NAN);
    if let Some(small) = number.as_i64().filter(|n| n.unsigned_abs() <= 1 << 53) {
        out.extend_from_slice(small.to_string().as_bytes());
        return Ok(());
    }
    if !as_float.is_finite() || as_float.floor() != as_float {
        return Err(Error::NonIntegralNumber {
            value: number.to_string(),
        });
    }
    // `as` saturates where Go's conversion is implementation-defined; on
    // amd64 Go yields i64::MIN for anything out of range, so mirror that.
    let converted = if as_float >= -(2f64.powi(63)) && as_float < 2f64.powi(63) {
        as_float as i64
    } else {
        i64::MIN
    };
    out.extend_from_slice(converted.to_string().as_bytes());
    Ok(())
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let value = json!({"b": 1, "a": [true, null, {"z": "x", "A": 2}]});
        assert_eq!(
            to_canonical(&value).unwrap(),
            br#"{"a":[true,null,{"A":2,"z":"x"}],"b":1}"#
        );
    }

    #[test]
    fn escapes_only_quote_and_backslash() {
        let value = json!("a\"b\\c\n\t\u{1}<>&é\u{2028}");
        assert_eq!(
            to_canonical(&value).unwrap(),
            "\"a\\\"b\\\\c\n\t\u{1}<>&é\u{2028}\"".as_bytes()
        );
    }

    #[test]
    fn integral_floats_become_integers_and_fractions_fail() {
        assert_eq!(
            canonicalize(b"[1.0, 1e3, -0, 2E2]").unwrap(),
            b"[1,1000,0,200]"
        );
        assert!(matches!(
            canonicalize(b"[1.5]"),
            Err(Error::NonIntegralNumber { .. })
        ));
    }

    #[test]
    fn large_integers_lose_precision_like_go() {
        // 2^53 + 1 is not representable as a float64: Go rounds it.
        assert_eq!(
            canonicalize(b"9007199254740993").unwrap(),
            b"9007199254740992"
        );
        assert_eq!(
            canonicalize(b"1e30").unwrap(),
            i64::MIN.to_string().as_bytes()
        );
    }

    #[test]
    fn keys_sort_bytewise_not_by_code_point_order_of_utf16() {
        // U+FF5E sorts after U+1F600 in UTF-16 but before it in UTF-8.
        let value = json!({"\u{1F600}": 1, "\u{FF5E}": 2, "a": 3});
        assert_eq!(
            to_canonical(&value).unwrap(),
            "{\"a\":3,\"\u{FF5E}\":2,\"\u{1F600}\":1}".as_bytes()
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            // Canonical output carries control characters raw, which no
            // strict JSON parser reads back; they are tested separately.
            "[^\\x00-\\x1f]{0,12}".prop_map(Value::String),
            prop::sample::select(vec![
                "\"",
                "\\",
                "\u{7f}",
                "<>&",
                "é",
                "\u{2028}",
                "\u{10FFFF}"
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[^\\x00-\\x1f]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Independent check of the string rule: after removing the escapes for
    /// `"` and `\`, every other byte of the input must appear unchanged.
    fn unescape(encoded: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = encoded.iter();
        while let Some(&byte) = bytes.next() {
            if byte == b'\\' {
                let next = *bytes.next().expect("escape at end");
                assert!(
                    next == b'"' || next == b'\\',
                    "unexpected escape \\{}",
                    next as char
                );
                out.push(next);
            } else {
                out.push(byte);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn canonical_form_is_a_fixed_point(value in arb_json()) {
            let once = to_canonical(&value).unwrap();
            let reparsed: Value = serde_json::from_slice(&once).unwrap();
            prop_assert_eq!(&reparsed, &value);
            prop_assert_eq!(canonicalize(&once).unwrap(), once);
        }

        #[test]
        fn strings_escape_only_quote_and_backslash(text in "(?s).{0,40}") {
            let encoded = to_canonical(&Value::String(text.clone())).unwrap();
            prop_assert_eq!(encoded.first(), Some(&b'"'));
            prop_assert_eq!(encoded.last(), Some(&b'"'));
            prop_assert_eq!(unescape(&encoded[1..encoded.len() - 1]), text.as_bytes());
        }

        #[test]
        fn objects_have_sorted_keys_and_no_whitespace(
            map in prop::collection::btree_map("[a-zA-Z\u{80}-\u{10FFFF}]{0,5}", any::<i16>(), 0..8)
        ) {
            let value = Value::Object(map.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
            let encoded = String::from_utf8(to_canonical(&value).unwrap()).unwrap();
            let expected: Vec<String> = map.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            prop_assert_eq!(encoded, format!("{{{}}}", expected.join(",")));
        }

        #[test]
        fn non_integral_numbers_are_rejected(whole in -1000i64..1000, frac in 1u32..999) {
            let text = format!("{{\"n\":{whole}.{frac:03}}}");
            let rejected = matches!(canonicalize(text.as_bytes()), Err(Error::NonIntegralNumber { .. }));
            prop_assert!(rejected);
        }
    }
}
