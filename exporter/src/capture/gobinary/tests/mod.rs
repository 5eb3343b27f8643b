//! Tests against real Go binaries, each checked against an independent reference: the
//! unstripped twin's `.symtab` (addresses), `go tool objdump` (RETs), `go version` (build info)
//! and DWARF (struct offsets).

mod dwarf;
mod fixtures;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use apiscope_common::GoOffsets;
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::*;
use fixtures::Fixture;

/// The functions apiscope probes.
const TLS_FUNCTIONS: [&str; 3] = [
    "crypto/tls.(*Conn).Read",
    "crypto/tls.(*Conn).Write",
    "crypto/tls.(*Conn).Close",
];
const HPACK_WRITE_FIELD: &str = "golang.org/x/net/http2/hpack.(*Encoder).WriteField";

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn open(path: &Path) -> GoBinary {
    GoBinary::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Function symbols of an unstripped binary: name -> addresses.
fn symtab_functions(data: &[u8]) -> HashMap<String, Vec<u64>> {
    let file = object::File::parse(data).unwrap();
    let mut functions: HashMap<String, Vec<u64>> = HashMap::new();
    for symbol in file.symbols().filter(|s| s.kind() == SymbolKind::Text) {
        if let Ok(name) = symbol.name() {
            functions
                .entry(name.to_owned())
                .or_default()
                .push(symbol.address());
        }
    }
    functions
}

/// Checks every pclntab function against the symbol table: (how many matched, the first few
/// that disagree). Functions absent from `.symtab` are neither.
fn compare_with_symtab(
    binary: &GoBinary,
    symbols: &HashMap<String, Vec<u64>>,
) -> (usize, Vec<(String, u64, Vec<u64>)>) {
    let (mut matched, mut mismatched) = (0, Vec::new());
    for function in binary.functions() {
        // Since Go 1.17 the pclntab names an ABI wrapper like the function it wraps; .symtab
        // calls the assembly-ABI one `<name>.abi0`. Either symbol may be the one at hand.
        let name = symtab_name(&function.name);
        let candidates: Vec<u64> = [name.clone(), format!("{name}.abi0")]
            .iter()
            .filter_map(|name| symbols.get(name))
            .flatten()
            .copied()
            .collect();
        if candidates.contains(&function.address) {
            matched += 1;
        } else if !candidates.is_empty() && mismatched.len() < 5 {
            mismatched.push((function.name, function.address, candidates));
        }
    }
    (matched, mismatched)
}

/// RET addresses per function, from `go tool objdump` of the same toolchain.
fn objdump_rets(go: &Path, binary: &Path, symbol_regex: &str) -> BTreeMap<String, Vec<u64>> {
    let output = fixtures::go_command(go)
        .args(["tool", "objdump", "-s", symbol_regex])
        .arg(binary)
        .output()
        .expect("go tool objdump");
    assert!(
        output.status.success(),
        "objdump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rets: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "TEXT crypto/tls.(*Conn).Read(SB) /usr/local/go/src/crypto/tls/conn.go"
        if let Some(header) = line.strip_prefix("TEXT ") {
            let name = header.split("(SB)").next().unwrap().to_owned();
            rets.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        // "  conn.go:1308\t\t0x5a9e84\t\tc3\t\t\tRET\t\t"
        let fields: Vec<&str> = line.split('\t').filter(|f| !f.trim().is_empty()).collect();
        if let (Some(name), [_, address, _, instruction, ..]) = (&current, fields.as_slice())
            && instruction.trim() == "RET"
        {
            let address = u64::from_str_radix(address.trim_start_matches("0x"), 16).unwrap();
            rets.get_mut(name).unwrap().push(address);
        }
    }
    rets
}

/// Go 1.17's pclntab keeps the compiler's `·` in generated names (`(*Conn).Close·dwrap·19`);
/// the ELF symbol table and objdump print `.`.
fn symtab_name(pclntab_name: &str) -> String {
    pclntab_name.replace('\u{b7}', ".")
}

fn expected_format(minor: u32) -> PclntabFormat {
    match minor {
        ..=15 => PclntabFormat::Go12,
        16..=17 => PclntabFormat::Go116,
        18..=19 => PclntabFormat::Go118,
        _ => PclntabFormat::Go120,
    }
}

/// Every check on one toolchain's stripped binary and its unstripped twin.
fn check_fixture(fixture: &Fixture) {
    let label = &fixture.go_version;
    let stripped_data = read(&fixture.stripped);
    let unstripped_data = read(&fixture.unstripped);
    {
        let stripped = object::File::parse(&*stripped_data).unwrap();
        assert!(
            stripped.section_by_name(".symtab").is_none(),
            "{label}: not stripped"
        );
        assert!(
            stripped.section_by_name(".debug_info").is_none(),
            "{label}: has DWARF"
        );
    }
    let binary = GoBinary::from_bytes(stripped_data.clone()).unwrap();
    let twin = GoBinary::from_bytes(unstripped_data.clone()).unwrap();

    // Build info against `go version`.
    let version = binary
        .go_version()
        .unwrap_or_else(|| panic!("{label}: no Go version"));
    assert_eq!(&version.raw, label);
    assert_eq!(
        format!("go{}.{}.{}", version.major, version.minor, version.patch),
        *label
    );
    assert_eq!(
        binary.pclntab_format(),
        expected_format(version.minor),
        "{label}"
    );

    // Every function of the stripped binary's pclntab against the twin's symbol table.
    let symbols = symtab_functions(&unstripped_data);
    let (matched, mismatched) = compare_with_symtab(&binary, &symbols);
    assert!(
        mismatched.is_empty(),
        "{label}: pclntab/symtab disagree: {mismatched:?}"
    );
    let total = binary.functions().count();
    assert!(
        matched * 10 >= total * 9,
        "{label}: only {matched} of {total} functions in .symtab"
    );
    assert_eq!(
        twin.functions().collect::<Vec<_>>(),
        binary.functions().collect::<Vec<_>>()
    );

    // The probed functions: found, same address as the symbol, same code at the file offset.
    let unstripped_file = object::File::parse(&*unstripped_data).unwrap();
    let text = unstripped_file.section_by_name(".text").unwrap();
    let text_data = text.data().unwrap();
    for name in TLS_FUNCTIONS {
        let function = binary
            .function(name)
            .unwrap_or_else(|| panic!("{label}: {name} not found"));
        assert_eq!(function.name, name);
        assert_eq!(
            binary.functions().filter(|f| f.name == name).count(),
            1,
            "{label}: {name} twice"
        );
        assert_eq!(symbols[name], [function.address], "{label}: {name}");
        assert!(function.end > function.address);
        let in_text = (function.address - text.address()) as usize;
        let at_offset = function.file_offset as usize;
        assert_eq!(
            stripped_data[at_offset..at_offset + 32],
            text_data[in_text..in_text + 32],
            "{label}: {name}: the file offset does not hold the function's code"
        );
        assert_eq!(binary.functions_with_suffix(name), [function]);
    }

    // What the probes rely on in the prologues: Read stores its receiver and buffer to their
    // ABI spill slots before its first call (the RET-only Read probe reads them there), and the
    // entry probes skip the stack-bound check (else a stack-growing call fires them twice).
    let read = binary.function("crypto/tls.(*Conn).Read").unwrap();
    let prologue = binary.prologue(&read).unwrap();
    for (slot, register) in [
        (0, iced_x86::Register::RAX),
        (8, iced_x86::Register::RBX),
        (16, iced_x86::Register::RCX),
    ] {
        assert!(
            prologue.spills(slot, register),
            "{label}: Read does not spill {register:?} to slot {slot}: {prologue:?}"
        );
    }
    for name in TLS_FUNCTIONS {
        let function = binary.function(name).unwrap();
        let after = binary.prologue(&function).unwrap().after_stack_check;
        assert!(
            (6..=20).contains(&after),
            "{label}: {name}: stack-bound check ends at +{after}"
        );
    }

    // Library code under vendored paths: the standard library's own copy of hpack.
    let write_fields: Vec<String> = binary
        .functions_with_suffix(HPACK_WRITE_FIELD)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        write_fields,
        [format!("vendor/{HPACK_WRITE_FIELD}")],
        "{label}"
    );
    assert!(
        binary
            .functions_with_suffix(&HPACK_WRITE_FIELD[1..])
            .is_empty(),
        "{label}"
    );
    assert!(binary.function(HPACK_WRITE_FIELD).is_none());

    // RETs of every crypto/tls.(*Conn) method against objdump of the twin.
    let reference = objdump_rets(
        &fixture.go,
        &fixture.unstripped,
        r"^crypto/tls\.\(\*Conn\)\.",
    );
    assert!(
        reference.len() > 20,
        "{label}: objdump found only {} methods",
        reference.len()
    );
    for name in TLS_FUNCTIONS {
        assert!(
            !reference[name].is_empty(),
            "{label}: objdump shows no RET in {name}"
        );
    }
    let by_symtab_name: HashMap<String, GoFunction> = binary
        .functions()
        .map(|f| (symtab_name(&f.name), f))
        .collect();
    for (name, objdump_addresses) in &reference {
        let function = by_symtab_name
            .get(name)
            .unwrap_or_else(|| panic!("{label}: {name} not in the pclntab"));
        let offsets = binary.ret_file_offsets(function).unwrap();
        for &offset in &offsets {
            assert_eq!(
                stripped_data[offset as usize], 0xc3,
                "{label}: {name} RET at {offset:#x}"
            );
        }
        let addresses: Vec<u64> = offsets
            .iter()
            .map(|offset| offset - function.file_offset + function.address)
            .collect();
        assert_eq!(&addresses, objdump_addresses, "{label}: RETs of {name}");
    }

    // The strict decoder accepts all the code in the binary but for assembly that embeds data:
    // `crypto/internal/boring/sig` functions jump over a byte signature (`sig_amd64.s`).
    let undecodable: Vec<String> = binary
        .functions()
        .filter(|function| binary.ret_file_offsets(function).is_err())
        .map(|function| function.name)
        .collect();
    assert!(
        undecodable
            .iter()
            .all(|name| name.starts_with("crypto/internal/boring/sig.")),
        "{label}: {undecodable:?}"
    );
}

/// The offsets table entry for this toolchain against the twin's DWARF.
fn check_offsets_against_dwarf(fixture: &Fixture) -> GoOffsets {
    let label = &fixture.go_version;
    let layouts = dwarf::struct_layouts(&read(&fixture.unstripped)).unwrap();
    let from_dwarf = layouts
        .go_offsets()
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let binary = open(&fixture.stripped);
    let table = struct_offsets(binary.go_version().unwrap()).unwrap();
    assert_eq!(
        table, from_dwarf,
        "{label}: offsets table disagrees with DWARF"
    );
    // The record probe's offsets come from Read's code, not the table: c.input as Read's loop
    // condition loads it, and bytes.Reader as GoBytesReader lays it out.
    let read_fn = binary.function("crypto/tls.(*Conn).Read").unwrap();
    let sites = binary
        .record_read_sites(&read_fn)
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(
        sites.conn_input,
        layouts.member("crypto/tls.Conn", "input").unwrap(),
        "{label}: c.input found in Read's code disagrees with DWARF"
    );
    for (member, offset) in [("s", 0), ("i", 24)] {
        assert_eq!(
            layouts.member("bytes.Reader", member).unwrap(),
            offset,
            "{label}: bytes.Reader.{member}"
        );
    }
    // Read calls readRecordOrCCS in its loop and before peeking at a close_notify alert.
    assert_eq!(sites.after_calls.len(), 2, "{label}: {sites:?}");
    let data = read(&fixture.stripped);
    for &after_call in &sites.after_calls {
        // Right after the call rel32, or on the branch after its `test rax, rax`.
        let at = after_call as usize;
        let after_the_call = data[at - 5] == 0xe8;
        let on_the_error_branch = data[at - 8] == 0xe8 && data[at - 3..at] == [0x48, 0x85, 0xc0];
        assert!(
            after_the_call || on_the_error_branch,
            "{label}: {after_call:#x} is neither after a call rel32 nor on its error branch"
        );
    }
    // The 1.18+ pclntab reader may take the text start from `runtime.firstmoduledata`.
    if binary.pclntab_format().entries_relative_to_text() {
        assert_eq!(
            layouts.member("runtime.moduledata", "text").unwrap(),
            (MODULEDATA_TEXT_WORD * 8) as u64,
            "{label}: runtime.moduledata.text moved"
        );
    }
    from_dwarf
}

#[test]
fn latest_toolchain_binary() {
    let Some(fixture) = fixtures::latest("latest_toolchain_binary") else {
        return;
    };
    check_fixture(fixture);
}

#[test]
fn go119_binary() {
    let Some(fixture) = fixtures::go119("go119_binary") else {
        return;
    };
    check_fixture(fixture);
}

#[test]
fn offsets_table_matches_dwarf_latest() {
    let Some(fixture) = fixtures::latest("offsets_table_matches_dwarf_latest") else {
        return;
    };
    check_offsets_against_dwarf(fixture);
}

#[test]
fn go127_binary() {
    let Some(fixture) = fixtures::go127("go127_binary") else {
        return;
    };
    check_fixture(fixture);
}

#[test]
fn offsets_table_matches_dwarf_go127() {
    let Some(fixture) = fixtures::go127("offsets_table_matches_dwarf_go127") else {
        return;
    };
    check_offsets_against_dwarf(fixture);
}

#[test]
fn offsets_table_matches_dwarf_go119() {
    let Some(fixture) = fixtures::go119("offsets_table_matches_dwarf_go119") else {
        return;
    };
    check_offsets_against_dwarf(fixture);
}

#[test]
fn pie_binary() {
    let Some(fixture) = fixtures::latest("pie_binary") else {
        return;
    };
    let path = fixture.pie_stripped.as_ref().unwrap();
    let data = read(path);
    let binary = GoBinary::from_bytes(data.clone()).unwrap();
    assert_eq!(binary.go_version().unwrap().raw, fixture.go_version);
    let exe = open(&fixture.stripped);
    for name in TLS_FUNCTIONS {
        let function = binary.function(name).unwrap();
        let rets = binary.ret_file_offsets(&function).unwrap();
        assert!(
            rets.iter().all(|&offset| data[offset as usize] == 0xc3),
            "{name}"
        );
        // Same source, same compiler: same number of returns as in the non-PIE build.
        assert_eq!(
            rets.len(),
            exe.ret_file_offsets(&exe.function(name).unwrap())
                .unwrap()
                .len()
        );
    }
}

/// With the section table gone, the pclntab and build info are found by searching the segments
/// (and, for Go 1.26+, the text start through `runtime.firstmoduledata`).
fn check_without_section_headers(fixture: &Fixture) {
    let mut data = read(&fixture.stripped);
    // e_shoff (0x28, 8 bytes), e_shnum (0x3c) and e_shstrndx (0x3e).
    data[0x28..0x30].fill(0);
    data[0x3c..0x40].fill(0);
    assert!(
        object::File::parse(&*data)
            .unwrap()
            .sections()
            .next()
            .is_none()
    );
    let blind = GoBinary::from_bytes(data).unwrap();
    let reference = open(&fixture.stripped);
    assert_eq!(blind.go_version(), reference.go_version());
    assert_eq!(
        blind.functions().collect::<Vec<_>>(),
        reference.functions().collect::<Vec<_>>()
    );
    let read_fn = blind.function(TLS_FUNCTIONS[0]).unwrap();
    assert_eq!(
        blind.ret_file_offsets(&read_fn).unwrap(),
        reference
            .ret_file_offsets(&reference.function(TLS_FUNCTIONS[0]).unwrap())
            .unwrap()
    );
}

#[test]
fn binary_without_section_headers_latest() {
    let Some(fixture) = fixtures::latest("binary_without_section_headers_latest") else {
        return;
    };
    check_without_section_headers(fixture);
}

#[test]
fn binary_without_section_headers_go119() {
    let Some(fixture) = fixtures::go119("binary_without_section_headers_go119") else {
        return;
    };
    check_without_section_headers(fixture);
}

/// Any fixture, for the malformed-input tests.
fn some_stripped_binary(test: &str) -> Option<Vec<u8>> {
    fixtures::latest(test)
        .or_else(|| fixtures::go119(test))
        .map(|f| read(&f.stripped))
}

#[test]
fn truncated_binaries_are_errors() {
    let Some(data) = some_stripped_binary("truncated_binaries_are_errors") else {
        return;
    };
    for len in [
        0,
        3,
        4,
        16,
        63,
        64,
        65,
        0x100,
        0x1000,
        data.len() / 3,
        data.len() / 2,
    ] {
        let result = GoBinary::from_bytes(data[..len].to_vec());
        assert!(result.is_err(), "a binary cut to {len} bytes parsed");
    }
    // Many more cut points: errors or (once only the section table is cut) a valid parse,
    // never a panic.
    for len in (0..data.len()).step_by(data.len() / 97) {
        let _ = GoBinary::from_bytes(data[..len].to_vec());
    }
}

#[test]
fn garbage_is_an_error() {
    // xorshift: deterministic noise without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..1 << 16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert!(matches!(
        GoBinary::from_bytes(noise.clone()),
        Err(GoBinaryError::NotElf)
    ));
    let mut elf_noise = noise.clone();
    elf_noise[..4].copy_from_slice(b"\x7fELF");
    assert!(GoBinary::from_bytes(elf_noise.clone()).is_err());
    elf_noise[4] = 2; // ELFCLASS64
    elf_noise[5] = 1; // little-endian
    elf_noise[6] = 1; // EV_CURRENT
    assert!(GoBinary::from_bytes(elf_noise).is_err());
    assert!(GoBinary::from_bytes(Vec::new()).is_err());
    let missing = GoBinary::open(Path::new("/nonexistent/apiscope/binary"));
    assert!(matches!(missing, Err(GoBinaryError::Io { .. })));
    // A valid ELF that is not a Go program.
    let not_go = GoBinary::open(Path::new("/bin/sh"));
    assert!(
        matches!(not_go, Err(GoBinaryError::NoPclntab)),
        "{not_go:?}"
    );
}

