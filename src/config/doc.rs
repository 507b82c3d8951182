//! The file being read, for errors that name its line: every section's `from_raw` and
//! `validate` report through a `Doc`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;

pub struct Doc<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Doc<'_> {
    /// `value` (spanned as the user wrote it) is wrong.
    pub fn invalid<T>(&self, value: &Spanned<T>, field: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_at(value.span().start),
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    /// `section.key` is wrong (a field read without spans, by serde's defaults).
    pub fn bad(&self, section: &str, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(section, key),
            field: format!("{section}.{key}"),
            message: message.to_string(),
        }
    }

    /// A whole-file problem with no one line (no anchor to ping at all).
    pub fn whole(&self, message: impl fmt::Display) -> ConfigError {
        ConfigError::Parse { path: self.path.to_path_buf(), message: message.to_string() }
    }

    /// An optional duration within `[min, max]`, or `default`.
    pub fn duration_in(
        &self,
        v: &Option<Spanned<Duration>>,
        field: &str,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = *v.get_ref();
        if d < min || d > max {
            let (lo, hi) = (humantime::format_duration(min), humantime::format_duration(max));
            return Err(self.invalid(v, field, format!("must be between {lo} and {hi}")));
        }
        Ok(d)
    }

    /// An optional number within `[min, max]` (NaN is outside), or `default`.
    pub fn number_in<T: Copy + PartialOrd + fmt::Display>(
        &self,
        v: &Option<Spanned<T>>,
        field: &str,
        default: T,
        (min, max): (T, T),
    ) -> Result<T, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let x = *v.get_ref();
        if !(x >= min && x <= max) {
            return Err(self.invalid(v, field, format!("must be between {min} and {max}, not {x}")));
        }
        Ok(x)
    }

    /// The line of `section.key` as the file wrote it (a `[section]` header, an inline table
    /// or a dotted key alike), from the parser's spans; the deepest part found when the key
    /// itself is absent (an error about a missing partner names the section).
    fn line_of(&self, section: &str, key: &str) -> usize {
        let Ok(doc) = toml::de::DeTable::parse(self.text) else { return 1 };
        let mut table = doc.get_ref();
        let mut at = 0;
        for part in section.split('.').chain([key]) {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part) else { break };
            at = k.span().start;
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        self.line_at(at)
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
}

/// A command-line duration outside `[min, max]`.
pub fn check_flag(flag: &'static str, d: Duration, (min, max): (Duration, Duration)) -> Result<(), ConfigError> {
    if d < min || d > max {
        let (lo, hi) = (humantime::format_duration(min), humantime::format_duration(max));
        return Err(ConfigError::Flag { flag, message: format!("must be between {lo} and {hi}") });
    }
    Ok(())
}
