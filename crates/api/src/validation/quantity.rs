//! Just enough of `resource.Quantity` to validate resource lists: parse and compare amounts.

/// An amount in units of 10^-9, wide enough for every suffix up to `E`/`Ei`.
pub(crate) type Nanos = i128;

const NANO: i128 = 1_000_000_000;

/// Parses a Kubernetes quantity (`100m`, `1Gi`, `2.5`, `1e3`) into nano-units; `None` when the
/// text is not a quantity.
pub(crate) fn parse(s: &str) -> Option<Nanos> {
    let s = s.trim();
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') {
        return None;
    }
    // Fractions finer than a nano are rounded up, as upstream rounds to its precision.
    let mut frac_digits: String = frac_part.chars().take(9).collect();
    let truncated = frac_part.len() > 9 && frac_part[9..].chars().any(|c| c != '0');
    while frac_digits.len() < 9 {
        frac_digits.push('0');
    }
    let int_val: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut value = int_val.checked_mul(NANO)? + frac_digits.parse::<i128>().ok()?;
    if truncated {
        value += 1;
    }
    let scaled = match suffix {
        "" => Some(value),
        "n" => Some(value / NANO),
        "u" => Some(value / 1_000_000),
        "m" => Some(value / 1000),
        "k" => value.checked_mul(1000),
        "M" => value.checked_mul(10i128.pow(6)),
        "G" => value.checked_mul(10i128.pow(9)),
        "T" => value.checked_mul(10i128.pow(12)),
        "P" => value.checked_mul(10i128.pow(15)),
        "E" => value.checked_mul(10i128.pow(18)),
        "Ki" => value.checked_mul(1 << 10),
        "Mi" => value.checked_mul(1 << 20),
        "Gi" => value.checked_mul(1 << 30),
        "Ti" => value.checked_mul(1 << 40),
        "Pi" => value.checked_mul(1 << 50),
        "Ei" => value.checked_mul(1 << 60),
        exp => {
            let e = exp.strip_prefix(['e', 'E'])?;
            let e: i32 = e.parse().ok()?;
            if e >= 0 {
                value.checked_mul(10i128.checked_pow(u32::try_from(e).ok()?)?)
            } else {
                Some(value / 10i128.checked_pow(e.unsigned_abs())?)
            }
        }
    }?;
    Some(sign * scaled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_binary_and_exponent_forms() {
        assert_eq!(parse("1"), Some(NANO));
        assert_eq!(parse("100m"), Some(NANO / 10));
        assert_eq!(parse("1Gi"), Some((1i128 << 30) * NANO));
        assert_eq!(parse("1.5"), Some(NANO * 3 / 2));
        assert_eq!(parse("1e3"), Some(1000 * NANO));
        assert_eq!(parse("-1"), Some(-NANO));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1Qi"), None);
        assert!(parse("1024Mi") == parse("1Gi"));
    }
}
