//! Synthetic TCP/IP packets around captured plaintext, and the way back to the payload.
//!
//! Only what a recording needs: IPv4 or IPv6 (no options, no extension headers, no fragments)
//! carrying one TCP segment. Checksums are real so that tshark's optional validation passes.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// LINKTYPE_RAW: the packet starts with the IP header (version nibble tells v4 from v6).
pub(crate) const LINKTYPE_RAW: u16 = 101;
const LINKTYPE_ETHERNET: u16 = 1;
const LINKTYPE_IPV4: u16 = 228;
const LINKTYPE_IPV6: u16 = 229;

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;

const IPPROTO_TCP: u8 = 6;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_HEADER_LEN: usize = 20;

/// Largest TCP payload per packet: IPv4's 16-bit total length (65535) must hold it plus 20 bytes
/// of IP header and up to 60 of TCP header; a round number leaves a margin.
pub(crate) const MAX_SEGMENT_PAYLOAD: usize = 65_000;

/// One TCP segment to encode.
#[derive(Clone, Copy)]
pub(crate) struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// IPv4 identification field (ignored for IPv6).
    pub ip_id: u16,
    /// TCP options, already padded to a multiple of 4 bytes (at most 40).
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// Encodes `segment` as an IP packet (LINKTYPE_RAW) into `out`, replacing its contents.
///
/// Endpoints of different families are both written as IPv6 (IPv4-mapped), so any pair encodes.
pub(crate) fn encode_tcp_packet(segment: &TcpSegment<'_>, out: &mut Vec<u8>) {
    debug_assert!(segment.options.len().is_multiple_of(4) && segment.options.len() <= 40);
    debug_assert!(segment.payload.len() <= MAX_SEGMENT_PAYLOAD);
    out.clear();
    let tcp_len = TCP_HEADER_LEN + segment.options.len() + segment.payload.len();
    let (src_ip, dst_ip) = (segment.src.ip(), segment.dst.ip());
    match (src_ip, dst_ip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total_len = (IPV4_HEADER_LEN + tcp_len) as u16;
            out.extend_from_slice(&[0x45, 0]); // version 4, 5 words of header; no TOS
            out.extend_from_slice(&total_len.to_be_bytes());
            out.extend_from_slice(&segment.ip_id.to_be_bytes());
            out.extend_from_slice(&[0x40, 0]); // don't fragment
            out.extend_from_slice(&[64, IPPROTO_TCP, 0, 0]); // TTL, protocol, checksum placeholder
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
            let checksum = internet_checksum(&out[..IPV4_HEADER_LEN], 0);
            out[10..12].copy_from_slice(&checksum.to_be_bytes());
            let pseudo_header = pseudo_header_sum(&src.octets(), &dst.octets(), tcp_len);
            push_tcp(segment, pseudo_header, out);
        }
        _ => {
            let (src, dst) = (to_ipv6(src_ip), to_ipv6(dst_ip));
            out.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no traffic class, no flow label
            out.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            out.extend_from_slice(&[IPPROTO_TCP, 64]); // next header, hop limit
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
            let pseudo_header = pseudo_header_sum(&src.octets(), &dst.octets(), tcp_len);
            push_tcp(segment, pseudo_header, out);
        }
    }
}

