//! The layer rule of `docs/architecture.md`, held by reading the source: every path into
//! another top-level module of the library (`crate::x::…`, or `super::` chains that climb out of
//! a module) must be an edge the rule allows. A forbidden edge fails with the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which top-level modules each module may use, bottom first. A module always may use itself;
/// a module missing from this table is an error (add it at its layer).
const ALLOWED: &[(&str, &[&str])] = &[
    ("types", &[]),
    ("decode", &[]),
    ("synth", &["decode"]),
    ("flow", &["types", "decode"]),
    ("context", &["types"]),
    ("names", &["types", "decode", "flow", "synth"]),
    ("output", &["types", "names", "context"]),
    ("capture", &["types", "decode", "synth"]),
    ("config", &["types", "context", "output"]),
    (
        "engine",
        &[
            "types", "decode", "synth", "flow", "context", "names", "output", "capture", "config",
        ],
    ),
];

/// The library's top-level modules (the binary's `cli` is above all of them).
fn top_modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read source directory") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`src/flow/conn.rs` → `[flow, conn]`,
/// `src/flow/mod.rs` → `[flow]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// Top-level modules a line of code names: `crate::x` directly, or a chain of `super::` that
/// climbs from `here` (the file's module path) to the crate root and names `x` after it.
fn referenced(line: &str, here: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && rest.starts_with("crate::") {
            found.push(ident(&rest["crate::".len()..]));
            i += "crate::".len();
        } else if boundary && rest.starts_with("super::") {
            let mut depth = here.len();
            let mut r = rest;
            while let Some(t) = r.strip_prefix("super::") {
                depth = depth.saturating_sub(1);
                r = t;
            }
            if depth == 0 {
                found.push(ident(r));
            }
            i += rest.len() - r.len();
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

#[test]
fn no_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tops = top_modules(&src);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for m in &tops {
        assert!(
            allowed.contains_key(m.as_str()),
            "module `{m}` (src/lib.rs) has no row in tests/layers.rs's ALLOWED: add it at its layer \
             and to docs/architecture.md"
        );
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges = 0;
    for file in &files {
        let here = module_path(&src, file);
        let Some(top) = here.first() else { continue };
        let Some(may) = allowed.get(top.as_str()) else {
            // main.rs, the binary's cli/ and bin/: above every library module.
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for target in referenced(code, &here) {
                if !tops.contains(&target) || &target == top {
                    continue;
                }
                edges += 1;
                if !may.contains(&target.as_str()) {
                    violations.push(format!(
                        "{}:{}: `{top}` uses `{target}`: {}",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        code.trim()
                    ));
                }
            }
        }
    }
    assert!(
        edges > 50,
        "found only {edges} cross-module paths: is the scan broken?"
    );
    assert!(
        violations.is_empty(),
        "forbidden imports (the layer rule is in docs/architecture.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scan_sees_crate_and_super_paths() {
    let here = ["flow".to_string(), "conn".to_string()];
    assert_eq!(
        referenced("use crate::output::record::X;", &here),
        ["output"]
    );
    assert_eq!(
        referenced("use super::super::engine::Y;", &here),
        ["engine"]
    );
    assert!(referenced("use super::key::FlowKey;", &here).is_empty());
    assert_eq!(
        referenced(
            "let x = crate::names::Name::new(b\"a\"); notcrate::x",
            &here
        ),
        ["names"]
    );
}
