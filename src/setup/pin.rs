//! The set-up PIN: six digits the household reads off the OLED (or `wanwatch setup-pin` over
//! ssh), without which the set-up page changes nothing.
//!
//! It lives in a file next to the database (`setup-pin`, readable by the agent's user and
//! group only) so the agent, the panel and `wanwatch setup-pin` agree on it. It changes after
//! every successful save and after [`ROTATE_AFTER_FAILURES`] wrong guesses, and guesses are
//! rate-limited ([`Attempts`]): at [`GUESS_BUCKET`] guesses and one more per
//! [`GUESS_REFILL`], finding one of a million PINs takes about a year of guessing, and the PIN
//! changes long before that.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file's name, next to the database.
pub const PIN_FILE: &str = "setup-pin";
/// Wrong guesses allowed in a burst.
pub const GUESS_BUCKET: u32 = 5;
/// One more guess allowed this often.
pub const GUESS_REFILL: Duration = Duration::from_secs(60);
/// After this many wrong guesses in a row the PIN changes (the OLED shows the new one).
pub const ROTATE_AFTER_FAILURES: u32 = 20;

/// Where the PIN of the database `db` is kept.
pub fn path_for(db: &Path) -> PathBuf {
    crate::store::folder_of(db).join(PIN_FILE)
}

/// A fresh PIN: six digits, leading zeros kept.
pub fn fresh() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// Write a new PIN to `path` (mode 0640, atomically) and return it.
pub fn rotate(path: &Path) -> std::io::Result<String> {
    let pin = fresh();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(&tmp)?;
    f.write_all(pin.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(pin)
}

/// The PIN in `path`, if there is a well-formed one.
pub fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let pin = text.trim();
    (pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())).then(|| pin.to_string())
}

/// The PIN in `path`, or a new one written there when it is missing or malformed.
pub fn read_or_create(path: &Path) -> std::io::Result<String> {
    match read(path) {
        Some(p) => Ok(p),
        None => rotate(path),
    }
}

/// Compare without an early exit, so the time taken says nothing about how many digits matched.
pub fn matches(guess: &str, pin: &str) -> bool {
    let (g, p) = (guess.trim().as_bytes(), pin.as_bytes());
    g.len() == p.len() && g.iter().zip(p).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The guess budget: a bucket of [`GUESS_BUCKET`] refilled one every [`GUESS_REFILL`], for
/// the whole LAN at once (per address would let one laptop guess from a hundred IPv6 addresses).
#[derive(Debug)]
pub struct Attempts {
    tokens: f64,
    at: Instant,
    /// Wrong guesses since the PIN last changed.
    pub failures: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts { tokens: GUESS_BUCKET as f64, at: Instant::now(), failures: 0 }
    }
}

/// What a guess came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Right,
    Wrong,
    /// No guesses left; the next one is allowed after this long.
    Wait(Duration),
}

impl Attempts {
    fn refill(&mut self, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / GUESS_REFILL.as_secs_f64();
        self.tokens = (self.tokens + gained).min(GUESS_BUCKET as f64);
        self.at = now;
    }

    /// Judge `guess` against `pin` at `now`. A right guess costs nothing; a wrong one a token.
    /// With no token left nothing is compared at all.
    pub fn judge(&mut self, guess: &str, pin: &str, now: Instant) -> Verdict {
        self.refill(now);
        if self.tokens < 1.0 {
            return Verdict::Wait(GUESS_REFILL.mul_f64(1.0 - self.tokens));
        }
        if matches(guess, pin) {
            self.failures = 0;
            return Verdict::Right;
        }
        self.tokens -= 1.0;
        self.failures += 1;
        Verdict::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_six_digits_and_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PIN_FILE);
        let pin = read_or_create(&path).unwrap();
        assert_eq!(pin.len(), 6);
        assert!(pin.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(read_or_create(&path).unwrap(), pin);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        std::fs::write(&path, "12ab56\n").unwrap();
        assert_ne!(read_or_create(&path).unwrap(), "12ab56");
    }

    #[test]
    fn rotating_gives_a_new_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PIN_FILE);
        let pins: std::collections::HashSet<String> = (0..20).map(|_| rotate(&path).unwrap()).collect();
        // 20 draws from a million: a repeat is a 1-in-5000 event, all equal would be a bug.
        assert!(pins.len() >= 18, "{pins:?}");
    }

    #[test]
    fn guesses_are_rate_limited_and_refill() {
        let mut a = Attempts::default();
        let t0 = a.at;
        for _ in 0..GUESS_BUCKET {
            assert_eq!(a.judge("000000", "123456", t0), Verdict::Wrong);
        }
        // Out of guesses: even the right PIN is not looked at.
        assert!(matches!(a.judge("123456", "123456", t0), Verdict::Wait(_)));
        assert_eq!(a.judge("123456", "123456", t0 + GUESS_REFILL), Verdict::Right);
        assert_eq!(a.failures, 0);
    }

    #[test]
    fn comparison_needs_every_digit() {
        assert!(matches("123456", "123456"));
        assert!(matches(" 123456 ", "123456"));
        assert!(!matches("123457", "123456"));
        assert!(!matches("12345", "123456"));
        assert!(!matches("", "123456"));
    }
}