fn pclntab_range(data: &[u8]) -> std::ops::Range<usize> {
    let file = object::File::parse(data).unwrap();
    let (offset, size) = file
        .section_by_name(".gopclntab")
        .unwrap()
        .file_range()
        .unwrap();
    offset as usize..(offset + size) as usize
}

#[test]
fn corrupted_pclntab_header_is_an_error() {
    let Some(data) = some_stripped_binary("corrupted_pclntab_header_is_an_error") else {
        return;
    };
    let table = pclntab_range(&data);
    let corrupt = |at: usize, bytes: &[u8]| {
        let mut copy = data.clone();
        copy[table.start + at..table.start + at + bytes.len()].copy_from_slice(bytes);
        GoBinary::from_bytes(copy)
    };
    assert!(corrupt(0, &[0xfc]).is_err(), "magic");
    assert!(corrupt(7, &[5]).is_err(), "pointer size");
    assert!(
        corrupt(8, &u64::MAX.to_le_bytes()).is_err(),
        "function count"
    );
    assert!(corrupt(8, &[0; 8]).is_err(), "no functions");
    // Header word 7 (functab offset, 1.18+) or 6 (1.16-1.17) pointing past the table.
    assert!(
        corrupt(8 + 7 * 8, &u64::MAX.to_le_bytes()).is_err(),
        "functab offset"
    );
    // The table cut short by its section header: the functab runs past it.
    let mut short = data.clone();
    let file = object::File::parse(&*data).unwrap();
    let index = file.section_by_name(".gopclntab").unwrap().index().0;
    let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap()) as usize;
    let sh_size_at = shoff + index * 64 + 0x20;
    short[sh_size_at..sh_size_at + 8].copy_from_slice(&0x100u64.to_le_bytes());
    assert!(GoBinary::from_bytes(short).is_err(), "truncated section");
}

