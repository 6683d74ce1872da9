//! The guests' private layer-2 segment and the host ports their forwards use.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

/// A private layer-2 segment: QEMU's `socket` netdev on a multicast group, bound to the
/// loopback interface so no frame leaves the machine. Each run picks its own group and port,
/// so concurrent runs (and their identical guest addresses) never meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The multicast group, in 230.0.0.0/8 (organisation-local scope, never routed here).
    pub group: Ipv4Addr,
    /// The UDP port.
    pub port: u16,
}

impl Segment {
    /// A fresh segment: a group derived from the process id and the clock, and a UDP port
    /// that was free on the loopback interface a moment ago.
    pub fn new() -> crate::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let mixed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        let [_, b, c, d] = mixed.to_be_bytes();
        // Avoid .0 and .255 in the last octet: some stacks treat them specially.
        let d = d.clamp(1, 254);
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|error| Error::io("finding a free UDP port", error))?;
        let port = socket
            .local_addr()
            .map_err(|error| Error::io("finding a free UDP port", error))?
            .port();
        Ok(Self {
            group: Ipv4Addr::new(230, b, c, d),
            port,
        })
    }

    /// The `-netdev` value for a guest's NIC on this segment.
    pub fn netdev(&self, id: &str) -> String {
        format!(
            "socket,id={id},mcast={}:{},localaddr=127.0.0.1",
            self.group, self.port
        )
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a host-side port forward.
pub fn free_tcp_port() -> crate::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|error| Error::io("finding a free TCP port", error))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| Error::io("finding a free TCP port", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_multicast_on_loopback() {
        let segment = Segment::new().expect("segment");
        assert!(segment.group.is_multicast());
        assert_eq!(segment.group.octets()[0], 230);
        assert_ne!(segment.port, 0);
        let netdev = segment.netdev("lan");
        assert!(netdev.starts_with("socket,id=lan,mcast=230."), "{netdev}");
        assert!(netdev.ends_with(",localaddr=127.0.0.1"), "{netdev}");
    }
}