fn to_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn push_tcp(segment: &TcpSegment<'_>, pseudo_header: u32, out: &mut Vec<u8>) {
    let start = out.len();
    let data_offset_words = ((TCP_HEADER_LEN + segment.options.len()) / 4) as u8;
    out.extend_from_slice(&segment.src.port().to_be_bytes());
    out.extend_from_slice(&segment.dst.port().to_be_bytes());
    out.extend_from_slice(&segment.seq.to_be_bytes());
    out.extend_from_slice(&segment.ack.to_be_bytes());
    out.extend_from_slice(&[data_offset_words << 4, segment.flags]);
    out.extend_from_slice(&segment.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // checksum placeholder, urgent pointer
    out.extend_from_slice(segment.options);
    out.extend_from_slice(segment.payload);
    let checksum = internet_checksum(&out[start..], pseudo_header);
    out[start + 16..start + 18].copy_from_slice(&checksum.to_be_bytes());
}

/// Partial one's-complement sum of the TCP pseudo header (RFC 793 / RFC 8200 section 8.1).
fn pseudo_header_sum(src: &[u8], dst: &[u8], tcp_len: usize) -> u32 {
    let mut sum = ones_complement_sum(src, 0);
    sum = ones_complement_sum(dst, sum);
    // Both layouts reduce to "protocol + length" in the one's-complement sum.
    sum + u32::from(IPPROTO_TCP) + (tcp_len as u32 >> 16) + (tcp_len as u32 & 0xffff)
}

fn ones_complement_sum(bytes: &[u8], mut sum: u32) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        // Fold early so that even a 64 KiB packet cannot overflow.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// RFC 1071 checksum of `bytes`, starting from a partial sum (e.g. a pseudo header).
fn internet_checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = ones_complement_sum(bytes, initial);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The TCP payload of a captured packet, or why it cannot be had.
pub(crate) fn tcp_payload(linktype: u16, packet: &[u8]) -> Result<&[u8], String> {
    let ip = match linktype {
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => packet,
        LINKTYPE_ETHERNET => strip_ethernet(packet)?,
        other => return Err(format!("unsupported link type {other}")),
    };
    let tcp = match ip.first().map(|b| b >> 4) {
        Some(4) => ipv4_payload(ip)?,
        Some(6) => ipv6_payload(ip)?,
        Some(v) => return Err(format!("IP version {v} is neither 4 nor 6")),
        None => return Err("empty packet".into()),
    };
    if tcp.len() < TCP_HEADER_LEN {
        return Err(format!("TCP header cut short ({} bytes)", tcp.len()));
    }
    let header_len = usize::from(tcp[12] >> 4) * 4;
    if header_len < TCP_HEADER_LEN || header_len > tcp.len() {
        return Err(format!(
            "TCP data offset {header_len} outside the {}-byte segment",
            tcp.len()
        ));
    }
    Ok(&tcp[header_len..])
}

fn strip_ethernet(frame: &[u8]) -> Result<&[u8], String> {
    const ETHERTYPE_VLAN: u16 = 0x8100;
    let mut offset = 12;
    loop {
        let ethertype = frame
            .get(offset..offset + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or("Ethernet header cut short")?;
        offset += 2;
        match ethertype {
            0x0800 | 0x86dd => return Ok(&frame[offset..]),
            ETHERTYPE_VLAN => offset += 2, // skip the tag control info, then the inner type
            other => return Err(format!("Ethernet type {other:#06x} is not IP")),
        }
    }
}

fn ipv4_payload(ip: &[u8]) -> Result<&[u8], String> {
    if ip.len() < IPV4_HEADER_LEN {
        return Err(format!("IPv4 header cut short ({} bytes)", ip.len()));
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if header_len < IPV4_HEADER_LEN || total_len < header_len || total_len > ip.len() {
        return Err(format!(
            "IPv4 lengths inconsistent: header {header_len}, total {total_len}, captured {}",
            ip.len()
        ));
    }
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff; // more-fragments flag + offset
    if fragment != 0 {
        return Err("IPv4 fragment".into());
    }
    if ip[9] != IPPROTO_TCP {
        return Err(format!("IP protocol {} is not TCP", ip[9]));
    }
    Ok(&ip[header_len..total_len])
}

fn ipv6_payload(ip: &[u8]) -> Result<&[u8], String> {
    if ip.len() < IPV6_HEADER_LEN {
        return Err(format!("IPv6 header cut short ({} bytes)", ip.len()));
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if IPV6_HEADER_LEN + payload_len > ip.len() {
        return Err(format!(
            "IPv6 payload length {payload_len} exceeds the {} captured bytes",
            ip.len()
        ));
    }
    if ip[6] != IPPROTO_TCP {
        return Err(format!("IPv6 next header {} is not TCP", ip[6]));
    }
    Ok(&ip[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment<'a>(src: &str, dst: &str, options: &'a [u8], payload: &'a [u8]) -> TcpSegment<'a> {
        TcpSegment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq: 0x0102_0304,
            ack: 0xa0b0_c0d0,
            flags: TCP_ACK | TCP_PSH,
            window: 1234,
            ip_id: 7,
            options,
            payload,
        }
    }

    /// A checksum over a packet that includes its own correct checksum verifies to zero.
    fn verifies(bytes: &[u8], initial: u32) -> bool {
        internet_checksum(bytes, initial) == 0
    }

    #[test]
    fn ipv4_checksums_verify_and_payload_comes_back() {
        let mut packet = Vec::new();
        for payload in [&b""[..], b"odd", b"even", &[0xff; 1001][..]] {
            encode_tcp_packet(
                &segment("10.1.2.3:6443", "192.168.0.9:50000", &[1, 1, 1, 1], payload),
                &mut packet,
            );
            assert!(verifies(&packet[..20], 0), "IPv4 header checksum");
            let pseudo = pseudo_header_sum(&packet[12..16], &packet[16..20], packet.len() - 20);
            assert!(verifies(&packet[20..], pseudo), "TCP checksum");
            assert_eq!(tcp_payload(LINKTYPE_RAW, &packet).unwrap(), payload);
        }
    }

    #[test]
    fn ipv6_and_mixed_families_encode_as_ipv6() {
        let mut packet = Vec::new();
        for (src, dst) in [
            ("[fd00::1]:443", "[fd00::2]:40000"),
            ("10.0.0.1:443", "[::1]:40000"),
        ] {
            encode_tcp_packet(&segment(src, dst, &[], b"hello!!"), &mut packet);
            assert_eq!(packet[0] >> 4, 6);
            let pseudo = pseudo_header_sum(&packet[8..24], &packet[24..40], packet.len() - 40);
            assert!(verifies(&packet[40..], pseudo), "TCP checksum");
            assert_eq!(tcp_payload(LINKTYPE_RAW, &packet).unwrap(), b"hello!!");
        }
    }

    #[test]
    fn known_checksum_matches_reference() {
        // The IPv4 header example from RFC 1071 / Wikipedia: checksum 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&header, 0), 0xb861);
    }

    #[test]
    fn ethernet_frames_are_unwrapped() {
        let mut packet = Vec::new();
        encode_tcp_packet(&segment("10.1.2.3:1", "10.1.2.4:2", &[], b"x"), &mut packet);
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        frame.extend_from_slice(&packet);
        frame.extend_from_slice(&[0; 6]); // Ethernet padding past the IP total length
        assert_eq!(tcp_payload(LINKTYPE_ETHERNET, &frame).unwrap(), b"x");
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut packet = Vec::new();
        encode_tcp_packet(
            &segment("10.1.2.3:1", "10.1.2.4:2", &[], b"payload"),
            &mut packet,
        );
        for cut in 0..packet.len() - 7 {
            assert!(
                tcp_payload(LINKTYPE_RAW, &packet[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_offset = packet.clone();
        bad_offset[32] = 0xf0; // TCP data offset 60 > segment
        assert!(tcp_payload(LINKTYPE_RAW, &bad_offset).is_err());
        let mut udp = packet.clone();
        udp[9] = 17;
        assert!(tcp_payload(LINKTYPE_RAW, &udp).is_err());
        assert!(tcp_payload(147, &packet).is_err());
        assert!(tcp_payload(LINKTYPE_ETHERNET, &[0; 13]).is_err());
    }
}
