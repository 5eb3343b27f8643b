//! Go struct field offsets the probes need, by Go release. A stripped binary has no DWARF, so
//! these come from a table measured on unstripped builds, never from guesses.
//!
//! How the rows were verified: a TLS client/server test program (`tests/tlsfixture.go`) was
//! built unstripped with the last patch release of every minor version (go1.13.15, 1.14.15,
//! 1.15.15, 1.16.15, 1.17.13, 1.18.10, 1.20.14, 1.21.13, 1.22.12, 1.23.12, 1.24.13, 1.25.14),
//! some first ones (go1.16.3, 1.18.1, 1.21.0, 1.26.0), Debian's go1.19.8 and the machine's
//! go1.26.8, and each member's `DW_AT_data_member_location` was read from its DWARF
//! (`crypto/tls.Conn`, `net.TCPConn`, `net.conn`, `net.netFD`, `internal/poll.FD`,
//! `net.TCPAddr`); also from the DWARF of kube-apiserver v1.20.2 (go1.19.8), and later of
//! go1.27.3 (the module proxy's toolchain). The tests repeat that check for Debian's go1.19,
//! the machine's Go and go1.27.3, and for any toolchain listed in `APISCOPE_EXTRA_GO_TOOLCHAINS`.
//!
//! All those releases agree: the fields used sit at the front of their structs, and the one
//! struct that grew over the years (`internal/poll.FD`, e.g. `SysFile` in 1.21) kept its size on
//! Linux, so `netFD.laddr` stayed at 96. A release older than the table is refused; one newer
//! than it gets the TLS probes with the newest row's connection offsets (fields at the front of
//! their structs since go1.13, see [`newer_release_offsets`]) but no header hooks, whose map
//! layout is release-specific: a wrong offset makes the probes read garbage.

use std::ops::RangeInclusive;

use apiscope_common::GoOffsets;

use super::{GoBinaryError, GoVersion};

/// Go 1.x minor versions the table covers (go1.13 is the first with `.go.buildinfo`, so the
/// first whose version a stripped binary reveals).
pub const VERIFIED_GO_MINOR_VERSIONS: RangeInclusive<u32> = 13..=27;

/// Go 1.13 to 1.23 on 64-bit Linux.
const GO_1_13_TO_1_23: GoOffsets = GoOffsets {
    // type Conn struct { conn net.Conn; isClient bool; ... }
    tls_conn_conn: 0,
    tls_conn_is_client: 16,
    // type TCPConn struct { conn }; type conn struct { fd *netFD }
    net_conn_fd: 0,
    // netFD.pfd at 0; poll.FD { fdmu fdMutex (16 bytes); Sysfd int; ... }
    netfd_sysfd: 16,
    // netFD { pfd poll.FD (56); family, sotype int; isConnected bool; net string; laddr, raddr Addr }
    netfd_laddr: 96,
    netfd_raddr: 112,
    // type TCPAddr struct { IP IP; Port int; Zone string }
    tcpaddr_ip: 0,
    tcpaddr_port: 24,
    // The HTTP/2 header hooks' offsets are library offsets, keyed by the x/net version
    // ([`http2_offsets`]); filled in only when those hooks attach.
    ..NO_HTTP2
};

/// Go 1.24 to 1.27: the same, plus the swiss-table map layout the one-hit response hook walks
/// (`maps.Map`, `maps.table`, `maps.groupsReference`, `noalg.map.group[string][]string`),
/// checked against the DWARF of go1.26.8 and go1.27.3 by the tests and of go1.24.13 and
/// go1.25.9 with `APISCOPE_EXTRA_GO_TOOLCHAINS`.
const GO_1_24_TO_1_27: GoOffsets = GoOffsets {
    // type Map struct { used uint64; seed uintptr; dirPtr unsafe.Pointer; dirLen int; ... }
    go_map_dir_ptr: 16,
    go_map_dir_len: 24,
    // type table struct { used, capacity, growthLeft uint16; localDepth uint8; index int;
    // groups groupsReference{ data unsafe.Pointer; lengthMask uint64 } }
    go_map_table_groups: 16,
    // group { ctrl uint64; slots [8]struct{ key string; elem []string } }
    go_map_header_group_size: 328,
    go_map_header_group_slots: 8,
    ..GO_1_13_TO_1_23
};

