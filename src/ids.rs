//! Random identifiers as libvirt makes them: version 4 UUIDs for
//! definitions and MAC addresses in QEMU's locally administered range.
//! Every definition kind (domains, pools, networks) takes its UUIDs here.

use std::io::Read;

/// Random bytes from the kernel (`/dev/urandom` never blocks once the pool
/// is initialised, which it is long before a desktop session starts).
fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A random (version 4, RFC 4122 variant) UUID, `8-4-4-4-12` lower-case hex.
pub fn generate_uuid() -> std::io::Result<String> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format_uuid(&b))
}

fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A random MAC address in QEMU/libvirt's locally administered range
/// `52:54:00:xx:xx:xx`.
pub fn generate_mac() -> std::io::Result<String> {
    let b: [u8; 3] = random_bytes()?;
    Ok(format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_uuid_groups() {
        let b = [
            0x51, 0x19, 0xe3, 0xad, 0xef, 0xa7, 0xe4, 0x26, 0x49, 0xeb, 0x9d, 0xdf, 0x90, 0x60,
            0xfd, 0xe4,
        ];
        assert_eq!(format_uuid(&b), "5119e3ad-efa7-e426-49eb-9ddf9060fde4");
    }
}
