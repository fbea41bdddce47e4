//! Canonical JSON exactly as Notary signs and verifies it (PROTOCOL.md §4.3,
//! `docker/go: canonical/json/encode.go`).
//!
//! Notary verifies a signature by decoding the raw `signed` value into a
//! generic map (every number becomes a float64) and re-encoding it with these
//! rules. [`to_canonical`] does so over a `serde_json::Value` (for bodies the
//! server builds); [`canonicalize`] works straight from JSON text, with no
//! value tree, because a 1 MB targets file is over 10 MiB as a `Value`:
//! - no whitespace; object keys sorted bytewise over their UTF-8;
//! - strings escape only `"` and `\`; every other byte is emitted raw;
//! - numbers must be integral and are written as base-10 integers.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::Error;

/// Encodes `value` in Notary's canonical form.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Parses JSON bytes and re-encodes them canonically (what Notary's verifier
/// does with the raw `signed` bytes). Gives the same bytes, and the same
/// error, as [`to_canonical`] over the same text parsed as a `Value`, but
/// streams: only the members of the object being sorted are buffered.
pub fn canonicalize(json: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Output {
        bytes: Vec::with_capacity(json.len()),
        failure: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    Writer { out: &mut out }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(Error::MalformedJson)?;
    // A syntax error anywhere wins over a number error, as it does when
    // the whole text is parsed before encoding.
    match out.failure {
        Some(failure) => Err(*failure),
        None => Ok(out.bytes),
    }
}

/// Canonical bytes being written, and the first number that could not be
/// encoded (in canonical order). Parsing goes on after such a number so
/// that malformed JSON later in the text is still reported as such.
struct Output {
    bytes: Vec<u8>,
    failure: Option<Box<Error>>,
}

impl Output {
    fn fail(&mut self, error: Error) {
        if self.failure.is_none() {
            self.failure = Some(Box::new(error));
        }
    }

    fn number(&mut self, number: &Number) {
        if let Err(error) = write_number(&mut self.bytes, number) {
            self.fail(error);
        }
    }
}

/// Writes one JSON value canonically into `out` as it is parsed.
struct Writer<'o> {
    out: &'o mut Output,
}

impl<'de> DeserializeSeed<'de> for Writer<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.bytes.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.out.bytes.extend_from_slice(text);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.out.number(&Number::from(value));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.out.number(&Number::from(value));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // `Value` turns a non-finite float (which the parser never yields)
        // into null; do the same.
        match Number::from_f64(value) {
            Some(number) => self.out.number(&number),
            None => self.out.bytes.extend_from_slice(b"null"),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        write_string(&mut self.out.bytes, value);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.out;
        out.bytes.push(b'[');
        let mut first = true;
        loop {
            // The comma goes in before the element is known to exist, and
            // comes out again at the end of the array.
            let mark = out.bytes.len();
            if !first {
                out.bytes.push(b',');
            }
            if seq.next_element_seed(Writer { out: &mut *out })?.is_none() {
                out.bytes.truncate(mark);
                break;
            }
            first = false;
        }
        out.bytes.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Members are written as they come, `"key":value` after a comma.
        // When the keys arrive sorted and distinct, as in every canonical
        // file (what clients send), that is already the output; otherwise
        // the members are put in order afterwards.
        let out = self.out;
        out.bytes.push(b'{');
        let body = out.bytes.len();
        let earlier = out.failure.take();
        let mut members: Vec<Written> = Vec::new();
        let mut failures: Vec<(usize, Box<Error>)> = Vec::new();
        let mut previous: Option<String> = None;
        let mut in_order = true;
        while let Some(key) = map.next_key::<String>()? {
            if !members.is_empty() {
                out.bytes.push(b',');
            }
            in_order = in_order && previous.is_none_or(|p| p.as_bytes() < key.as_bytes());
            let start = out.bytes.len();
            write_string(&mut out.bytes, &key);
            let colon = out.bytes.len();
            out.bytes.push(b':');
            map.next_value_seed(Writer { out: &mut *out })?;
            if let Some(failure) = out.failure.take() {
                failures.push((members.len(), failure));
            }
            members.push(Written {
                key: start..colon,
                value: colon + 1..out.bytes.len(),
            });
            previous = in_order.then_some(key);
        }
        out.failure = earlier;
        if in_order {
            if let Some((_, failure)) = failures.into_iter().next() {
                out.fail(*failure);
            }
        } else {
            let text = out.bytes.split_off(body);
            // Ranges were taken in `out`, where the members began at `body`.
            let local = |range: &Range<usize>| {
                text.get(range.start.saturating_sub(body)..range.end.saturating_sub(body))
                    .unwrap_or_default()
            };
            let keys: Vec<Vec<u8>> = members.iter().map(|m| decode_key(local(&m.key))).collect();
            let mut order: Vec<usize> = (0..members.len()).collect();
            // Stable, so among equal keys the last one read stays last,
            // and only that one is kept, as in a `Value` map.
            order.sort_by(|&a, &b| keys.get(a).cmp(&keys.get(b)));
            let mut first = true;
            let mut order = order.into_iter().peekable();
            while let Some(index) = order.next() {
                if order
                    .peek()
                    .is_some_and(|&next| keys.get(next) == keys.get(index))
                {
                    continue;
                }
                if !first {
                    out.bytes.push(b',');
                }
                first = false;
                if let Some(member) = members.get(index) {
                    let key = local(&member.key);
                    let value = local(&member.value);
                    out.bytes.extend_from_slice(key);
                    out.bytes.push(b':');
                    out.bytes.extend_from_slice(value);
                }
                if let Some(at) = failures.iter().position(|(member, _)| *member == index) {
                    let (_, failure) = failures.swap_remove(at);
                    out.fail(*failure);
                }
            }
        }
        out.bytes.push(b'}');
        Ok(())
    }
}