/// The header hooks switched off (`http2_enabled` 0).
const NO_HTTP2: GoOffsets = GoOffsets {
    tls_conn_conn: 0,
    tls_conn_is_client: 0,
    net_conn_fd: 0,
    netfd_sysfd: 0,
    netfd_laddr: 0,
    netfd_raddr: 0,
    tcpaddr_ip: 0,
    tcpaddr_port: 0,
    http2_enabled: 0,
    http2_server_conn_conn: 0,
    http2_meta_headers_frame_headers_frame: 0,
    http2_meta_headers_frame_fields: 0,
    http2_headers_frame_stream_id: 0,
    http2_write_res_headers_stream_id: 0,
    http2_write_res_headers_status: 0,
    hpack_header_field_size: 0,
    hpack_header_field_name: 0,
    hpack_header_field_value: 0,
    hpack_header_field_sensitive: 0,
    http2_write_res_headers_header: 0,
    http2_write_res_headers_date: 0,
    http2_write_res_headers_content_type: 0,
    http2_write_res_headers_content_length: 0,
    go_map_dir_ptr: 0,
    go_map_dir_len: 0,
    go_map_table_groups: 0,
    go_map_header_group_size: 0,
    go_map_header_group_slots: 0,
    // Per binary, from its code (`GoBinary::record_read_sites`, `GoBinary::prologue`).
    tls_conn_input: 0,
    tls_read_frame_size: 0,
};

/// (Go 1.x minor versions, offsets). Add a row when a release moves a field.
const TABLE: &[(RangeInclusive<u32>, GoOffsets)] =
    &[(13..=23, GO_1_13_TO_1_23), (24..=27, GO_1_24_TO_1_27)];

/// The offsets for binaries built by this Go release; an error outside the verified releases.
pub fn struct_offsets(version: &GoVersion) -> Result<GoOffsets, GoBinaryError> {
    TABLE
        .iter()
        .find(|(minors, _)| version.major == 1 && minors.contains(&version.minor))
        .map(|(_, offsets)| *offsets)
        .ok_or_else(|| GoBinaryError::UnsupportedGoVersion {
            version: version.raw.clone(),
            known: VERIFIED_GO_MINOR_VERSIONS,
        })
}

