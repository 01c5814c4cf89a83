//! API bodies read strictly: an object that names a member twice is refused, instead of
//! being read silently as its last value (what `serde_json::Value` does).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all, with serde's description (line and column).
    #[error("{0}")]
    Syntax(String),
    /// An object names `member` twice.
    #[error("member {member:?} appears twice in one object (at {at}); give it once")]
    Duplicate { member: String, at: String },
}

/// Parses `body` as JSON, refusing duplicate members at any depth.
pub fn parse_strict(body: &[u8]) -> Result<Value, BodyError> {
    serde_json::from_slice::<Strict>(body).map(|s| s.0).map_err(|e| {
        let text = e.to_string();
        // Our visitor's only error is a duplicate; serde classifies custom errors as
        // data errors, never as syntax.
        match (e.classify(), text.split_once(DUPLICATE_MARK)) {
            (serde_json::error::Category::Data, Some((_, rest))) => {
                let (member, at) = rest.split_once(DUPLICATE_END).unwrap_or((rest, ""));
                BodyError::Duplicate {
                    member: member.to_owned(),
                    at: at.trim().to_owned(),
                }
            }
            _ => BodyError::Syntax(text),
        }
    })
}

const DUPLICATE_MARK: &str = "duplicate member \u{1}";
const DUPLICATE_END: char = '\u{1}';

/// A JSON value built by a visitor that checks each object's member names.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell a non-finite number, so this is always Some.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            list.push(v);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE_MARK}{key}{DUPLICATE_END}")));
            }
            let Strict(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let want: Value = serde_json::from_str(text).expect("json");
        assert_eq!(parse_strict(text.as_bytes()).expect("strict"), want);
    }

    #[test]
    fn a_member_given_twice_is_refused_at_any_depth() {
        for (text, member) in [
            (r#"{"name": "a", "name": "b"}"#, "name"),
            (r#"{"env": {"A": "1", "A": "2"}}"#, "A"),
            (r#"[{"x": 1}, {"y": 1, "y": 2}]"#, "y"),
        ] {
            match parse_strict(text.as_bytes()) {
                Err(BodyError::Duplicate { member: m, at }) => {
                    assert_eq!(m, member, "{text}");
                    assert!(at.contains("line 1"), "{text}: {at}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in ["{", "", "[1,]", "{\"a\" 1}", "nul"] {
            assert!(
                matches!(parse_strict(text.as_bytes()), Err(BodyError::Syntax(_))),
                "{text}"
            );
        }
    }
}
