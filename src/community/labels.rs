//! What may appear in a label the community server sees. Every value is checked before it is
//! sent: only names from [`LABEL_NAMES`], and values that are short words, never anything that
//! reads as an address (IPv4, IPv6, MAC), a long number (an exact postcode, a cell id) or a
//! host name. A series that fails is dropped whole, with a warning.

/// The only label names sent (besides `__name__`).
pub const LABEL_NAMES: &[&str] =
    &["region", "carrier", "tech", "install", "hour", "kind", "quantile", "band", "sinr_bucket"];

/// A coarse area: letters, digits and '-', at most 12, never 5 or more digits in a row (an
/// exact ZIP code or street number).
pub fn check_region(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("is needed when enabled: a coarse area such as a 3-digit postcode prefix (\"981\")".into());
    }
    if r.len() > 12 || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("`{r}`: use at most 12 letters, digits or '-' (a coarse area, e.g. \"981\")"));
    }
    if longest_digit_run(r) >= 5 {
        return Err(format!("`{r}` looks like an exact postcode; give only its first 3 digits"));
    }
    Ok(())
}

/// The provider's name: letters, digits, spaces and `&.-`, at most 32.
pub fn check_carrier(c: &str) -> Result<(), String> {
    if c.is_empty()
        || c.len() > 32
        || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b" &.-".contains(&b))
        || looks_like_address(c)
    {
        return Err(format!("`{c}`: the provider's name, e.g. \"T-Mobile\" (letters, digits, spaces, & . -)"));
    }
    Ok(())
}

fn longest_digit_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0)
}

/// True for anything that could be an address or identify a place or a cell: an IP (v4 or v6), a
/// MAC, 4 dot-separated numbers, a colon at all, a long number, or a dotted host name.
pub fn looks_like_address(v: &str) -> bool {
    if v.parse::<std::net::IpAddr>().is_ok() || v.contains(':') || v.contains('@') || v.contains('/') {
        return true;
    }
    // A MAC in any spelling (00:1a:.., 00-1a-.., 001a.2b3c.4d5e): 12 hex digits and separators.
    let hex = v.bytes().filter(u8::is_ascii_hexdigit).count();
    if hex >= 12 && v.bytes().all(|b| b.is_ascii_hexdigit() || b"-:._".contains(&b)) {
        return true;
    }
    let parts: Vec<&str> = v.split(['.', '-', '_']).collect();
    let numeric = parts.iter().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).count();
    // 192.168.1.20, 192-168-1-20, 10_0_0_1; "0.5" (a quantile) is two parts.
    if numeric >= 4 {
        return true;
    }
    // A host name: two or more dotted words with letters ("pi.lan", "example.com").
    let dotted = v.split('.').filter(|p| !p.is_empty()).count();
    if dotted >= 2 && v.bytes().any(|b| b.is_ascii_alphabetic()) {
        return true;
    }
    longest_digit_run(v) >= 5
}

/// Whether a (name, value) pair may be sent.
pub fn safe(name: &str, value: &str) -> bool {
    if name == "__name__" {
        return value.starts_with("wanwatch_community_") && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    }
    LABEL_NAMES.contains(&name)
        && value.len() <= 40
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b" &.-_+<>".contains(&b))
        && !looks_like_address(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn regions_are_coarse() {
        for ok in ["981", "SW1A", "north-3", "1000"] {
            assert!(check_region(ok).is_ok(), "{ok}");
        }
        for bad in ["", "98101", "12345-6789", "192.168.1.1", "a b", "verylongregionname"] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_address_ever_passes_as_a_label_value() {
        for addr in [
            "192.168.12.1",
            "10.0.0.5",
            "2001:db8::1",
            "fe80::1%eth0",
            "00:1a:2b:3c:4d:5e",
            "00-1a-2b-3c-4d-5e",
            "192-168-1-20",
            "pi.lan",
            "wanwatch.local",
            "gateway.home.arpa",
            "310463",
            "1076984",
            "98101",
            "::ffff:1.2.3.4",
        ] {
            assert!(!safe("region", addr) && !safe("carrier", addr) && !safe("install", addr), "{addr} passed");
        }
        for ok in [
            ("quantile", "0.5"),
            ("quantile", "0.95"),
            ("carrier", "T-Mobile"),
            ("band", "n41"),
            ("sinr_bucket", "10-20"),
            ("hour", "19"),
            ("install", "qhzvmwkgtrpsxuhn"),
        ] {
            assert!(safe(ok.0, ok.1), "{ok:?}");
        }
        assert!(!safe("ip", "x"), "unknown label names are refused");
        // Random printable strings that contain an IPv4 address never pass, wherever it sits.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let ip = format!(
                "{}.{}.{}.{}",
                rng.random_range(0..256),
                rng.random_range(0..256),
                rng.random_range(0..256),
                rng.random_range(0..256)
            );
            let pad: String = (0..rng.random_range(0..6)).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect();
            for v in [format!("{pad}{ip}"), format!("{ip}{pad}"), format!("{pad}-{ip}")] {
                assert!(!safe("region", &v), "{v} passed");
            }
        }
    }
}
