//! Which `X-Forwarded-For` and `X-Forwarded-Proto` headers to believe: only those added by a
//! proxy listed in `[listen].trusted_proxies`.
//!
//! Anyone can send these headers. Believing them from any peer would let a client choose the
//! address the OAuth token endpoint limits it by, or the scheme of the URLs the sidecar
//! writes into `Location`. So the peer's own address is the client's address unless the peer
//! is a trusted proxy; then `X-Forwarded-For` is read from the right, stepping over every
//! address that is itself a trusted proxy, and the first one that is not is the client (what
//! nginx's `real_ip_recursive` does). The callers are [`super::router`] (base URLs) and the
//! OAuth endpoint's limiter.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use http::header::HeaderName;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// An address range: `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Why a `trusted_proxies` entry is not an address range.
#[derive(Debug, PartialEq, Eq)]
pub struct CidrError(&'static str);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| CidrError("is not an IP address"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(CidrError("has a prefix length out of range")),
            },
        };
        Ok(Cidr { net, prefix })
    }
}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(e: &str) -> Option<IpAddr> {
    let e = e.trim();
    e.parse::<IpAddr>()
        .ok()
        .or_else(|| e.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client's address (see the module doc): `peer`, or when `peer` is a trusted proxy the
/// rightmost `X-Forwarded-For` address that is not.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[Cidr]) -> IpAddr {
    let mut client = peer.to_canonical();
    if proxies.is_empty() || !trusted(client, proxies) {
        return client;
    }
    // Several header lines form one list, in order (RFC 9110 §5.3).
    let lines: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in lines.iter().rev().flat_map(|l| l.rsplit(',')) {
        if !trusted(client, proxies) {
            break;
        }
        match parse_entry(entry) {
            Some(ip) => client = ip,
            // A garbled entry ends the walk: what lies left of it cannot be trusted either.
            None => break,
        }
    }
    client
}

/// Whether the client reached us over HTTPS: the connection is TLS, or a trusted proxy says
/// so in `X-Forwarded-Proto` (its last value, the one it added).
pub fn is_https(tls: bool, peer: IpAddr, headers: &HeaderMap, proxies: &[Cidr]) -> bool {
    if tls {
        return true;
    }
    if !trusted(peer, proxies) {
        return false;
    }
    headers
        .get_all(&X_FORWARDED_PROTO)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    /// Ranges match by prefix, single addresses exactly, IPv4-mapped IPv6 as IPv4; bad
    /// entries are refused with a reason.
    #[test]
    fn ranges() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains(ip("10.200.3.4")));
        assert!(c.contains(ip("::ffff:10.1.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        let one: Cidr = "127.0.0.1".parse().expect("cidr");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("203.0.113.9")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    /// From an untrusted peer the header is ignored; from a trusted one the rightmost
    /// untrusted entry is the client, across several header lines, with ports stripped; a
    /// garbled entry stops the walk.
    #[test]
    fn client_address() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.7"]);
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &proxies), ip("203.0.113.7"));
        let h = xff(&["1.1.1.1, 203.0.113.7", "10.0.0.9:443"]);
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &proxies), ip("203.0.113.7"));
        let h = xff(&["203.0.113.7, junk, 10.0.0.9"]);
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &proxies), ip("10.0.0.9"));
        let h = xff(&[]);
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &proxies), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), &xff(&["1.2.3.4"]), &[]),
            ip("10.0.0.5")
        );
    }

    /// `X-Forwarded-Proto: https` counts only from a trusted proxy; TLS always counts.
    #[test]
    fn scheme() {
        let proxies = cidrs(&["127.0.0.1"]);
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        assert!(is_https(false, ip("127.0.0.1"), &h, &proxies));
        assert!(!is_https(false, ip("127.0.0.2"), &h, &proxies));
        assert!(is_https(true, ip("127.0.0.2"), &HeaderMap::new(), &proxies));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https, http"));
        assert!(!is_https(false, ip("127.0.0.1"), &h, &proxies));
    }
}
