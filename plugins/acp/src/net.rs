//! `acip` address blocks: `accessControlIpAddresses` (TS-0003 §7.1.5, TS-0004 `m2m:acip` with
//! `ipv4` and `ipv6` lists) compared against the originator's source address.
//!
//! Entries are an address (`192.168.1.7`, `2001:db8::1`) or a CIDR block (`192.168.1.0/24`,
//! `2001:db8::/32`), parsed with `std::net` and compiled into (network, mask) integer pairs
//! once, so a match is two integer operations per block. Host bits below the prefix are
//! ignored (`192.168.1.5/24` is `192.168.1.0/24`). An IPv4-mapped IPv6 source
//! (`::ffff:192.168.1.7`) is compared with the IPv4 list, since it is the same host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The compiled `acip` of one context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressBlocks {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AddressBlocks {
    pub fn add_v4(&mut self, text: &str) -> Result<(), String> {
        let (address, prefix) = split(text, 32)?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv4 address or CIDR block"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        self.v4.push((u32::from(address) & mask, mask));
        Ok(())
    }

    pub fn add_v6(&mut self, text: &str) -> Result<(), String> {
        let (address, prefix) = split(text, 128)?;
        let address: Ipv6Addr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv6 address or CIDR block"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        self.v6.push((u128::from(address) & mask, mask));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether the (already parsed) source address lies in any block.
    pub fn contains(&self, source: IpAddr) -> bool {
        match source {
            IpAddr::V4(v4) => self.contains_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.contains_v4(v4),
                None => {
                    let address = u128::from(v6);
                    self.v6
                        .iter()
                        .any(|&(network, mask)| address & mask == network)
                }
            },
        }
    }

    fn contains_v4(&self, v4: Ipv4Addr) -> bool {
        let address = u32::from(v4);
        self.v4
            .iter()
            .any(|&(network, mask)| address & mask == network)
    }
}

/// Parse the request's `source_ip` (no port). `None` when it is not an address: an unreadable
/// source never satisfies an `acip` (SER-008).
pub fn parse_source(text: &str) -> Option<IpAddr> {
    if let Some(v4) = dotted_quad(text.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    // Tolerate the bracketed form some bindings use for IPv6 literals.
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

/// The common case on the decision path, IPv4 `a.b.c.d`, without the generic parser's setup
/// cost. Anything unusual (leading zeros, too many digits) falls through to `std`, which then
/// decides — and rejects what `std` rejects.
fn dotted_quad(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut index = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => {
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u32::from(byte - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && index < 3 && value <= 255 => {
                octets[index] = value as u8;
                index += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if index != 3 || digits == 0 || value > 255 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

fn split(text: &str, bits: u32) -> Result<(&str, u32), String> {
    match text.split_once('/') {
        None => Ok((text, bits)),
        Some((address, prefix)) => {
            let valid = !prefix.is_empty()
                && prefix.len() <= 3
                && prefix.bytes().all(|b| b.is_ascii_digit());
            match prefix.parse::<u32>() {
                Ok(length) if valid && length <= bits => Ok((address, length)),
                _ => Err(format!("{text:?} has an invalid prefix length (0-{bits})")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(v4: &[&str], v6: &[&str]) -> AddressBlocks {
        let mut b = AddressBlocks::default();
        v4.iter().for_each(|t| b.add_v4(t).unwrap());
        v6.iter().for_each(|t| b.add_v6(t).unwrap());
        b
    }

    fn has(b: &AddressBlocks, ip: &str) -> bool {
        b.contains(parse_source(ip).unwrap())
    }

    #[test]
    fn ipv4_blocks() {
        let b = blocks(&["192.168.1.0/24", "10.0.0.7"], &[]);
        assert!(has(&b, "192.168.1.0"));
        assert!(has(&b, "192.168.1.255"));
        assert!(!has(&b, "192.168.2.1"));
        assert!(has(&b, "10.0.0.7"));
        assert!(!has(&b, "10.0.0.8"));
        assert!(has(&b, "::ffff:192.168.1.9"));
        assert!(!has(&b, "2001:db8::1"));
        let all = blocks(&["0.0.0.0/0"], &[]);
        assert!(has(&all, "255.255.255.255"));
        let host_bits = blocks(&["192.168.1.77/24"], &[]);
        assert!(has(&host_bits, "192.168.1.1"));
    }

    #[test]
    fn ipv6_blocks() {
        let b = blocks(&[], &["2001:db8::/32", "fe80::1"]);
        assert!(has(&b, "2001:db8::1"));
        assert!(has(&b, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert!(!has(&b, "2001:db9::1"));
        assert!(has(&b, "[fe80::1]"));
        assert!(!has(&b, "fe80::2"));
        assert!(!has(&b, "192.168.1.1"));
        let b = blocks(&[], &["2001:db8:abcd:12::/63"]);
        assert!(has(&b, "2001:db8:abcd:13::1"));
        assert!(!has(&b, "2001:db8:abcd:14::1"));
    }

    #[test]
    fn rejects_malformed_blocks() {
        let mut b = AddressBlocks::default();
        for bad in [
            "192.168.1.0/33",
            "192.168.1/24",
            "300.1.1.1",
            "2001:db8::/32",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "",
        ] {
            assert!(b.add_v4(bad).is_err(), "{bad:?}");
        }
        for bad in ["2001:db8::/129", "192.168.1.0/24", "2001:db8::/x", "gggg::"] {
            assert!(b.add_v6(bad).is_err(), "{bad:?}");
        }
        assert!(parse_source("not-an-ip").is_none());
        for bad in [
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "01.2.3.4",
            "1.2.3.4 ",
        ] {
            assert!(parse_source(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse_source("0.0.0.0"),
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(
            parse_source("255.255.255.255"),
            Some(IpAddr::V4(Ipv4Addr::BROADCAST))
        );
        assert_eq!(
            parse_source("10.0.100.7"),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 100, 7)))
        );
        assert!(parse_source("192.168.1.1:80").is_none());
    }
}