/// Where one member's key (quoted, escaped) and value sit in the output.
struct Written {
    key: Range<usize>,
    value: Range<usize>,
}

/// A key as written by [`write_string`], back to its bytes: quotes off,
/// the escaping backslash before `"` and `\` dropped.
fn decode_key(written: &[u8]) -> Vec<u8> {
    let inner = written
        .get(1..written.len().saturating_sub(1))
        .unwrap_or_default();
    let mut key = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'\\' => key.extend(bytes.next()),
            other => key.push(other),
        }
    }
    key
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

    /// The encoder over a parsed `Value`: the reference `canonicalize` must
    /// match byte for byte and error for error.
    fn via_value(json: &[u8]) -> Result<Vec<u8>, Error> {
        let value: Value = serde_json::from_slice(json).map_err(Error::MalformedJson)?;
        to_canonical(&value)
    }

    fn same_outcome(json: &[u8]) -> Result<(), TestCaseError> {
        match (canonicalize(json), via_value(json)) {
            (Ok(streamed), Ok(expected)) => prop_assert_eq!(streamed, expected),
            (
                Err(Error::NonIntegralNumber { value: streamed }),
                Err(Error::NonIntegralNumber { value: expected }),
            ) => prop_assert_eq!(streamed, expected),
            (Err(Error::MalformedJson(streamed)), Err(Error::MalformedJson(expected))) => {
                prop_assert_eq!(streamed.to_string(), expected.to_string());
            }
            (streamed, expected) => {
                prop_assert!(false, "streamed {:?}, via a value {:?}", streamed, expected);
            }
        }
        Ok(())
    }

    /// JSON text as a client may send it: any spacing, escapes, repeated
    /// keys, and numbers in every form (fractions, exponents, beyond i64).
    fn arb_text() -> impl Strategy<Value = String> {
        let space = prop::sample::select(vec!["", " ", "\n  ", "\t"]);
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "1.0",
                "1e3",
                "-0",
                "-0.0",
                "2E2",
                "1.5",
                "-2.25",
                "1e-2",
                "9007199254740993",
                "9007199254740992",
                "-9007199254740993",
                "18446744073709551616",
                "1e30",
                "-1e30",
                "9223372036854775807",
                "9223372036854775808",
                "1.7976931348623157e308",
                "0.1e1",
                "123456789012345678901234567890",
            ])
            .prop_map(str::to_string),
            "[^\\x00-\\x1f\"\\\\]{0,8}".prop_map(|s| format!("\"{s}\"")),
            prop::sample::select(vec![
                r#""\u0041\n\t\"\\\/""#,
                r#""\ud83d\ude00""#,
                r#""\u2028<>&""#,
                r#""\u0000""#,
            ])
            .prop_map(str::to_string),
        ];
        let key = prop::sample::select(vec!["a", "b", "B", "é", "\\u0061", "\\\"", "", "zz"]);
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec((inner.clone(), space.clone()), 0..6).prop_map(|items| {
                    let body: Vec<String> = items
                        .into_iter()
                        .map(|(v, s)| format!("{s}{v}{s}"))
                        .collect();
                    format!("[{}]", body.join(","))
                }),
                prop::collection::vec((key.clone(), inner, space.clone()), 0..6).prop_map(
                    |members| {
                        let body: Vec<String> = members
                            .into_iter()
                            .map(|(k, v, s)| format!("{s}\"{k}\"{s}:{s}{v}"))
                            .collect();
                        format!("{{{}}}", body.join(","))
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn streaming_matches_the_value_encoder(text in arb_text(), cut in any::<prop::sample::Index>()) {
            same_outcome(text.as_bytes())?;
            // And on broken input: a truncated copy, and trailing bytes.
            let bytes = text.as_bytes();
            same_outcome(&bytes[..cut.index(bytes.len() + 1)])?;
            same_outcome(format!("{text} x").as_bytes())?;
        }

        #[test]
        fn streaming_matches_on_generated_values(value in arb_json()) {
            same_outcome(&serde_json::to_vec(&value).unwrap())?;
            same_outcome(&serde_json::to_vec_pretty(&value).unwrap())?;
        }

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
