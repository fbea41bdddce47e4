//! Strict JSON reading: an object that repeats a member name is refused, at
//! every depth. Parsers disagree on duplicates (Go's encoding/json and
//! serde_json's `Value` keep the last, serde's derived structs refuse), so a
//! file with one could mean different things to the server, to a client
//! and to the signer; refusing it leaves one meaning.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Error;

/// One step from the document's top to a value.
enum Step {
    Member(String),
    Index(usize),
}

/// What the walk found, kept outside serde's stringly errors.
struct Found {
    key: String,
    path: String,
}

fn render(path: &[Step]) -> String {
    let mut out = String::from("$");
    for step in path {
        match step {
            Step::Member(name) => {
                out.push('.');
                out.extend(name.chars().take(64).flat_map(char::escape_default));
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
        if out.len() > 200 {
            out.push('…');
            break;
        }
    }
    out
}

#[derive(Clone, Copy)]
struct Walk<'a> {
    path: &'a RefCell<Vec<Step>>,
    found: &'a RefCell<Option<Found>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            self.path.borrow_mut().push(Step::Index(index));
            let next = seq.next_element_seed(self)?;
            self.path.borrow_mut().pop();
            if next.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        // Keys are compared decoded: `"a"` and `"\u0061"` are one name.
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                let path = render(&self.path.borrow());
                *self.found.borrow_mut() = Some(Found { key, path });
                return Err(de::Error::custom("duplicate object key"));
            }
            self.path.borrow_mut().push(Step::Member(key));
            map.next_value_seed(self)?;
            if let Some(Step::Member(key)) = self.path.borrow_mut().pop() {
                seen.insert(key);
            }
        }
        Ok(())
    }
}

/// Fails with [`Error::DuplicateKey`] if any object in `raw` repeats a
/// member name, with [`Error::MalformedJson`] if `raw` is not one JSON value.
pub fn check_unique_keys(raw: &[u8]) -> Result<(), Error> {
    let path = RefCell::new(Vec::new());
    let found = RefCell::new(None);
    let walk = Walk {
        path: &path,
        found: &found,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let result = walk
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match (result, found.into_inner()) {
        (_, Some(Found { key, path })) => Err(Error::DuplicateKey {
            key: key.chars().take(64).collect(),
            path,
        }),
        (Err(error), None) => Err(Error::MalformedJson(error)),
        (Ok(()), None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        check_unique_keys(br#"{"a":1,"b":{"a":[{"a":1},{"a":2}]}}"#).unwrap();
        for (raw, key, path) in [
            (r#"{"a":1,"a":2}"#, "a", "$"),
            (r#"{"signed":{"x":{"k":1,"k":1}}}"#, "k", "$.signed.x"),
            (r#"{"s":[1,{"k":1,"k":2}]}"#, "k", "$.s[1]"),
            (r#"{"a":1,"\u0061":2}"#, "a", "$"),
        ] {
            match check_unique_keys(raw.as_bytes()) {
                Err(Error::DuplicateKey { key: k, path: p }) => {
                    assert_eq!((k.as_str(), p.as_str()), (key, path), "{raw}");
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
        assert!(matches!(
            check_unique_keys(b"{\"a\":1} x"),
            Err(Error::MalformedJson(_))
        ));
        assert!(matches!(
            check_unique_keys(b"{\"a\":"),
            Err(Error::MalformedJson(_))
        ));
    }
}