#[test]
fn bit_flips_in_pclntab_never_panic() {
    let Some(data) = some_stripped_binary("bit_flips_in_pclntab_never_panic") else {
        return;
    };
    let table = pclntab_range(&data);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut copy = data.clone();
    for round in 0..150 {
        // Mostly the header and functab (where offsets live), sometimes anywhere in the table.
        let span = if round % 3 == 0 {
            table.len()
        } else {
            4096.min(table.len())
        };
        let at = table.start + (next() as usize % span);
        let original = copy[at];
        copy[at] ^= 1 << (next() % 8);
        if let Ok(binary) = GoBinary::from_bytes(copy.clone())
            && let Some(function) = binary.function(TLS_FUNCTIONS[0])
        {
            let _ = binary.ret_file_offsets(&function);
        }
        copy[at] = original;
    }
}

#[test]
fn functions_outside_the_binary_are_rejected() {
    let Some(data) = some_stripped_binary("functions_outside_the_binary_are_rejected") else {
        return;
    };
    let binary = GoBinary::from_bytes(data).unwrap();
    let real = binary.function(TLS_FUNCTIONS[0]).unwrap();
    let bogus = [
        GoFunction {
            end: real.address - 1,
            ..real.clone()
        },
        GoFunction {
            address: 0,
            end: 0x10,
            ..real.clone()
        },
        GoFunction {
            end: u64::MAX,
            ..real.clone()
        },
        GoFunction {
            address: u64::MAX - 1,
            end: u64::MAX,
            ..real.clone()
        },
    ];
    for function in bogus {
        assert!(binary.ret_file_offsets(&function).is_err(), "{function:?}");
    }
}

