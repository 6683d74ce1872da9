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

/// Where [`free_tcp_port`] looks for a port: below Linux's default range of ephemeral ports
/// (32768–60999, which the kernel hands out to every `connect` and every bind to port 0), and
/// above the fixed ports kiln's own tests use (16443, 23791).
pub const FORWARD_PORTS: std::ops::Range<u16> = 24000..32000;

/// A TCP port on 127.0.0.1 that was free a moment ago, for a host-side port forward.
///
/// The port is handed to QEMU, which binds it a moment later, so another process could take
/// it in between. To make that unlikely it comes from [`FORWARD_PORTS`], outside the range the
/// kernel picks ephemeral ports from (`/proc/sys/net/ipv4/ip_local_port_range`; when that range
/// covers them all, any free port); a clash that happens anyway makes QEMU exit at once, and
/// [`crate::Cluster::start`] starts the guest again on new ports.
pub fn free_tcp_port() -> crate::Result<u16> {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ephemeral = ephemeral_ports().unwrap_or(32768..=60999);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ nanos
        ^ CALLS
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_mul(40_503);
    let span = u32::from(FORWARD_PORTS.end - FORWARD_PORTS.start);
    for attempt in 0..256u32 {
        let offset = seed.wrapping_add(attempt.wrapping_mul(7_919)) % span;
        let Ok(offset) = u16::try_from(offset) else {
            continue;
        };
        let port = FORWARD_PORTS.start + offset;
        if ephemeral.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|error| Error::io("finding a free TCP port", error))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| Error::io("finding a free TCP port", error))
}

/// The kernel's range of ephemeral ports, if it can be read.
fn ephemeral_ports() -> Option<std::ops::RangeInclusive<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_port_range(&text)
}

/// `ip_local_port_range`'s text (`32768\t60999`) as a range.
fn parse_port_range(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (fields.next(), fields.next()) else {
        return None;
    };
    Some(low..=high)
}

/// Whether some process listens on TCP `port` of 127.0.0.1 (or of every IPv4 address), from
/// `/proc/net/tcp`.
pub fn listening_on(port: u16) -> bool {
    !listener_inodes(port).is_empty()
}

/// Whether process `pid` itself holds a socket listening on TCP `port` of 127.0.0.1 (or of
/// every IPv4 address): a listener's inode in `/proc/net/tcp` among the sockets of
/// `/proc/<pid>/fd`. Another process's listener on the port does not count.
pub fn process_listens_on(pid: u32, port: u16) -> bool {
    let inodes = listener_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .to_str()
                .and_then(|text| text.strip_prefix("socket:["))
                .and_then(|text| text.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

/// The inodes of the sockets listening on TCP `port` of 127.0.0.1 or of every IPv4 address.
fn listener_inodes(port: u16) -> Vec<u64> {
    std::fs::read_to_string("/proc/net/tcp")
        .map(|table| listeners(&table, port))
        .unwrap_or_default()
}

/// [`listener_inodes`] for the text of `/proc/net/tcp`: the inode (tenth field) of each line
/// whose local address is `0100007F:<port>` or `00000000:<port>` (hex) in state `0A` (LISTEN).
fn listeners(table: &str, port: u16) -> Vec<u64> {
    let loopback = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && (fields[1] == loopback || fields[1] == any) && fields[3] == "0A"
            {
                fields[9].parse().ok()
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_ports_avoid_the_ephemeral_range_and_are_free() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_port_range("nonsense"), None);
        let ephemeral = ephemeral_ports().unwrap_or(32768..=60999);
        for _ in 0..20 {
            let port = free_tcp_port().expect("a port");
            if !FORWARD_PORTS.clone().all(|port| ephemeral.contains(&port)) {
                assert!(FORWARD_PORTS.contains(&port), "{port}");
                assert!(!ephemeral.contains(&port), "{port}");
            }
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
        }
    }

    #[test]
    fn a_listener_shows_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:5DC0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n   1: 0100007F:5DC1 0100007F:8000 01 00000000:00000000 00:00000000 00000000     0        0 4243 1\n   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17 1\n";
        assert_eq!(listeners(table, 0x5DC0), [4242]);
        assert!(
            listeners(table, 0x5DC1).is_empty(),
            "an established connection is not a listener"
        );
        assert_eq!(listeners(table, 22), [17]);
        assert!(listeners(table, 80).is_empty());
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert!(listening_on(port));
        assert!(process_listens_on(std::process::id(), port));
        // Another process (this one's parent) does not hold this listener.
        assert!(!process_listens_on(
            std::os::unix::process::parent_id(),
            port
        ));
        // This listener's own socket, by its inode: once it is closed, another test or process
        // may take the freed port at once (that happened in a CI run), so the check is that
        // this socket no longer listens, not that nobody does.
        let inode = {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
                .expect("the listener's descriptor")
                .ino()
        };
        assert!(listener_inodes(port).contains(&inode));
        drop(listener);
        assert!(!listener_inodes(port).contains(&inode));
    }

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
