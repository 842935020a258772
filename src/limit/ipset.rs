//! Sets of IP addresses and networks (`XG2G_RATELIMIT_WHITELIST`,
//! `XG2G_TRUSTED_PROXIES`) and the client address behind a trusted proxy.
//!
//! Rules: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports) is the IPv4 address; a network's host bits must be zero, so a typo such as
//! `10.0.0.1/8` is an error rather than a silently wider range.

use std::fmt;
use std::net::IpAddr;

/// Most entries a list may hold; real lists name a handful of networks.
pub const MAX_ENTRIES: usize = 256;

/// Why a list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpSetError {
    /// An entry is neither an address nor `address/prefix`.
    #[error("{0:?} is not an IP address or network (a.b.c.d, a.b.c.d/n, ipv6, ipv6/n)")]
    Syntax(String),
    /// The prefix length does not fit the address family.
    #[error("{0:?}: the prefix length is above 32 (IPv4) or 128 (IPv6)")]
    Prefix(String),
    /// Host bits are set below the prefix.
    #[error("{entry:?} has host bits set; did you mean {network}?")]
    HostBits {
        /// The entry as written.
        entry: String,
        /// The network it probably means.
        network: String,
    },
    /// More than [`MAX_ENTRIES`] entries.
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
}

/// One network: an address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// A set of addresses and networks; empty by default (contains nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    nets: Vec<Net>,
}

impl IpSet {
    /// Parses a comma- or whitespace-separated list (`10.0.0.0/8, 192.168.1.5, ::1`).
    pub fn parse(list: &str) -> Result<IpSet, IpSetError> {
        let mut nets = Vec::new();
        for entry in list.split(|c: char| c == ',' || c.is_whitespace()) {
            if entry.is_empty() {
                continue;
            }
            if nets.len() == MAX_ENTRIES {
                return Err(IpSetError::TooMany);
            }
            nets.push(parse_net(entry)?);
        }
        Ok(IpSet { nets })
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

impl fmt::Display for IpSet {
    /// The canonical list, comma separated (what `check-config` prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

fn parse_net(entry: &str) -> Result<Net, IpSetError> {
    let syntax = || IpSetError::Syntax(entry.to_string());
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => {
            let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
            let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
            (addr, Some(prefix))
        }
        None => (entry.parse::<IpAddr>().map_err(|_| syntax())?, None),
    };
    // A mapped address with a prefix counts its prefix in IPv6 bits.
    let (addr, prefix) = match (addr, addr.to_canonical()) {
        (IpAddr::V6(_), IpAddr::V4(v4)) => match prefix {
            Some(p) if p < 96 => return Err(IpSetError::Prefix(entry.to_string())),
            Some(p) => (IpAddr::V4(v4), Some(p - 96)),
            None => (IpAddr::V4(v4), None),
        },
        _ => (addr, prefix),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    if prefix > max {
        return Err(IpSetError::Prefix(entry.to_string()));
    }
    let network = match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(prefix)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(prefix)).into()),
    };
    if network != addr {
        return Err(IpSetError::HostBits {
            entry: entry.to_string(),
            network: Net {
                addr: network,
                prefix,
            }
            .to_string(),
        });
    }
    Ok(Net { addr, prefix })
}

/// The client a request is from: the peer itself, unless the peer is a trusted proxy,
/// in which case the right-most `X-Forwarded-For` address that is not itself a trusted
/// proxy (the left part of the header is whatever the client claimed, so it is never
/// believed). A header that does not parse leaves the peer as the client.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &IpSet) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn addresses_and_networks_match() {
        let set = IpSet::parse("10.0.0.0/8, 192.168.1.5 ::1,fd00::/8").unwrap_or_default();
        assert!(set.contains(ip("10.200.3.4")));
        assert!(set.contains(ip("192.168.1.5")));
        assert!(!set.contains(ip("192.168.1.6")));
        assert!(set.contains(ip("::1")));
        assert!(set.contains(ip("fd12::9")));
        assert!(!set.contains(ip("fe80::1")));
        assert!(set.contains(ip("::ffff:10.1.2.3")), "mapped IPv4");
        assert_eq!(
            set.to_string(),
            "10.0.0.0/8,192.168.1.5/32,::1/128,fd00::/8"
        );
    }

    #[test]
    fn zero_prefix_matches_its_whole_family() {
        let set = IpSet::parse("0.0.0.0/0").unwrap_or_default();
        assert!(set.contains(ip("203.0.113.9")));
        assert!(!set.contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        assert_eq!(
            IpSet::parse("10.0.0.1/8"),
            Err(IpSetError::HostBits {
                entry: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".into()
            })
        );
        assert!(matches!(
            IpSet::parse("10.0.0.0/33"),
            Err(IpSetError::Prefix(_))
        ));
        assert!(matches!(
            IpSet::parse("host.lan"),
            Err(IpSetError::Syntax(_))
        ));
        assert!(matches!(
            IpSet::parse("1.2.3.4/"),
            Err(IpSetError::Syntax(_))
        ));
        let long = vec!["1.2.3.4"; MAX_ENTRIES + 1].join(",");
        assert_eq!(IpSet::parse(&long), Err(IpSetError::TooMany));
        assert_eq!(IpSet::parse(" , "), Ok(IpSet::default()));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = IpSet::parse("127.0.0.1, 10.0.0.0/8").unwrap_or_default();
        let xff = Some("6.6.6.6, 203.0.113.7, 10.1.1.1");
        // Untrusted peer: the header is ignored.
        assert_eq!(client_ip(ip("192.0.2.1"), xff, &trusted), ip("192.0.2.1"));
        // Trusted peer: skip trusted hops from the right; the spoofable left part is
        // never reached.
        assert_eq!(client_ip(ip("127.0.0.1"), xff, &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("garbage"), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                Some("::ffff:198.51.100.2"),
                &trusted
            ),
            ip("198.51.100.2")
        );
    }
}
