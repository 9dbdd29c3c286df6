//! Integers as JSON Schema counts them: `20` and `20.0` are the same integer (a number whose
//! fraction is zero), so a body field described as an integer takes both. serde's integer
//! types refuse `20.0`; the request types use [`option`] instead.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// An optional integer field of type `T`, written with or without a zero fraction; a number
/// with a fraction, or one outside `T`'s range, is refused with what was wrong.
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = if let Some(u) = n.as_u64() {
        i128::from(u)
    } else if let Some(i) = n.as_i64() {
        i128::from(i)
    } else {
        match n.as_f64() {
            // Beyond 2^64 an f64 is no longer exact; no field takes such values anyway.
            Some(f) if f.fract() == 0.0 && f.abs() < 1.8e19 => f as i128,
            _ => return Err(D::Error::custom(format!("{n} is not an integer"))),
        }
    };
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

/// An optional key version: an integer from 1 to `u32::MAX`.
pub fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match option::<D, u32>(d)? {
        Some(0) => Err(D::Error::custom("versions start at 1")),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::option")]
        n: Option<u32>,
    }

    fn parse(json: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Body>(json)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_with_a_zero_fraction_are_integers() {
        assert_eq!(parse(r#"{"n": 20}"#), Ok(Some(20)));
        assert_eq!(parse(r#"{"n": 20.0}"#), Ok(Some(20)));
        assert_eq!(parse(r#"{"n": 2e1}"#), Ok(Some(20)));
        assert_eq!(parse(r#"{"n": null}"#), Ok(None));
        assert_eq!(parse(r#"{}"#), Ok(None));
        assert!(parse(r#"{"n": 20.5}"#)
            .unwrap_err()
            .contains("not an integer"));
        assert!(parse(r#"{"n": -1}"#).unwrap_err().contains("out of range"));
        assert!(parse(r#"{"n": 4294967296}"#)
            .unwrap_err()
            .contains("out of range"));
        assert!(parse(r#"{"n": "20"}"#).is_err());
    }
}