/// The modern apiservers of the end-to-end matrix (`make setup` builds them): stripped
/// module-mode builds, one of them PIE. Everything the probes need is found in each: Read
/// spills its arguments, the entry probes skip the stack check, and the response hook reads the
/// header map (Go 1.24+). Missing builds skip, or fail under `APISCOPE_REQUIRE_TOOLS`.
#[test]
fn modern_kube_apiservers_have_every_probe_point() {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let cache = std::env::var_os("APISCOPE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/apiscope"));
    // Both are built with the machine's Go (GOTOOLCHAIN=local), as scripts/build-kubernetes-modern.sh does.
    for (build, go_minor, pie) in [("1.37.2", 26, false), ("1.34.4-pie", 26, true)] {
        let path = cache.join(format!("kubernetes-{build}/bin/kube-apiserver"));
        if !path.exists() {
            assert!(
                !fixtures::tools_required(),
                "{} missing (make setup builds it)",
                path.display()
            );
            eprintln!("SKIP kube-apiserver {build}: {} missing", path.display());
            continue;
        }
        let binary = open(&path);
        assert_eq!(binary.go_version().unwrap().minor, go_minor, "{build}");
        let mode = if pie { "pie" } else { "exe" };
        assert_eq!(binary.build_setting("-buildmode"), Some(mode), "{build}");
        let points = crate::capture::tracer::ProbePoints::find(
            &path,
            crate::capture::config::ReadProbeMode::Record,
        )
        .unwrap_or_else(|e| panic!("kube-apiserver {build}: {e:#}"));
        let hooks = points
            .header_hooks
            .as_ref()
            .unwrap_or_else(|e| panic!("kube-apiserver {build}: no header hooks: {e}"));
        assert!(hooks.response_from_header_map, "{build}");
        let crate::capture::tracer::ReadProbes::Records { after_calls } = &points.reads else {
            panic!(
                "kube-apiserver {build}: reads not probed per record: {}",
                points.reads
            );
        };
        assert!(!after_calls.is_empty(), "{build}");
        // Every site on an instruction the kernel emulates: no second trap per hit.
        assert!(
            points.single_stepped.is_empty(),
            "kube-apiserver {build}: single-stepped probe sites {:?}",
            points.single_stepped
        );
        // go1.26's tls.Conn (see the DWARF check of the go1.26 fixture).
        assert_eq!(points.offsets.tls_conn_input, 0x2c8, "{build}");
        // The build info names the staging modules' version, which k8s::release turns into the
        // release whose labelling rules the request metrics follow (v0.37.2 -> 1.37.2).
        let release = build.strip_suffix("-pie").unwrap_or(build);
        assert_eq!(
            points
                .module_versions
                .get("k8s.io/apiserver")
                .map(String::as_str),
            Some(format!("v0.{}", release.strip_prefix("1.").unwrap()).as_str()),
            "{build}"
        );
        let write = binary.function("crypto/tls.(*Conn).Write").unwrap();
        assert!(
            points.write_entry > write.file_offset,
            "{build}: Write probe at the entry"
        );
        eprintln!(
            "kube-apiserver {build}: go{go_minor}, x/net {:?}, reads {}, probes after the \
             stack check at Write+{}, processHeaders+{}, writeFrame+{}",
            hooks.xnet_version,
            points.reads,
            points.write_entry - write.file_offset,
            hooks.process_headers
                - binary
                    .functions_with_suffix("golang.org/x/net/http2.(*serverConn).processHeaders")
                    [0]
                .file_offset,
            hooks.write_res_headers
                - binary
                    .functions_with_suffix("golang.org/x/net/http2.(*writeResHeaders).writeFrame")
                    [0]
                .file_offset,
        );
    }
}

