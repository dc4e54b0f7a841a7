//! A JSON check that no object anywhere has the same key twice.
//!
//! `serde_json` keeps the last of duplicate keys; other readers keep the
//! first. A bundle that says two things at once (a fake `signer` first, the
//! bound one last) would then mean different things to different verifiers,
//! so such JSON is refused before it is read for meaning.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Fails with a message naming the first duplicate key (and where it is)
/// when any object in `json` repeats a key; also fails on invalid JSON.
pub(crate) fn check(json: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Unique>(json)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Any JSON value whose objects have unique keys.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        // Keys are compared after unescaping: "sign\u0065r" is "signer".
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn duplicates_are_found_at_any_depth_and_after_unescaping() {
        assert!(check(br#"{"a": 1, "b": [{"c": 2}, {"c": 3}]}"#).is_ok());
        for bad in [
            &br#"{"a": 1, "a": 1}"#[..],
            br#"{"x": {"signer": "0x1", "signer": "0x2"}}"#,
            br#"[{"k": [], "k": {}}]"#,
            br#"{"signer": 1, "sign\u0065r": 2}"#,
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains("duplicate key"), "{err}");
        }
        assert!(check(b"{").is_err());
    }
}
