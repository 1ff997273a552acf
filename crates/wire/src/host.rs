//! Which addresses count as one host, for the per-address limits of the tracker and the seeder.

use std::net::{IpAddr, Ipv6Addr};

/// The address a peer is counted under: an IPv4 address as it is (IPv4-mapped IPv6 addresses
/// too), an IPv6 address cut to its /64 network (one host usually owns a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}