fn kube_apiserver_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/apiscope/kubernetes-1.20.2/bin")
}

/// The real target: kube-apiserver v1.20.2 built with Go 1.19 (vendored, GOPATH-style paths).
#[test]
fn kube_apiserver() {
    let dir = kube_apiserver_dir();
    let stripped_path = dir.join("kube-apiserver");
    let unstripped_path = dir.join("kube-apiserver-unstripped");
    if !stripped_path.exists() && !unstripped_path.exists() {
        eprintln!(
            "SKIP kube_apiserver: no kube-apiserver build in {}",
            dir.display()
        );
        return;
    }
    if stripped_path.exists() {
        let started = std::time::Instant::now();
        let binary = open(&stripped_path);
        eprintln!("kube-apiserver: opened in {:?}", started.elapsed());
        let version = binary.go_version().unwrap();
        assert_eq!((version.major, version.minor), (1, 19), "{version}");
        let data = read(&stripped_path);
        for name in TLS_FUNCTIONS {
            let function = binary
                .function(name)
                .unwrap_or_else(|| panic!("{name} not found"));
            let rets = binary.ret_file_offsets(&function).unwrap();
            assert!(!rets.is_empty(), "{name}");
            assert!(
                rets.iter().all(|&offset| data[offset as usize] == 0xc3),
                "{name}"
            );
            eprintln!(
                "kube-apiserver {version} ({:?}): {name} at {:#x} (file offset {:#x}), {} RETs",
                binary.pclntab_format(),
                function.address,
                function.file_offset,
                rets.len()
            );
        }
        // The vendored x/net copy and the standard library's.
        let mut write_fields: Vec<String> = binary
            .functions_with_suffix(HPACK_WRITE_FIELD)
            .into_iter()
            .map(|f| f.name)
            .collect();
        write_fields.sort();
        assert_eq!(
            write_fields,
            [
                format!("k8s.io/kubernetes/vendor/{HPACK_WRITE_FIELD}"),
                format!("vendor/{HPACK_WRITE_FIELD}")
            ]
        );
        let process_headers =
            binary.functions_with_suffix("golang.org/x/net/http2.(*serverConn).processHeaders");
        assert_eq!(process_headers.len(), 1, "{process_headers:?}");
        struct_offsets(version).unwrap();
    } else {
        eprintln!(
            "SKIP kube_apiserver (stripped): {} missing",
            stripped_path.display()
        );
    }
    if unstripped_path.exists() {
        let data = read(&unstripped_path);
        let binary = GoBinary::from_bytes(data.clone()).unwrap();
        let symbols = symtab_functions(&data);
        for name in TLS_FUNCTIONS {
            assert_eq!(
                symbols[name],
                [binary.function(name).unwrap().address],
                "{name}"
            );
        }
        let (matched, mismatched) = compare_with_symtab(&binary, &symbols);
        assert!(
            mismatched.is_empty(),
            "kube-apiserver: pclntab/symtab disagree: {mismatched:?}"
        );
        assert!(
            matched > 50_000,
            "kube-apiserver: only {matched} functions matched"
        );
        // Built together with identical flags but -s -w, the two share their layout.
        if stripped_path.exists() {
            let stripped = open(&stripped_path);
            let text_of = |data: &[u8]| {
                let file = object::File::parse(data).unwrap();
                file.section_by_name(".text")
                    .map(|text| (text.address(), text.size()))
            };
            if text_of(&read(&stripped_path)) == text_of(&data) {
                for name in TLS_FUNCTIONS {
                    assert_eq!(
                        symbols[name],
                        [stripped.function(name).unwrap().address],
                        "{name}"
                    );
                }
            } else {
                eprintln!("kube-apiserver: the stripped and unstripped builds differ in layout");
            }
        }
        let layouts = dwarf::struct_layouts(&data).unwrap();
        let table = struct_offsets(binary.go_version().unwrap()).unwrap();
        assert_eq!(table, layouts.go_offsets().unwrap());
        // The header hooks: the vendored x/net copy (no module version in a GOPATH build).
        let hooks = crate::capture::tracer::HeaderHookPoints::find(&binary).unwrap();
        assert_eq!(hooks.xnet_version, None);
        assert_eq!(hooks.offsets_source, Http2OffsetsSource::Vendored);
        let from_dwarf = layouts.http2_offsets("k8s.io/kubernetes/vendor/").unwrap();
        assert_eq!(hooks.offsets, from_dwarf);
        assert_eq!(
            layouts.members_in_order(
                "k8s.io/kubernetes/vendor/golang.org/x/net/http2/hpack.HeaderField"
            ),
            ["Name", "Value", "Sensitive"]
        );
        let write_frame = binary
            .function(
                "k8s.io/kubernetes/vendor/golang.org/x/net/http2.(*writeResHeaders).writeFrame",
            )
            .unwrap();
        let entry = |f: &GoFunction| binary.entry_probe_file_offset(f).unwrap();
        assert_eq!(hooks.write_res_headers, entry(&write_frame));
        assert_eq!(
            hooks.write_field,
            entry(
                &binary
                    .function(
                        "k8s.io/kubernetes/vendor/golang.org/x/net/http2/hpack.(*Encoder).WriteField"
                    )
                    .unwrap()
            )
        );
        // Go 1.19: no swiss-table maps, so responses come field by field.
        assert!(!hooks.response_from_header_map);
        eprintln!("kube-apiserver: HTTP/2 offsets match DWARF: {from_dwarf:?}");
    } else {
        eprintln!(
            "SKIP kube_apiserver (unstripped): {} missing",
            unstripped_path.display()
        );
    }
}

