//! Durations in the config file and on the command line, written the way people say them:
//! "1s", "250ms", "5m", "1h 30m". One parser; serde adapters for plain and spanned fields.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};
use toml::Spanned;

use crate::input::BadInput;

/// Nothing in wanwatch runs faster than this; a shorter duration is a typo ("1" for "1s").
const SHORTEST: Duration = Duration::from_millis(10);

/// Parse a duration as typed (also `--interval` and friends).
pub fn parse(s: &str) -> Result<Duration, BadInput> {
    humantime::parse_duration(s.trim())
        .map_err(|e| BadInput::new(s, format!("is not a duration ({e}); write e.g. \"1s\", \"250ms\", \"5m\"")))
}

fn parse_field(s: &str) -> Result<Duration, BadInput> {
    let d = parse(s)?;
    if d < SHORTEST {
        return Err(BadInput::new(s, "is too short (at least 10ms)"));
    }
    Ok(d)
}

/// `#[serde(deserialize_with = "duration::de")]`
pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_field(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// For an optional field whose line an error must name (range checks come later).
pub fn de_spanned<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<Duration>>, D::Error> {
    let raw: Spanned<String> = Spanned::deserialize(d)?;
    let dur = parse(raw.get_ref()).map_err(serde::de::Error::custom)?;
    Ok(Some(Spanned::new(raw.span(), dur)))
}

/// `#[serde(serialize_with = "duration::ser")]` (`wanwatch config` prints "1m 30s").
pub fn ser<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        assert_eq!(parse(" 1h 30m ").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse("fast").unwrap_err().to_string().contains("not a duration"));
        assert!(parse_field("1ms").unwrap_err().to_string().contains("at least 10ms"));
    }
}
