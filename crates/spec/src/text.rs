//! IPv4 addresses and networks appended to a `String` as decimal text, without the formatting
//! machinery: a 1000-node cluster's renderers write about four million of them.
//!
//! ```
//! let mut out = String::new();
//! kiln_spec::text::push_ipv4_net(&mut out, "10.1.2.0/24".parse().unwrap());
//! assert_eq!(out, "10.1.2.0/24");
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Appends `address` as `Display` writes it: `192.168.50.11`.
pub fn push_ipv4(out: &mut String, address: Ipv4Addr) {
    let [a, b, c, d] = address.octets();
    push_decimal(out, a);
    out.push('.');
    push_decimal(out, b);
    out.push('.');
    push_decimal(out, c);
    out.push('.');
    push_decimal(out, d);
}

/// Appends `network` as `Display` writes it: `10.1.2.0/24`.
pub fn push_ipv4_net(out: &mut String, network: Ipv4Net) {
    push_ipv4(out, network.addr());
    out.push('/');
    push_decimal(out, network.prefix_len());
}

/// Appends `value` in decimal, without leading zeros.
pub fn push_decimal(out: &mut String, value: u8) {
    if value >= 100 {
        out.push(char::from(b'0' + value / 100));
    }
    if value >= 10 {
        out.push(char::from(b'0' + value / 10 % 10));
    }
    out.push(char::from(b'0' + value % 10));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_octet_and_prefix_is_written_as_display_writes_it() {
        for value in 0..=u8::MAX {
            let mut text = String::new();
            push_decimal(&mut text, value);
            assert_eq!(text, value.to_string());
        }
        for (address, prefix) in [
            ([0, 0, 0, 0], 0),
            ([255, 255, 255, 255], 32),
            ([10, 1, 2, 0], 24),
            ([192, 168, 50, 11], 9),
            ([1, 20, 100, 9], 16),
        ] {
            let network = Ipv4Net::new(Ipv4Addr::from(address), prefix).expect("a prefix");
            let mut text = String::new();
            push_ipv4_net(&mut text, network);
            assert_eq!(text, network.to_string());
            text.clear();
            push_ipv4(&mut text, network.addr());
            assert_eq!(text, network.addr().to_string());
        }
    }
}
