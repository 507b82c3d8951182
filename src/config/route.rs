//! The default gateway, read from the kernel's routing tables, so the built-in defaults work on
//! any home network without asking the user for their router's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv6 gateway is usually link-local and needs the interface to be reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub addr: IpAddr,
    pub iface: String,
}

/// IPv4 default gateway from the text of `/proc/net/route` (lowest metric wins).
pub fn ipv4_default(route_table: &str) -> Option<Gateway> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 || f[1] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & (RTF_UP | RTF_GATEWAY) != (RTF_UP | RTF_GATEWAY) {
                return None;
            }
            // The kernel prints the address in host byte order (little-endian on every Pi).
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            Some((metric, Ipv4Addr::from(gw.swap_bytes()), f[0].to_string()))
        })
        .min_by_key(|(metric, _, _)| *metric)
        .map(|(_, addr, iface)| Gateway { addr: IpAddr::V4(addr), iface })
}

/// IPv6 default gateway from the text of `/proc/net/ipv6_route` (lowest metric wins).
pub fn ipv6_default(route_table: &str) -> Option<Gateway> {
    route_table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[0] != "0".repeat(32) || f[1] != "00" {
                return None;
            }
            let hop = u128::from_str_radix(f[4], 16).ok()?;
            if hop == 0 || f[9] == "lo" {
                return None;
            }
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            Some((metric, Ipv6Addr::from(hop), f[9].to_string()))
        })
        .min_by_key(|(metric, _, _)| *metric)
        .map(|(_, addr, iface)| Gateway { addr: IpAddr::V6(addr), iface })
}

/// The gateways of this machine, as the kernel sees them now.
pub fn system_gateways() -> Vec<Gateway> {
    let v4 = std::fs::read_to_string("/proc/net/route").ok().and_then(|t| ipv4_default(&t));
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").ok().and_then(|t| ipv6_default(&t));
    v4.into_iter().chain(v6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a Raspberry Pi on a T-Mobile gateway (wlan0 as backup with a higher metric).
    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t010CA8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010CA8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000CA8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
";

    const ROUTE6: &str = "\
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000020c29fffe123456 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn reads_ipv4_default_gateway_with_lowest_metric() {
        let gw = ipv4_default(ROUTE).unwrap();
        assert_eq!(gw.addr, "192.168.12.1".parse::<IpAddr>().unwrap());
        assert_eq!(gw.iface, "eth0");
    }

    #[test]
    fn reads_ipv6_default_gateway() {
        let gw = ipv6_default(ROUTE6).unwrap();
        assert_eq!(gw.addr, "fe80::20c:29ff:fe12:3456".parse::<IpAddr>().unwrap());
        assert_eq!(gw.iface, "eth0");
    }

    #[test]
    fn no_default_route_means_no_gateway() {
        let only_lan = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                        eth0\t000CA8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\n";
        assert_eq!(ipv4_default(only_lan), None);
        assert_eq!(ipv6_default(""), None);
        assert_eq!(ipv4_default("garbage\nnot a table at all"), None);
    }
}
