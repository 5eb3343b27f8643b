//! Struct member offsets read from the DWARF of an unstripped Go binary: the reference the
//! offsets table is checked against.

use std::borrow::Cow;
use std::collections::HashMap;

use apiscope_common::GoOffsets;

use super::super::Http2Offsets;
use object::{Object, ObjectSection};

type Reader<'a> = gimli::EndianSlice<'a, gimli::LittleEndian>;

/// Member name -> byte offset, per struct type name (e.g. `internal/poll.FD`).
#[derive(Debug, Default)]
pub struct StructLayouts(HashMap<String, HashMap<String, u64>>);

/// The struct types the offsets table is about, plus the runtime's module data (whose `text`
/// field the pclntab reader relies on).
pub const STRUCTS: &[&str] = &[
    "crypto/tls.Conn",
    "net.TCPConn",
    "net.conn",
    "net.netFD",
    "internal/poll.FD",
    "net.TCPAddr",
    "runtime.moduledata",
    // tls.Conn.input, whose plaintext the record probe copies.
    "bytes.Reader",
    // Go 1.24+ swiss-table maps, as the one-hit response hook walks an `http.Header`.
    "internal/runtime/maps.Map",
    "internal/runtime/maps.table",
    "internal/runtime/maps.groupsReference",
    "noalg.map.group[string][]string",
];

/// The HTTP/2 hooks' struct types, by their name after the x/net package path's prefix
/// (`k8s.io/kubernetes/vendor/` in a vendored build, nothing in a module build).
pub const HTTP2_STRUCTS: &[&str] = &[
    "golang.org/x/net/http2.serverConn",
    "golang.org/x/net/http2.MetaHeadersFrame",
    "golang.org/x/net/http2.HeadersFrame",
    "golang.org/x/net/http2.FrameHeader",
    "golang.org/x/net/http2.writeResHeaders",
    "golang.org/x/net/http2/hpack.HeaderField",
];

/// Pseudo-member holding a struct's `DW_AT_byte_size`.
const BYTE_SIZE: &str = "<byte size>";

/// The standard library's own HTTP/2 package from Go 1.27 (x/net's server wraps it there).
pub const STD_HTTP2: &str = "net/http/internal/http2";

fn wanted(name: &str) -> bool {
    STRUCTS.contains(&name)
        || HTTP2_STRUCTS.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('/'))
                || suffix
                    .strip_prefix("golang.org/x/net/http2.")
                    .is_some_and(|member| name == format!("{STD_HTTP2}.{member}"))
        })
}

impl StructLayouts {
    pub fn member(&self, struct_name: &str, member: &str) -> Result<u64, String> {
        self.0
            .get(struct_name)
            .ok_or_else(|| format!("DWARF has no struct {struct_name}"))?
            .get(member)
            .copied()
            .ok_or_else(|| format!("DWARF struct {struct_name} has no member {member}"))
    }

    pub fn byte_size(&self, struct_name: &str) -> Result<u64, String> {
        self.member(struct_name, BYTE_SIZE)
    }

    /// The HTTP/2 hook offsets of the x/net copy under `prefix` (e.g. `k8s.io/kubernetes/vendor/`
    /// or empty), computed the way the probes use them.
    pub fn http2_offsets(&self, prefix: &str) -> Result<Http2Offsets, String> {
        self.http2_offsets_in(
            &format!("{prefix}golang.org/x/net/http2"),
            &format!("{prefix}golang.org/x/net/http2/hpack"),
        )
    }

    /// The same for the HTTP/2 package `http2` (`net/http/internal/http2` from Go 1.27) and its
    /// hpack package.
    pub fn http2_offsets_in(&self, http2: &str, hpack: &str) -> Result<Http2Offsets, String> {
        let m = |s: &str, f: &str| self.member(&format!("{http2}.{s}"), f);
        let field = format!("{hpack}.HeaderField");
        let h = |f: &str| self.member(&field, f);
        Ok(Http2Offsets {
            server_conn_conn: m("serverConn", "conn")?,
            meta_headers_frame_headers_frame: m("MetaHeadersFrame", "HeadersFrame")?,
            meta_headers_frame_fields: m("MetaHeadersFrame", "Fields")?,
            headers_frame_stream_id: m("HeadersFrame", "FrameHeader")?
                + m("FrameHeader", "StreamID")?,
            write_res_headers_stream_id: m("writeResHeaders", "streamID")?,
            write_res_headers_status: m("writeResHeaders", "httpResCode")?,
            header_field_size: self.byte_size(&field)?,
            header_field_name: h("Name")?,
            header_field_value: h("Value")?,
            header_field_sensitive: h("Sensitive")?,
            write_res_headers_header: m("writeResHeaders", "h")?,
            write_res_headers_date: m("writeResHeaders", "date")?,
            write_res_headers_content_type: m("writeResHeaders", "contentType")?,
            write_res_headers_content_length: m("writeResHeaders", "contentLength")?,
        })
    }

