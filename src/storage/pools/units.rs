//! Sizes as virsh reads and prints them.
//!
//! Reading follows libvirt's `virScaleInteger` (used by `vol-create-as`,
//! `vol-resize` and the `unit` attribute of `<capacity>`): a whole number
//! followed by an optional case-insensitive suffix. A bare letter (`K`, `M`,
//! `G`, …) or a letter with `iB` is a power of 1024; a letter with `B`
//! (`KB`, `MB`, …) a power of 1000; `b`, `byte` and `bytes` are bytes.
//! Printing follows virsh's `vshPrettyCapacity`: two decimals and the
//! largest binary unit that leaves a value of at least 1.

/// Errors reading a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No digits where a number was expected.
    #[error(
        "malformed size '{0}': expected a whole number with an optional unit such as 10G or 512MiB"
    )]
    Malformed(String),
    /// A suffix virsh does not know.
    #[error("unknown unit '{unit}' in size '{size}' (use B, KiB, MiB, GiB, TiB, PiB, EiB, K, M, G, T, or KB, MB, GB, TB for powers of 1000)")]
    UnknownUnit { size: String, unit: String },
    /// The number does not fit in 64 bits once scaled.
    #[error("size '{0}' is too large")]
    TooLarge(String),
}

/// Bytes in `text`, a number with an optional unit suffix; no suffix means bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    // strtoull's syntax, as virsh uses it: blanks and a '+' may lead.
    let trimmed = text.trim_start();
    let trimmed = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let digits = trimmed.len()
        - trimmed
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    if digits == 0 {
        return Err(SizeError::Malformed(text.to_string()));
    }
    let number: u64 = trimmed[..digits]
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_string()))?;
    scale(number, &trimmed[digits..]).map_err(|e| match e {
        ScaleError::Unknown => SizeError::UnknownUnit {
            size: text.to_string(),
            unit: trimmed[digits..].to_string(),
        },
        ScaleError::Overflow => SizeError::TooLarge(text.to_string()),
    })
}

/// `number` scaled by the unit name `unit` (as in `<capacity unit='GiB'>`);
/// an empty unit means bytes.
pub fn scale_unit(number: u64, unit: &str) -> Result<u64, SizeError> {
    scale(number, unit).map_err(|e| match e {
        ScaleError::Unknown => SizeError::UnknownUnit {
            size: format!("{number} {unit}"),
            unit: unit.to_string(),
        },
        ScaleError::Overflow => SizeError::TooLarge(format!("{number} {unit}")),
    })
}

enum ScaleError {
    Unknown,
    Overflow,
}

fn scale(number: u64, suffix: &str) -> Result<u64, ScaleError> {
    let lower = suffix.to_ascii_lowercase();
    let factor: u64 = match lower.as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        _ => {
            let mut chars = lower.chars();
            let letter = chars.next().ok_or(ScaleError::Unknown)?;
            let base: u64 = match chars.as_str() {
                "" | "ib" => 1024,
                "b" => 1000,
                _ => return Err(ScaleError::Unknown),
            };
            let power = match letter {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                'p' => 5,
                'e' => 6,
                _ => return Err(ScaleError::Unknown),
            };
            base.pow(power)
        }
    };
    number.checked_mul(factor).ok_or(ScaleError::Overflow)
}

/// `bytes` as virsh prints capacities: `0.00 B`, `1.50 KiB`, `5.00 GiB`.
pub fn pretty_capacity(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes}.00 B");
    }
    let mut unit = UNITS[0];
    let mut divisor = 1024u64;
    for (index, name) in UNITS.iter().enumerate().skip(1) {
        let next = 1u64 << (10 * (index as u32 + 1));
        if bytes < next {
            break;
        }
        unit = name;
        divisor = next;
    }
    format!("{:.2} {unit}", bytes as f64 / divisor as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_scale_as_virsh_reads_them() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("10bytes"), Ok(10));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1kib"), Ok(1024));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("20M"), Ok(20 << 20));
        assert_eq!(parse_size("20MiB"), Ok(20 << 20));
        assert_eq!(parse_size("20MB"), Ok(20_000_000));
        assert_eq!(parse_size("5G"), Ok(5 << 30));
        assert_eq!(parse_size("5GiB"), Ok(5_368_709_120));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
        assert_eq!(parse_size("1EiB"), Ok(1 << 60));
        assert_eq!(parse_size(" 3M"), Ok(3 << 20));
        assert_eq!(parse_size("+1M"), Ok(1 << 20));
        assert_eq!(scale_unit(5, "GiB"), Ok(5 << 30));
        assert_eq!(scale_unit(7, ""), Ok(7));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        assert!(matches!(parse_size(""), Err(SizeError::Malformed(_))));
        assert!(matches!(parse_size("G"), Err(SizeError::Malformed(_))));
        assert!(matches!(parse_size("-1G"), Err(SizeError::Malformed(_))));
        assert!(matches!(
            parse_size("1.5G"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("1 G"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("1X"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("1GiBs"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_size("16E"), Err(SizeError::TooLarge(_))));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(SizeError::TooLarge(_))
        ));
    }

    #[test]
    fn capacities_print_as_virsh_prints_them() {
        assert_eq!(pretty_capacity(0), "0.00 B");
        assert_eq!(pretty_capacity(1023), "1023.00 B");
        assert_eq!(pretty_capacity(1024), "1.00 KiB");
        assert_eq!(pretty_capacity(1536), "1.50 KiB");
        assert_eq!(pretty_capacity(10 << 20), "10.00 MiB");
        assert_eq!(pretty_capacity(5_368_709_120), "5.00 GiB");
        assert_eq!(pretty_capacity(107_374_182_400), "100.00 GiB");
        assert_eq!(pretty_capacity(3 << 40), "3.00 TiB");
        assert_eq!(pretty_capacity(u64::MAX), "16.00 EiB");
    }
}
