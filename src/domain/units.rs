//! libvirt's scaled integers (`<memory unit='MiB'>`): units per
//! <https://libvirt.org/formatdomain.html#memory-allocation>.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("'{0}' is not a whole number")]
    NotANumber(String),
    #[error("unknown unit '{0}' (use b, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")]
    UnknownUnit(String),
    #[error("{0} is too large")]
    TooLarge(String),
}

/// Bytes in `value` of `unit`; no unit means KiB, as libvirt's default.
pub fn parse_memory(value: &str, unit: Option<&str>) -> Result<u64, UnitError> {
    let number: u64 = value
        .trim()
        .parse()
        .map_err(|_| UnitError::NotANumber(value.trim().to_string()))?;
    let unit = unit.unwrap_or("KiB");
    let scale: u64 = match unit {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "K" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        other => return Err(UnitError::UnknownUnit(other.to_string())),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| UnitError::TooLarge(format!("{number} {unit}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale_as_libvirt_defines() {
        assert_eq!(parse_memory("1048576", None), Ok(1 << 30));
        assert_eq!(parse_memory("256", Some("MiB")), Ok(256 << 20));
        assert_eq!(parse_memory("2", Some("GB")), Ok(2_000_000_000));
        assert_eq!(parse_memory(" 7 ", Some("b")), Ok(7));
        assert!(matches!(
            parse_memory("x", None),
            Err(UnitError::NotANumber(_))
        ));
        assert!(matches!(
            parse_memory("1", Some("XiB")),
            Err(UnitError::UnknownUnit(_))
        ));
        assert!(matches!(
            parse_memory("99999999999", Some("TiB")),
            Err(UnitError::TooLarge(_))
        ));
    }
}