/// More toolchains, for verifying the table beyond the two on this machine:
/// `APISCOPE_EXTRA_GO_TOOLCHAINS=/path/to/go1.16/bin/go:/path/to/go1.22/bin/go`. Prints the
/// DWARF-derived offsets of each.
#[test]
fn extra_toolchains_from_env() {
    let Some(list) = std::env::var_os("APISCOPE_EXTRA_GO_TOOLCHAINS") else {
        eprintln!("SKIP extra_toolchains_from_env: APISCOPE_EXTRA_GO_TOOLCHAINS not set");
        return;
    };
    let mut failures = Vec::new();
    for go in std::env::split_paths(&list) {
        let fixture = fixtures::with_toolchain(&go).unwrap_or_else(|e| panic!("{e}"));
        let version = open(&fixture.stripped).go_version().cloned().unwrap();
        let layouts = dwarf::struct_layouts(&read(&fixture.unstripped)).unwrap();
        let from_dwarf = layouts.go_offsets();
        eprintln!(
            "{}: {:?} DWARF {from_dwarf:?}",
            fixture.go_version,
            expected_format(version.minor)
        );
        let outcome = std::panic::catch_unwind(|| {
            check_fixture(&fixture);
            if VERIFIED_GO_MINOR_VERSIONS.contains(&version.minor) {
                check_offsets_against_dwarf(&fixture);
            } else {
                assert!(
                    struct_offsets(&version).is_err(),
                    "{version}: outside the verified range"
                );
            }
        });
        if outcome.is_err() {
            failures.push(fixture.go_version.clone());
        }
    }
    assert!(failures.is_empty(), "failed: {failures:?}");
}