/// For a Go 1 release newer than the table: the newest row's connection offsets
/// (`tls.Conn.conn`/`isClient`, `net.conn.fd`, `netFD`, `TCPAddr`: unchanged from go1.13 to
/// the newest verified release) and nothing else, so the TLS probes capture and the header
/// hooks stay off. `None` for a release the table covers or one older than it.
pub fn newer_release_offsets(version: &GoVersion) -> Option<GoOffsets> {
    if version.major != 1 || version.minor <= *VERIFIED_GO_MINOR_VERSIONS.end() {
        return None;
    }
    let newest = TABLE.last().map(|(_, offsets)| offsets)?;
    Some(GoOffsets {
        tls_conn_conn: newest.tls_conn_conn,
        tls_conn_is_client: newest.tls_conn_is_client,
        net_conn_fd: newest.net_conn_fd,
        netfd_sysfd: newest.netfd_sysfd,
        netfd_laddr: newest.netfd_laddr,
        netfd_raddr: newest.netfd_raddr,
        tcpaddr_ip: newest.tcpaddr_ip,
        tcpaddr_port: newest.tcpaddr_port,
        ..NO_HTTP2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(raw: &str) -> GoVersion {
        GoVersion::parse(raw).unwrap()
    }

    #[test]
    fn table_covers_exactly_the_verified_versions() {
        for minor in 0..40 {
            let result = struct_offsets(&version(&format!("go1.{minor}.3")));
            assert_eq!(
                result.is_ok(),
                VERIFIED_GO_MINOR_VERSIONS.contains(&minor),
                "go1.{minor}"
            );
        }
        assert!(struct_offsets(&version("go2.19.1")).is_err());
        // Newer than the table: connection offsets only, no map layout for the header hooks.
        let newer = newer_release_offsets(&version("go1.28.0")).unwrap();
        assert_eq!(newer.tls_conn_is_client, 16);
        assert_eq!(newer.netfd_laddr, 96);
        assert_eq!(newer.go_map_header_group_size, 0);
        assert!(newer_release_offsets(&version("go1.27.3")).is_none());
        assert!(newer_release_offsets(&version("go1.12.9")).is_none());
        assert!(newer_release_offsets(&version("go2.0.0")).is_none());
        assert_eq!(
            struct_offsets(&version("go1.19.8")).unwrap(),
            GO_1_13_TO_1_23
        );
        // Swiss-table maps from go1.24: only those rows let the response hook read a map.
        assert_eq!(
            struct_offsets(&version("go1.23.12"))
                .unwrap()
                .go_map_header_group_size,
            0
        );
        assert_eq!(
            struct_offsets(&version("go1.24.0"))
                .unwrap()
                .go_map_header_group_size,
            328
        );
    }
}

/// Struct offsets of the HTTP/2 header hooks (`golang.org/x/net/http2` and its `hpack`), which
/// are library code: keyed by the x/net module version, not the Go release.
///
/// How the row was verified: `tests/http2fixture.go` (an `http2.ConfigureServer` TLS server)
/// was built unstripped against x/net v0.0.0-20201110031124-69a78807bb2b (the copy vendored in
/// Kubernetes v1.20.2), v0.17.0 and v0.62.0, with Debian's go1.19.8 (all but v0.62.0, which
/// needs a newer Go) and go1.26; each member's `DW_AT_data_member_location` was read from the
/// DWARF (`serverConn`, `MetaHeadersFrame`, `HeadersFrame`, `FrameHeader`, `writeResHeaders`,
/// `hpack.HeaderField`); also from the DWARF of kube-apiserver v1.20.2. The tests repeat that.
/// Every one of them agrees: these fields sit at the front of their structs and have not moved
/// since 2016.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Http2Offsets {
    pub server_conn_conn: u64,
    pub meta_headers_frame_headers_frame: u64,
    pub meta_headers_frame_fields: u64,
    pub headers_frame_stream_id: u64,
    pub write_res_headers_stream_id: u64,
    pub write_res_headers_status: u64,
    pub header_field_size: u64,
    pub header_field_name: u64,
    pub header_field_value: u64,
    pub header_field_sensitive: u64,
    pub write_res_headers_header: u64,
    pub write_res_headers_date: u64,
    pub write_res_headers_content_type: u64,
    pub write_res_headers_content_length: u64,
}

impl Http2Offsets {
    /// Copies the offsets into the kernel's per-process table and switches the hooks on.
    pub fn apply(&self, offsets: &mut GoOffsets) {
        offsets.http2_enabled = 1;
        offsets.http2_server_conn_conn = self.server_conn_conn;
        offsets.http2_meta_headers_frame_headers_frame = self.meta_headers_frame_headers_frame;
        offsets.http2_meta_headers_frame_fields = self.meta_headers_frame_fields;
        offsets.http2_headers_frame_stream_id = self.headers_frame_stream_id;
        offsets.http2_write_res_headers_stream_id = self.write_res_headers_stream_id;
        offsets.http2_write_res_headers_status = self.write_res_headers_status;
        offsets.hpack_header_field_size = self.header_field_size;
        offsets.hpack_header_field_name = self.header_field_name;
        offsets.hpack_header_field_value = self.header_field_value;
        offsets.hpack_header_field_sensitive = self.header_field_sensitive;
        offsets.http2_write_res_headers_header = self.write_res_headers_header;
        offsets.http2_write_res_headers_date = self.write_res_headers_date;
        offsets.http2_write_res_headers_content_type = self.write_res_headers_content_type;
        offsets.http2_write_res_headers_content_length = self.write_res_headers_content_length;
    }
}

/// The x/net versions the table was verified against, oldest first.
pub const VERIFIED_XNET_VERSIONS: [&str; 3] =
    ["v0.0.0-20201110031124-69a78807bb2b", "v0.17.0", "v0.62.0"];

const XNET_2020_TO_2025: Http2Offsets = Http2Offsets {
    // type serverConn struct { srv *Server; hs *http.Server; conn net.Conn; ... }
    server_conn_conn: 16,
    // type MetaHeadersFrame struct { *HeadersFrame; Fields []hpack.HeaderField; Truncated bool }
    meta_headers_frame_headers_frame: 0,
    meta_headers_frame_fields: 8,
    // HeadersFrame { FrameHeader; ... }; FrameHeader { valid bool; Type, Flags uint8;
    // Length, StreamID uint32 }
    headers_frame_stream_id: 8,
    // type writeResHeaders struct { streamID uint32; httpResCode int; h http.Header;
    // trailers []string; endStream bool; date, contentType, contentLength string }
    write_res_headers_stream_id: 0,
    write_res_headers_status: 8,
    write_res_headers_header: 16,
    write_res_headers_date: 56,
    write_res_headers_content_type: 72,
    write_res_headers_content_length: 88,
    // type HeaderField struct { Name, Value string; Sensitive bool }
    header_field_size: 40,
    header_field_name: 0,
    header_field_value: 16,
    header_field_sensitive: 32,
};

const STD_GO_1_27: Http2Offsets = Http2Offsets {
    // type serverConn struct { srv *Server; hs ServerConfig (an interface); conn net.Conn; ... }
    server_conn_conn: 24,
    ..XNET_2020_TO_2025
};

/// (oldest, newest verified x/net version, offsets). Add a row when a release moves a field.
const HTTP2_TABLE: &[(&str, &str, Http2Offsets)] = &[(
    VERIFIED_XNET_VERSIONS[0],
    VERIFIED_XNET_VERSIONS[2],
    XNET_2020_TO_2025,
)];

/// Go releases whose own HTTP/2 server (`net/http/internal/http2`, which x/net's server wraps
/// from Go 1.27 on unless built with `-tags http2legacy`) was checked against DWARF (go1.27.3):
/// the moved x/net code, with one field before `conn` changed from a pointer to an interface.
pub const VERIFIED_STD_HTTP2_GO_MINOR_VERSIONS: RangeInclusive<u32> = 27..=27;

/// The HTTP/2 hook offsets of the standard library's HTTP/2 server in binaries built by this Go
/// release; an error outside the verified releases.
pub fn std_http2_offsets(
    version: &GoVersion,
) -> Result<(Http2Offsets, Http2OffsetsSource), String> {
    if version.major == 1 && VERIFIED_STD_HTTP2_GO_MINOR_VERSIONS.contains(&version.minor) {
        Ok((STD_GO_1_27, Http2OffsetsSource::StandardLibrary))
    } else {
        Err(format!(
            "{version}: the standard library's HTTP/2 hook offsets are only known for go1.{}-go1.{}",
            VERIFIED_STD_HTTP2_GO_MINOR_VERSIONS.start(),
            VERIFIED_STD_HTTP2_GO_MINOR_VERSIONS.end()
        ))
    }
}

/// How the HTTP/2 offsets for a binary were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http2OffsetsSource {
    /// The standard library's HTTP/2 server (Go 1.27+), keyed by the Go release.
    StandardLibrary,
    /// The binary's build info names an x/net version inside a verified row.
    ModuleVersion,
    /// No x/net version in the build info (a GOPATH/vendor build such as Kubernetes 1.20,
    /// whose vendored copy was verified): the table has one layout for every verified
    /// version, and that one is used.
    Vendored,
}

