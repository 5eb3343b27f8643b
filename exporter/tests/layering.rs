//! The shape of the data path, checked: every stage imports only the stages below it, and no two
//! files import each other (directly or round a loop). See docs/architecture.md.
//!
//! It reads the `use` declarations and the `crate::`/`super::` paths in code of every file under
//! `src/`, resolves each to the file that defines the name (following `pub use` re-exports), and
//! fails naming the file, the line and the rule broken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The stages, lowest first. A file may import its own stage and any stage before it.
const STAGES: &[&str] = &[
    "vocabulary",
    "capture",
    "record",
    "reassembly",
    "http",
    "exchange",
    "k8s",
    "filter",
    "policy",
    "pipeline",
    "sinks",
    // Reads what the sinks sent to Kafka back into requests for the live view.
    "relay",
    // The commands wired together: may use every stage.
    "app",
];

#[test]
fn imports_point_down_the_data_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    assert!(
        files.len() > 50,
        "read only {} files under src/",
        files.len()
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "the data path's shape is broken:\n{}",
        problems.join("\n")
    );
}

/// The checker catches what it is for: an upward import and a cycle between files.
#[test]
fn upward_imports_and_cycles_are_reported() {
    let files: BTreeMap<String, String> = [
        (
            "lib.rs",
            "pub mod vocabulary;\npub mod http;\npub mod k8s;\n",
        ),
        ("vocabulary/mod.rs", "pub struct Role;\n"),
        (
            "http/mod.rs",
            "mod a;\nmod b;\npub use a::Event;\nuse crate::vocabulary::Role;\n",
        ),
        ("http/a.rs", "use super::b::Limits;\npub struct Event;\n"),
        (
            "http/b.rs",
            "pub struct Limits;\nfn f() { let _ = super::a::Event; }\n",
        ),
        ("k8s/mod.rs", "use crate::http::Event;\npub struct Api;\n"),
        (
            "vocabulary/bad.rs",
            "use crate::{http::{self, Event}, k8s::Api};\n",
        ),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_owned(), text.to_owned()))
    .collect();
    let problems = check(&files).join("\n");
    assert!(
        problems.contains("vocabulary/bad.rs:1: vocabulary imports http (http/a.rs)"),
        "{problems}"
    );
    assert!(
        problems.contains("vocabulary/bad.rs:1: vocabulary imports k8s (k8s/mod.rs)"),
        "{problems}"
    );
    assert!(
        problems.contains("cycle: http/a.rs -> http/b.rs -> http/a.rs"),
        "{problems}"
    );
    // The re-export is followed to the defining file: k8s -> http/a.rs, not http/mod.rs.
    assert!(!problems.contains("k8s/mod.rs:"), "{problems}");
}

fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(relative, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// A module path (`["http", "http2"]`), from a file path relative to `src/`.
fn module_of(file: &str) -> Vec<String> {
    let trimmed = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

struct Tree<'a> {
    /// Module path -> file.
    modules: BTreeMap<Vec<String>, &'a str>,
    /// File -> (exported name -> the path it re-exports, absolute).
    reexports: BTreeMap<&'a str, BTreeMap<String, Vec<String>>>,
}

/// One reference from a file to a path, with the line it is on.
struct Reference {
    line: usize,
    path: Vec<String>,
    /// In `#[cfg(test)]` code: tests may drive a stage through its entry point from inside a
    /// file that entry point uses, so test code counts for the stage rule, not for cycles.
    test: bool,
}

fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let files: BTreeMap<&str, &str> = files
        .iter()
        .filter(|(path, _)| path.as_str() != "main.rs")
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let mut tree = Tree {
        modules: files.keys().map(|f| (module_of(f), *f)).collect(),
        reexports: BTreeMap::new(),
    };
    let test_modules = test_modules(&files);
    let mut references = BTreeMap::new();
    for (file, text) in &files {
        let module = module_of(file);
        let test_file = test_modules.iter().any(|m| module.starts_with(m));
        let (refs, reexports) = references_of(&tree, file, text, test_file);
        references.insert(*file, refs);
        tree.reexports.insert(file, reexports);
    }
    let mut problems = Vec::new();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (file, refs) in &references {
        let stage = module_of(file).first().cloned().unwrap_or_default();
        for reference in refs {
            let Some(target) = resolve(&tree, &reference.path, 0) else {
                continue;
            };
            if target == *file {
                continue;
            }
            if !reference.test {
                edges.entry(file).or_default().insert(target);
            }
            let target_stage = module_of(target).first().cloned().unwrap_or_default();
            let rank = |s: &str| STAGES.iter().position(|x| *x == s);
            if let (Some(from), Some(to)) = (rank(&stage), rank(&target_stage)) {
                if to > from {
                    problems.push(format!(
                        "{file}:{}: {stage} imports {target_stage} ({target})",
                        reference.line
                    ));
                }
            } else if rank(&stage).is_none() && !stage.is_empty() {
                problems.push(format!("{file}: {stage} is not a stage of the data path"));
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems.extend(cycles(&edges));
    problems
}

/// The paths a file refers to, and the names it re-exports.
fn references_of(
    tree: &Tree,
    file: &str,
    text: &str,
    test_file: bool,
) -> (Vec<Reference>, BTreeMap<String, Vec<String>>) {
    let module = module_of(file);
    let mut refs = Vec::new();
    let mut reexports = BTreeMap::new();
    let mut inline_module = false;
    let mut inline_test = false;
    let mut after_cfg_test = false;
    let mut pending_use: Option<(usize, bool, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        // rustfmt puts a top-level item's closing brace in column 0.
        if !line.starts_with(' ') && !line.is_empty() {
            if line == "}" {
                inline_module = false;
                inline_test = false;
            } else if is_inline_module(line) {
                inline_module = true;
                inline_test = after_cfg_test;
            }
            after_cfg_test = line.trim() == "#[cfg(test)]";
        }
        let test = test_file || (inline_test && line.starts_with(' '));
        // Inside an inline module (tests), `super` is the file's own module.
        let here: Vec<String> = if inline_module && line.starts_with(' ') {
            let mut m = module.clone();
            m.push("#inline".to_owned());
            m
        } else {
            module.clone()
        };
        if let Some((start, public, mut statement)) = pending_use.take() {
            statement.push_str(trimmed);
            if statement.contains(';') {
                finish_use(
                    tree,
                    &here,
                    (start, test),
                    public,
                    &statement,
                    &mut refs,
                    &mut reexports,
                );
            } else {
                pending_use = Some((start, public, statement));
            }
            continue;
        }
        let use_start = trimmed
            .strip_prefix("pub use ")
            .map(|s| (true, s))
            .or_else(|| trimmed.strip_prefix("pub(crate) use ").map(|s| (true, s)))
            .or_else(|| trimmed.strip_prefix("use ").map(|s| (false, s)));
        if let Some((public, rest)) = use_start {
            if rest.contains(';') {
                finish_use(
                    tree,
                    &here,
                    (number, test),
                    public,
                    rest,
                    &mut refs,
                    &mut reexports,
                );
            } else {
                pending_use = Some((number, public, rest.to_owned()));
            }
            continue;
        }
        for path in code_paths(line) {
            if let Some(absolute) = absolute(tree, &here, &path) {
                refs.push(Reference {
                    line: number,
                    path: absolute,
                    test,
                });
            }
        }
    }
    (refs, reexports)
}

/// Modules declared under `#[cfg(test)]` (`mod tests;`): their files, and those below, are test code.
fn test_modules(files: &BTreeMap<&str, &str>) -> Vec<Vec<String>> {
    let mut modules = Vec::new();
    for (file, text) in files {
        let mut after_cfg_test = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if after_cfg_test {
                let declared = trimmed
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ")
                    .strip_prefix("mod ")
                    .and_then(|rest| rest.strip_suffix(';'));
                if let Some(name) = declared {
                    let mut module = module_of(file);
                    module.push(name.to_owned());
                    modules.push(module);
                }
            }
            after_cfg_test = trimmed == "#[cfg(test)]";
        }
    }
    modules
}

fn is_inline_module(line: &str) -> bool {
    let line = line
        .trim_start_matches("pub(crate) ")
        .trim_start_matches("pub ");
    line.starts_with("mod ") && line.trim_end().ends_with('{')
}

fn finish_use(
    tree: &Tree,
    here: &[String],
    (line, test): (usize, bool),
    public: bool,
    statement: &str,
    refs: &mut Vec<Reference>,
    reexports: &mut BTreeMap<String, Vec<String>>,
) {
    let body = statement.split(';').next().unwrap_or_default();
    let body = normalise_use(body);
    for (path, alias) in expand_use_tree(&body) {
        let Some(absolute) = absolute(tree, here, &path) else {
            continue;
        };
        if public {
            let name = alias.or_else(|| path.last().cloned()).unwrap_or_default();
            if name != "*" && name != "self" {
                reexports.insert(name, absolute.clone());
            }
            // A module re-exporting its own children shows its public face; users are
            // pointed through to the child, so this is no dependency of the module's code.
            if absolute.starts_with(&file_module(here)) {
                continue;
            }
        }
        refs.push(Reference {
            line,
            path: absolute,
            test,
        });
    }
}

/// `a::{b, c::{d as e}}` -> `[a, b]`, `[a, c, d] as e`.
fn expand_use_tree(text: &str) -> Vec<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    expand_into(text, &[], &mut out);
    out
}

fn expand_into(text: &str, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let text = text.trim_matches(':');
    if let Some(open) = text.find('{') {
        let head: Vec<String> = text[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &text[open + 1..text.rfind('}').unwrap_or(text.len())];
        for part in split_top_level(inner) {
            let part = part.trim();
            if part == "self" {
                out.push((base.clone(), None));
            } else if !part.is_empty() {
                expand_into(part, &base, out);
            }
        }
        return;
    }
    let (path, alias) = match text.split_once(" as ") {
        Some((path, alias)) => (path, Some(alias.trim().to_owned())),
        None => (text, None),
    };
    let mut full = prefix.to_vec();
    full.extend(
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    out.push((full, alias));
}

/// One line, no space around `::`, braces and commas, so `a::{ b as c, d }` reads
/// `a::{b as c,d}`.
fn normalise_use(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        let joins = |c: Option<char>| matches!(c, Some(':' | '{' | '}' | ','));
        if !out.is_empty() && !joins(out.chars().last()) && !joins(word.chars().next()) {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// `crate::a::b` and `super::c` paths in a line of code (not in its trailing comment).
fn code_paths(line: &str) -> Vec<Vec<String>> {
    let code = line.split("//").next().unwrap_or_default();
    let mut paths = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                paths.push(
                    tail[..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            rest = &tail[end.max(1)..];
        }
    }
    paths
}

/// A path made absolute (from the crate root), or `None` for other crates and `std`.
fn absolute(tree: &Tree, here: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        // A bare path starting with a child module of this file's module (`use decoder::X`).
        Some(first) => {
            let mut child = file_module(here);
            child.push(first.to_owned());
            if !tree.modules.contains_key(&child) {
                return None;
            }
            base = file_module(here);
        }
        None => return None,
    }
    let mut out = file_module(&base);
    out.extend(rest.iter().cloned());
    Some(out)
}

/// The module a position is in, inline modules dropped (their names are not files).
fn file_module(module: &[String]) -> Vec<String> {
    module.iter().filter(|s| *s != "#inline").cloned().collect()
}

/// The file defining what an absolute path names: the deepest module on it, then through that
/// module's re-exports.
fn resolve<'a>(tree: &Tree<'a>, path: &[String], depth: usize) -> Option<&'a str> {
    let mut module: Vec<String> = Vec::new();
    let mut index = 0;
    while index < path.len() {
        let mut next = module.clone();
        next.push(path[index].clone());
        if tree.modules.contains_key(&next) {
            module = next;
            index += 1;
        } else {
            break;
        }
    }
    let file = *tree.modules.get(&module)?;
    if let Some(name) = path.get(index) {
        if let Some(target) = tree.reexports.get(file).and_then(|r| r.get(name)) {
            if depth < 8 && target.as_slice() != path {
                return resolve(tree, target, depth + 1).or(Some(file));
            }
        }
    }
    Some(file)
}

/// Every cycle between files, each named once by its files in order.
fn cycles(edges: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first from each file, looking for paths back to it through larger names only,
        // so each cycle is reported once, from its smallest file.
        let mut stack = vec![(*start, vec![*start])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(node).into_iter().flatten() {
                if next == start {
                    let mut names = path.clone();
                    names.push(start);
                    found.insert(format!("cycle: {}", names.join(" -> ")));
                } else if next > start && seen.insert(*next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push((next, longer));
                }
            }
        }
    }
    found.into_iter().collect()
}