/// x/net versions each toolchain builds the HTTP/2 fixture with: the copy vendored in
/// Kubernetes v1.20.2, a 2023 release, and (for the newest Go only: it needs Go 1.24+) the
/// newest release verified.
const XNET_GO119: [&str; 2] = [VERIFIED_XNET_VERSIONS[0], VERIFIED_XNET_VERSIONS[1]];
const XNET_LATEST: [&str; 3] = VERIFIED_XNET_VERSIONS;

/// The HTTP/2 hooks in one fixture: found in the stripped binary from the right x/net copy,
/// their RETs as objdump shows them, and the offsets table equal to the DWARF.
fn check_http2_fixture(fixture: &fixtures::Http2Fixture) {
    let label = format!("{} x/net {}", fixture.go_version, fixture.xnet_version);
    let binary = open(&fixture.stripped);
    assert_eq!(
        binary.dependency_version("golang.org/x/net"),
        Some(fixture.xnet_version.as_str()),
        "{label}"
    );
    let hooks = crate::capture::tracer::HeaderHookPoints::find(&binary)
        .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    assert_eq!(hooks.offsets_source, Http2OffsetsSource::ModuleVersion);
    assert_eq!(
        hooks.xnet_version.as_deref(),
        Some(fixture.xnet_version.as_str())
    );
    let exact = |name: &str| {
        binary
            .function(name)
            .unwrap_or_else(|| panic!("{label}: {name} missing"))
    };
    // Entry probes sit after the stack-bound check (they fire once per call).
    let entry = |name: &str| binary.entry_probe_file_offset(&exact(name)).unwrap();
    assert_eq!(
        hooks.process_headers,
        entry("golang.org/x/net/http2.(*serverConn).processHeaders")
    );
    let write_frame = exact("golang.org/x/net/http2.(*writeResHeaders).writeFrame");
    assert_eq!(
        hooks.write_res_headers,
        entry("golang.org/x/net/http2.(*writeResHeaders).writeFrame")
    );
    assert!(hooks.write_res_headers > write_frame.file_offset, "{label}");
    // The module's encoder, not the standard library's vendored copy the bundled server uses.
    assert_eq!(
        hooks.write_field,
        entry("golang.org/x/net/http2/hpack.(*Encoder).WriteField")
    );
    assert_ne!(
        hooks.write_field,
        entry("vendor/golang.org/x/net/http2/hpack.(*Encoder).WriteField")
    );
    // Swiss-table maps from go1.24: one hit per response block, read from the header map.
    let minor = binary.go_version().unwrap().minor;
    assert_eq!(hooks.response_from_header_map, minor >= 24, "{label}");
    // RETs of writeFrame against objdump of the unstripped twin (same layout).
    let reference = objdump_rets(
        &fixture.go,
        &fixture.unstripped,
        r"^golang\.org/x/net/http2\.\(\*writeResHeaders\)\.writeFrame$",
    );
    let objdump: &Vec<u64> = reference
        .get("golang.org/x/net/http2.(*writeResHeaders).writeFrame")
        .unwrap_or_else(|| panic!("{label}: objdump: {reference:?}"));
    let ours: Vec<u64> = hooks
        .write_res_headers_returns
        .iter()
        .map(|offset| offset - write_frame.file_offset + write_frame.address)
        .collect();
    assert!(!ours.is_empty(), "{label}");
    assert_eq!(
        &ours, objdump,
        "{label}: RETs of writeResHeaders.writeFrame"
    );

    let layouts = dwarf::struct_layouts(&read(&fixture.unstripped)).unwrap();
    let from_dwarf = layouts
        .http2_offsets("")
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(
        hooks.offsets, from_dwarf,
        "{label}: HTTP/2 offsets table disagrees with DWARF"
    );
    // WriteField's `f HeaderField` arrives split over registers in member order, each string as
    // (pointer, length): the eBPF side relies on exactly Name, Value, Sensitive.
    assert_eq!(
        layouts.members_in_order("golang.org/x/net/http2/hpack.HeaderField"),
        ["Name", "Value", "Sensitive"],
        "{label}"
    );
    eprintln!("{label}: HTTP/2 offsets match DWARF: {from_dwarf:?}");
}