/// The HTTP/2 hook offsets for a binary built with this x/net version (`None`: not in the
/// build info); an error outside the verified versions.
pub fn http2_offsets(
    xnet_version: Option<&str>,
) -> Result<(Http2Offsets, Http2OffsetsSource), String> {
    match xnet_version {
        Some(version) => HTTP2_TABLE
            .iter()
            .find(|(oldest, newest, _)| {
                compare_module_versions(oldest, version).is_le()
                    && compare_module_versions(version, newest).is_le()
            })
            .map(|(_, _, offsets)| (*offsets, Http2OffsetsSource::ModuleVersion))
            .ok_or_else(|| {
                format!(
                    "golang.org/x/net {version}: HTTP/2 hook offsets are only known for {} to {}",
                    VERIFIED_XNET_VERSIONS[0], VERIFIED_XNET_VERSIONS[2]
                )
            }),
        None => match HTTP2_TABLE {
            [(_, _, offsets)] => Ok((*offsets, Http2OffsetsSource::Vendored)),
            _ => Err("golang.org/x/net version unknown and the verified layouts differ".into()),
        },
    }
}

/// Semantic-version order of Go module versions (`v0.17.0`, pseudo-versions such as
/// `v0.0.0-20201110031124-69a78807bb2b`, which sort as pre-releases by their timestamp).
pub fn compare_module_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(version: &str) -> ([u64; 3], Option<&str>) {
        let version = version.trim_start_matches('v');
        let version = version.split('+').next().unwrap_or(version);
        let (core, pre) = match version.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (version, None),
        };
        let mut numbers = [0u64; 3];
        for (slot, part) in numbers.iter_mut().zip(core.split('.')) {
            *slot = part.parse().unwrap_or(0);
        }
        (numbers, pre)
    }
    let ((a_core, a_pre), (b_core, b_pre)) = (split(a), split(b));
    a_core.cmp(&b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(a), Some(b)) => {
            let mut a_parts = a.split('.');
            let mut b_parts = b.split('.');
            loop {
                match (a_parts.next(), b_parts.next()) {
                    (None, None) => return std::cmp::Ordering::Equal,
                    (None, Some(_)) => return std::cmp::Ordering::Less,
                    (Some(_), None) => return std::cmp::Ordering::Greater,
                    (Some(x), Some(y)) => {
                        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
                            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
                            (Err(_), Err(_)) => x.cmp(y),
                        };
                        if order.is_ne() {
                            return order;
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod http2_tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn module_versions_order() {
        let sorted = [
            "v0.0.0-20190101000000-aaaaaaaaaaaa",
            "v0.0.0-20201110031124-69a78807bb2b",
            "v0.0.0",
            "v0.1.0",
            "v0.17.0",
            "v0.17.1-0.20231001000000-bbbbbbbbbbbb",
            "v0.17.1",
            "v0.62.0",
            "v1.0.0",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(compare_module_versions(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(
            compare_module_versions("v0.17.0+incompatible", "v0.17.0"),
            Ordering::Equal
        );
    }

    #[test]
    fn http2_table_covers_the_verified_versions_only() {
        for version in VERIFIED_XNET_VERSIONS {
            assert_eq!(
                http2_offsets(Some(version)).unwrap(),
                (XNET_2020_TO_2025, Http2OffsetsSource::ModuleVersion)
            );
        }
        assert!(http2_offsets(Some("v0.33.0")).is_ok());
        assert!(http2_offsets(Some("v0.0.0-20190101000000-aaaaaaaaaaaa")).is_err());
        assert!(http2_offsets(Some("v0.63.0")).is_err());
        assert_eq!(
            http2_offsets(None).unwrap(),
            (XNET_2020_TO_2025, Http2OffsetsSource::Vendored)
        );
    }
}
