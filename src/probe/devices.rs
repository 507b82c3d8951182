//! How many devices are on the LAN, from the kernel's neighbour table, so that "the internet is
//! slow when everyone is home" can be checked against the numbers.

use std::time::Duration;

use super::{Ctx, blocking};
use crate::config::probes::DevicesConfig;
use crate::sample::Metric;
use crate::series;

/// ATF_COM: the entry is complete (the neighbour answered ARP).
const ATF_COM: u32 = 0x2;

/// Complete IPv4 neighbours per the text of `/proc/net/arp`, loopback excluded.
pub fn count_neighbours(arp: &str) -> usize {
    arp.lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() >= 6
                && u32::from_str_radix(f[2].trim_start_matches("0x"), 16).is_ok_and(|flags| flags & ATF_COM != 0)
                && f[3] != "00:00:00:00:00:00"
                && f[5] != "lo"
        })
        .count()
}

pub async fn run(cfg: DevicesConfig, ctx: Ctx) {
    ctx.every(Duration::from_secs(2), cfg.interval, || async {
        let ts = ctx.now();
        let m = match blocking(Duration::from_secs(5), || std::fs::read_to_string("/proc/net/arp")).await {
            Ok(Ok(text)) => Metric::new(ts, series::DEVICES, "lan", count_neighbours(&text) as f64),
            Ok(Err(e)) => Metric::failed(ts, series::DEVICES, "lan", format!("/proc/net/arp: {e}")),
            Err(why) => Metric::failed(ts, series::DEVICES, "lan", why),
        };
        ctx.metric(m).await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_complete_entries_only() {
        let arp = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.12.1     0x1         0x2         aa:bb:cc:00:00:01     *        eth0
192.168.12.20    0x1         0x2         aa:bb:cc:00:00:14     *        eth0
192.168.12.21    0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.12.22    0x1         0x6         aa:bb:cc:00:00:16     *        wlan0
";
        assert_eq!(count_neighbours(arp), 3);
        assert_eq!(count_neighbours(""), 0);
        assert_eq!(count_neighbours("garbage\n\x00\x01 0x2"), 0);
    }
}