#[test]
fn http2_offsets_match_dwarf_go119() {
    for xnet in XNET_GO119 {
        if let Some(fixture) = fixtures::http2(
            Path::new(fixtures::DEBIAN_GO_119),
            xnet,
            "http2_offsets_match_dwarf_go119",
        ) {
            check_http2_fixture(&fixture);
        }
    }
}

#[test]
fn http2_offsets_match_dwarf_latest() {
    for xnet in XNET_LATEST {
        if let Some(fixture) =
            fixtures::http2(Path::new("go"), xnet, "http2_offsets_match_dwarf_latest")
        {
            check_http2_fixture(&fixture);
        }
    }
}

/// From Go 1.27 x/net's `http2.ConfigureServer` wraps the standard library's own server
/// (`net/http/internal/http2`, x/net's code moved there, with the standard library's vendored
/// hpack): the hooks go there, with offsets keyed by the Go release, equal to its DWARF.
#[test]
fn std_http2_offsets_match_dwarf_go127() {
    let test = "std_http2_offsets_match_dwarf_go127";
    let go = match fixtures::proxy_toolchain(fixtures::PROXY_GO) {
        Ok(go) => go,
        Err(why) if !fixtures::tools_required() => {
            eprintln!("SKIP {test}: {why}");
            return;
        }
        Err(why) => panic!("{test}: {why}"),
    };
    let Some(fixture) = fixtures::http2(&go, VERIFIED_XNET_VERSIONS[2], test) else {
        return;
    };
    let label = format!("{} x/net {}", fixture.go_version, fixture.xnet_version);
    let binary = open(&fixture.stripped);
    assert!(
        binary
            .functions_with_suffix("golang.org/x/net/http2.(*serverConn).processHeaders")
            .is_empty(),
        "{label}: x/net's own server is linked in"
    );
    let hooks = crate::capture::tracer::HeaderHookPoints::find(&binary)
        .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    assert_eq!(hooks.offsets_source, Http2OffsetsSource::StandardLibrary);
    let entry = |name: &str| {
        let function = binary
            .function(name)
            .unwrap_or_else(|| panic!("{label}: {name} missing"));
        binary.entry_probe_file_offset(&function).unwrap()
    };
    assert_eq!(
        hooks.process_headers,
        entry("net/http/internal/http2.(*serverConn).processHeaders")
    );
    assert_eq!(
        hooks.write_res_headers,
        entry("net/http/internal/http2.(*writeResHeaders).writeFrame")
    );
    // The standard library's vendored encoder, which its server writes with.
    assert_eq!(
        hooks.write_field,
        entry("vendor/golang.org/x/net/http2/hpack.(*Encoder).WriteField")
    );
    assert!(hooks.response_from_header_map, "{label}");
    let layouts = dwarf::struct_layouts(&read(&fixture.unstripped)).unwrap();
    let from_dwarf = layouts
        .http2_offsets_in(
            "net/http/internal/http2",
            "vendor/golang.org/x/net/http2/hpack",
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(
        hooks.offsets, from_dwarf,
        "{label}: standard-library HTTP/2 offsets disagree with DWARF"
    );
    assert_eq!(
        layouts.members_in_order("vendor/golang.org/x/net/http2/hpack.HeaderField"),
        ["Name", "Value", "Sensitive"],
        "{label}"
    );
}

/// A server on net/http's bundled HTTP/2 only (the TLS fixture) has no x/net `serverConn`: no
/// header hooks, and the standard library's own hpack copy is not taken for one.
#[test]
fn no_header_hooks_without_xnet_server() {
    let Some(fixture) = fixtures::latest("no_header_hooks_without_xnet_server") else {
        return;
    };
    let binary = open(&fixture.stripped);
    let error = crate::capture::tracer::HeaderHookPoints::find(&binary).unwrap_err();
    assert!(
        format!("{error:#}").contains("processHeaders not found"),
        "{error:#}"
    );
}
