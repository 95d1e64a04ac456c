//! Parsing resource quantities (`10Gi`, `500M`, `1.5Ti`) into bytes, for capacity matching.

/// The byte value of a Kubernetes quantity string; `None` when it does not parse.
pub fn bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    // Integers stay exact (large byte counts must compare exactly); fractions go through f64.
    if let Ok(n) = num.parse::<u128>()
        && mult >= 1.0
        && mult.fract() == 0.0
    {
        return n.checked_mul(mult as u128);
    }
    let v: f64 = num.parse().ok()?;
    if v < 0.0 {
        return None;
    }
    Some((v * mult).ceil() as u128)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn parses_binary_and_decimal_suffixes() {
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("42"), Some(42));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("x"), None);
    }
}
