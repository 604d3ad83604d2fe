//! `ADDRESS/PREFIX` parsing for `--host-addr` (e.g. `10.0.0.1/24`, `fd00::1/64`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An interface address with its prefix length, as `ip addr add` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Why a `--host-addr` value was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// No `/` in the value.
    MissingPrefix,
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress(String),
    /// The part after `/` is not a decimal number.
    BadPrefix(String),
    /// The prefix is longer than the address (32 bits for IPv4, 128 for IPv6).
    PrefixTooLong { prefix: u32, max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::MissingPrefix => {
                write!(f, "expected ADDRESS/PREFIX (e.g. 10.0.0.1/24 or fd00::1/64), the /PREFIX is missing")
            }
            CidrError::BadAddress(a) => write!(f, "`{a}` is not an IPv4 or IPv6 address"),
            CidrError::BadPrefix(p) => write!(f, "prefix length `{p}` is not a number"),
            CidrError::PrefixTooLong { prefix, max } => {
                write!(f, "prefix length {prefix} is longer than the address ({max} bits at most)")
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Whether `ip` lies inside this network (same family and same first `prefix` bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress(addr.to_string()))?;
        // Digits only: u32::from_str would also take a leading '+'.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix(prefix.to_string()));
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u32 = match prefix.parse() {
            Ok(p) => p,
            // Only digits, so an error means overflow: certainly too long.
            Err(_) => return Err(CidrError::PrefixTooLong { prefix: u32::MAX, max }),
        };
        if prefix > u32::from(max) {
            return Err(CidrError::PrefixTooLong { prefix, max });
        }
        Ok(Cidr { addr, prefix: prefix as u8 })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_v4_and_v6() {
        assert_eq!(ok("10.0.0.1/24"), Cidr { addr: "10.0.0.1".parse().unwrap(), prefix: 24 });
        assert_eq!(ok("fd00::1/64"), Cidr { addr: "fd00::1".parse().unwrap(), prefix: 64 });
        assert_eq!(ok(" 192.168.1.7/32 ").prefix, 32);
        assert_eq!(ok("::/0").prefix, 0);
        assert_eq!(ok("fd00::1/128").prefix, 128);
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.1/24", "fd00::1/64", "0.0.0.0/0"] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!("10.0.0.1".parse::<Cidr>(), Err(CidrError::MissingPrefix));
        assert_eq!("10.0.0/24".parse::<Cidr>(), Err(CidrError::BadAddress("10.0.0".into())));
        assert_eq!("10.0.0.1/".parse::<Cidr>(), Err(CidrError::BadPrefix("".into())));
        assert_eq!("10.0.0.1/+8".parse::<Cidr>(), Err(CidrError::BadPrefix("+8".into())));
        assert_eq!("10.0.0.1/2x".parse::<Cidr>(), Err(CidrError::BadPrefix("2x".into())));
        assert_eq!("10.0.0.1/33".parse::<Cidr>(), Err(CidrError::PrefixTooLong { prefix: 33, max: 32 }));
        assert_eq!("fd00::1/129".parse::<Cidr>(), Err(CidrError::PrefixTooLong { prefix: 129, max: 128 }));
        assert!(matches!("fd00::1/99999999999".parse::<Cidr>(), Err(CidrError::PrefixTooLong { max: 128, .. })));
        // The messages name the offending part.
        let msg = "10.0.0.1/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(msg.contains("33") && msg.contains("32"), "{msg}");
    }

    #[test]
    fn contains_follows_the_prefix() {
        let v4 = ok("10.0.0.1/24");
        assert!(v4.contains("10.0.0.2".parse().unwrap()));
        assert!(v4.contains("10.0.0.255".parse().unwrap()));
        assert!(!v4.contains("10.0.1.2".parse().unwrap()));
        assert!(!v4.contains("fd00::2".parse().unwrap()));
        let v6 = ok("fd00::1/64");
        assert!(v6.contains("fd00::2".parse().unwrap()));
        assert!(!v6.contains("fd00:0:0:1::2".parse().unwrap()));
        assert!(ok("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(ok("10.0.0.2/32").contains("10.0.0.2".parse().unwrap()));
        assert!(!ok("10.0.0.2/32").contains("10.0.0.3".parse().unwrap()));
    }
}
