//! Go struct field offsets the probes need, by Go release. A stripped binary has no DWARF, so
//! these come from a table measured on unstripped builds, never from guesses.
//!
//! How the rows were verified: a TLS client/server test program (`tests/tlsfixture.go`) was
//! built unstripped with the last patch release of every minor version (go1.13.15, 1.14.15,
//! 1.15.15, 1.16.15, 1.17.13, 1.18.10, 1.20.14, 1.21.13, 1.22.12, 1.23.12, 1.24.13, 1.25.14),
//! some first ones (go1.16.3, 1.18.1, 1.21.0, 1.26.0), Debian's go1.19.8 and the machine's
//! go1.26.8, and each member's `DW_AT_data_member_location` was read from its DWARF
//! (`crypto/tls.Conn`, `net.TCPConn`, `net.conn`, `net.netFD`, `internal/poll.FD`,
//! `net.TCPAddr`); also from the DWARF of kube-apiserver v1.20.2 (go1.19.8). The tests repeat
//! that check for the Go toolchains on the machine and for any listed in
//! `APISCOPE_EXTRA_GO_TOOLCHAINS`.
//!
//! All those releases agree: the fields used sit at the front of their structs, and the one
//! struct that grew over the years (`internal/poll.FD`, e.g. `SysFile` in 1.21) kept its size on
//! Linux, so `netFD.laddr` stayed at 96. A release outside the verified range is refused rather
//! than assumed to match: a wrong offset makes the probes read garbage.

use std::ops::RangeInclusive;

use apiscope_common::GoOffsets;

use super::{GoBinaryError, GoVersion};

/// Go 1.x minor versions the table covers (go1.13 is the first with `.go.buildinfo`, so the
/// first whose version a stripped binary reveals).
pub const VERIFIED_GO_MINOR_VERSIONS: RangeInclusive<u32> = 13..=26;

/// Go 1.13 to 1.26 on 64-bit Linux.
const GO_1_13_TO_1_26: GoOffsets = GoOffsets {
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
};

/// (Go 1.x minor versions, offsets). Add a row when a release moves a field.
const TABLE: &[(RangeInclusive<u32>, GoOffsets)] = &[(13..=26, GO_1_13_TO_1_26)];

/// The offsets for binaries built by this Go release; an error outside the verified releases.
pub fn struct_offsets(version: &GoVersion) -> Result<GoOffsets, GoBinaryError> {
    TABLE
        .iter()
        .find(|(minors, _)| version.major == 1 && minors.contains(&version.minor))
        .map(|(_, offsets)| *offsets)
        .ok_or_else(|| GoBinaryError::UnsupportedGoVersion {
            version: version.raw.clone(),
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
        assert_eq!(
            struct_offsets(&version("go1.19.8")).unwrap(),
            GO_1_13_TO_1_26
        );
    }
}