    /// Member names in offset order (to check the register assignment of a struct argument).
    pub fn members_in_order(&self, struct_name: &str) -> Vec<String> {
        let mut members: Vec<(&String, &u64)> = self
            .0
            .get(struct_name)
            .map(|m| m.iter().filter(|(name, _)| *name != BYTE_SIZE).collect())
            .unwrap_or_default();
        members.sort_by_key(|(_, offset)| **offset);
        members.into_iter().map(|(name, _)| name.clone()).collect()
    }

    /// The offsets table entry, computed the way the probes use it.
    pub fn go_offsets(&self) -> Result<GoOffsets, String> {
        let m = |s: &str, f: &str| self.member(s, f);
        Ok(GoOffsets {
            tls_conn_conn: m("crypto/tls.Conn", "conn")?,
            tls_conn_is_client: m("crypto/tls.Conn", "isClient")?,
            // The interface's data word is a *net.TCPConn, which embeds net.conn.
            net_conn_fd: m("net.TCPConn", "conn")? + m("net.conn", "fd")?,
            netfd_sysfd: m("net.netFD", "pfd")? + m("internal/poll.FD", "Sysfd")?,
            netfd_laddr: m("net.netFD", "laddr")?,
            netfd_raddr: m("net.netFD", "raddr")?,
            tcpaddr_ip: m("net.TCPAddr", "IP")?,
            tcpaddr_port: m("net.TCPAddr", "Port")?,
            ..self.go_map_offsets()?
        })
    }

    /// Swiss-table map offsets (Go 1.24+), all 0 for a binary whose runtime has none.
    fn go_map_offsets(&self) -> Result<GoOffsets, String> {
        if self.member("internal/runtime/maps.Map", "dirPtr").is_err() {
            return Ok(GoOffsets::default());
        }
        let m = |s: &str, f: &str| self.member(s, f);
        let groups = "internal/runtime/maps.groupsReference";
        if m(groups, "lengthMask")? != m(groups, "data")? + 8 {
            return Err("groupsReference.lengthMask does not follow data".into());
        }
        let group = "noalg.map.group[string][]string";
        Ok(GoOffsets {
            go_map_dir_ptr: m("internal/runtime/maps.Map", "dirPtr")?,
            go_map_dir_len: m("internal/runtime/maps.Map", "dirLen")?,
            go_map_table_groups: m("internal/runtime/maps.table", "groups")? + m(groups, "data")?,
            go_map_header_group_size: self.byte_size(group)?,
            go_map_header_group_slots: m(group, "slots")?,
            ..GoOffsets::default()
        })
    }
}

pub fn struct_layouts(binary: &[u8]) -> Result<StructLayouts, String> {
    let file = object::File::parse(binary).map_err(|e| e.to_string())?;
    if file.section_by_name(".debug_info").is_none() {
        return Err("no .debug_info (stripped?)".into());
    }
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, object::Error> {
        match file.section_by_name(id.name()) {
            Some(section) => section.uncompressed_data(),
            None => Ok(Cow::Borrowed(&[])),
        }
    };
    let sections = gimli::DwarfSections::load(load).map_err(|e| e.to_string())?;
    let dwarf = sections.borrow(|section| Reader::new(section, gimli::LittleEndian));
    let mut layouts = StructLayouts::default();
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| e.to_string())? {
        let unit = dwarf.unit(header).map_err(|e| e.to_string())?;
        let mut tree = unit.entries_tree(None).map_err(|e| e.to_string())?;
        let root = tree.root().map_err(|e| e.to_string())?;
        collect(&dwarf, &unit, root, &mut layouts).map_err(|e| e.to_string())?;
    }
    Ok(layouts)
}

fn entry_name(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
) -> gimli::Result<Option<String>> {
    let Some(value) = entry.attr_value(gimli::DW_AT_name)? else {
        return Ok(None);
    };
    Ok(Some(
        dwarf
            .attr_string(unit, value)?
            .to_string_lossy()
            .into_owned(),
    ))
}

fn collect(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    node: gimli::EntriesTreeNode<'_, '_, '_, Reader<'_>>,
    layouts: &mut StructLayouts,
) -> gimli::Result<()> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_structure_type {
            collect(dwarf, unit, child, layouts)?;
            continue;
        }
        let Some(name) = entry_name(dwarf, unit, entry)? else {
            continue;
        };
        if !wanted(&name) || layouts.0.contains_key(&name) {
            continue;
        }
        let mut members = HashMap::new();
        if let Some(size) = entry
            .attr_value(gimli::DW_AT_byte_size)?
            .and_then(|value| value.udata_value())
        {
            members.insert(BYTE_SIZE.to_owned(), size);
        }
        let mut fields = child.children();
        while let Some(field) = fields.next()? {
            let field = field.entry();
            if field.tag() != gimli::DW_TAG_member {
                continue;
            }
            let offset = field
                .attr_value(gimli::DW_AT_data_member_location)?
                .and_then(|value| value.udata_value());
            if let (Some(member), Some(offset)) = (entry_name(dwarf, unit, field)?, offset) {
                members.insert(member, offset);
            }
        }
        layouts.0.insert(name, members);
    }
    Ok(())
}
