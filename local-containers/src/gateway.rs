//! The default gateway of a network namespace, read from `/proc/net/route`. Inside a container
//! on workerd's bridge network this is the host's address on the bridge, where workerd's egress
//! listener waits for the sidecar.

use std::net::Ipv4Addr;

/// The gateway of the default route in `/proc/net/route`'s text, if there is one.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway) = (*fields.get(1)?, *fields.get(2)?);
        if destination != "00000000" {
            return None;
        }
        // The kernel prints the address as a host-order (little-endian here) hex word.
        let raw = u32::from_str_radix(gateway, 16).ok()?;
        Some(Ipv4Addr::from(raw.swap_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t015AA80A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t005AA80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(10, 168, 90, 1)));
    }

    #[test]
    fn none_without_a_default_route() {
        let table = "Iface\tDestination\tGateway\n lo\t0000007F\t00000000\n";
        assert_eq!(default_gateway(table), None);
        assert_eq!(default_gateway(""), None);
    }
}
