//! The house rules of `src/`, checked on every `cargo test`: no file imports one that imports it
//! back (directly or around a longer loop), and every import between parts points down the order
//! that `src/lib.rs`'s opening comment states. The order is read from that comment, so the
//! comment and the code cannot drift apart.
//!
//! `cargo test --test layout -- --nocapture` prints the import graph by part.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

type Module = Vec<String>;

/// Every `.rs` file under `src/`, keyed by its module path (`["token", "claims"]`; `[]` for lib.rs).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        for entry in fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let mut module: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The code of a file as the compiler sees it for the library: comments, string literals and the
/// `#[cfg(test)] mod tests` block removed (tests may reach anywhere; the house is what ships).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if text[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if text[i..].starts_with("/*") {
            i += text[i..].find("*/").map_or(bytes.len() - i, |end| end + 2);
        } else if bytes[i] == b'"' && !text[..i].ends_with('\'') {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    match out.find("#[cfg(test)]\nmod tests") {
        Some(at) => out[..at].to_owned(),
        None => out,
    }
}

/// Every path a file names: `use` trees expanded (`crate::{a::{self, B}, c}` gives `crate::a`,
/// `crate::a::B`, `crate::c`), and inline paths such as `crate::json::parse(…)`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"].iter().find(|head| code[i..].starts_with(**head));
        let at_word = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != b':';
        match starts {
            Some(head) if at_word => {
                let (tree, end) = use_tree(code, i + head.len() - 2);
                for mut rest in tree {
                    rest.insert(0, head.trim_end_matches("::").to_owned());
                    found.push(rest);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    found
}

/// Reads `::a::b`, `::{…}` or `::a::{…}` at `at` (which points at `::`), returning every leaf path.
fn use_tree(code: &str, mut at: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = code.as_bytes();
    let mut prefix = Vec::new();
    while code[at..].starts_with("::") {
        at += 2;
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if bytes.get(at) == Some(&b'{') {
            let mut leaves = Vec::new();
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return (leaves, at + 1);
                }
                let start = at;
                while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                    at += 1;
                }
                let name = code[start..at].to_owned();
                let (inner, end) = if code[at..].starts_with("::") { use_tree(code, at) } else { (vec![vec![]], at) };
                for mut leaf in inner {
                    if name != "self" {
                        leaf.insert(0, name.clone());
                    }
                    let mut full = prefix.clone();
                    full.extend(leaf);
                    leaves.push(full);
                }
                at = end;
                // Skip `as alias` and anything else up to the next item.
                while at < bytes.len() && !matches!(bytes[at], b',' | b'}') {
                    at += 1;
                }
                if at == start {
                    at += 1;
                }
            }
        }
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if start == at {
            break;
        }
        prefix.push(code[start..at].to_owned());
    }
    (vec![prefix], at)
}

/// The file a path refers to: the longest prefix of it that is a module, other than `from` itself.
fn resolve(from: &Module, path: &[String], files: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut full: Module = match path[0].as_str() {
        "crate" => Vec::new(),
        "self" => from.clone(),
        _ => from[..from.len().saturating_sub(1)].to_vec(),
    };
    let base = full.len();
    full.extend(path[1..].iter().cloned());
    (base..=full.len()).rev().map(|k| full[..k].to_vec()).find(|m| files.contains_key(m) && m != from)
}

/// The file-level import graph of `src/`.
fn graph() -> (BTreeMap<Module, BTreeSet<Module>>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = modules(&root.join("src"));
    let mut edges = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).expect("a source file is readable");
        let targets: BTreeSet<Module> =
            paths(&code(&text)).iter().filter_map(|p| resolve(module, p, &files)).filter(|t| !t.is_empty()).collect();
        edges.insert(module.clone(), targets);
    }
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs is readable");
    (edges, lib)
}

/// The parts in the order `src/lib.rs` states, top first: each numbered line of its opening comment
/// names one rank's parts in backticks (`` `token/` ``, `` `config::vars` ``, `` `http` ``).
fn ranks(lib: &str) -> Vec<Vec<String>> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! "))
        .filter(|line| {
            line.split_once(". ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|line| {
            let names = line.split_once(" — ").map_or(line, |(names, _)| names);
            names
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|name| name.trim_end_matches('/').replace("::", "/"))
                .collect::<Vec<_>>()
        })
        .filter(|names| !names.is_empty())
        .collect()
}

/// The part a module belongs to: its folder, or `config/vars` for the typed reader under `config`.
fn part(module: &Module) -> String {
    match module.as_slice() {
        [config, vars] if config == "config" && vars == "vars" => "config/vars".into(),
        [first, ..] => first.clone(),
        [] => "lib".into(),
    }
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("/")
    }
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let (edges, _) = graph();
    // A depth-first walk; a grey node met again is a loop, reported with its path.
    fn visit(
        node: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, bool>,
        stack: &mut Vec<Module>,
        loops: &mut Vec<String>,
    ) {
        state.insert(node.clone(), false);
        stack.push(node.clone());
        for next in &edges[node] {
            match state.get(next) {
                None => visit(next, edges, state, stack, loops),
                Some(false) => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle: Vec<String> = stack[from..].iter().map(name).collect();
                    cycle.push(name(next));
                    loops.push(cycle.join(" → "));
                }
                Some(true) => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), true);
    }
    let (mut state, mut loops) = (BTreeMap::new(), Vec::new());
    for node in edges.keys() {
        if !state.contains_key(node) {
            visit(node, &edges, &mut state, &mut Vec::new(), &mut loops);
        }
    }
    assert!(loops.is_empty(), "import loops in src/:\n  {}", loops.join("\n  "));
}

#[test]
fn every_import_between_parts_points_down_the_order_lib_rs_states() {
    let (edges, lib) = graph();
    let ranks = ranks(&lib);
    assert!(ranks.len() >= 5, "src/lib.rs's opening comment lists the parts in order, one numbered line per rank");
    let rank_of = |part: &str| ranks.iter().position(|names| names.iter().any(|n| n == part));
    let mut wrong = Vec::new();
    let mut by_part: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &edges {
        let from_part = part(from);
        if from_part == "lib" {
            continue;
        }
        let from_rank = rank_of(&from_part);
        if from_rank.is_none() {
            wrong.push(format!("{} is in part `{from_part}`, which src/lib.rs does not list", name(from)));
        }
        for to in targets {
            let to_part = part(to);
            if to_part == from_part {
                continue;
            }
            by_part.entry(from_part.clone()).or_default().insert(to_part.clone());
            if let (Some(a), Some(b)) = (from_rank, rank_of(&to_part)) {
                if a >= b {
                    wrong.push(format!("{} imports {} (`{from_part}` may not use `{to_part}`)", name(from), name(to)));
                }
            }
        }
    }
    for (from, to) in &by_part {
        println!("{from} → {}", to.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert!(wrong.is_empty(), "imports against the order in src/lib.rs:\n  {}", wrong.join("\n  "));
}

#[test]
fn the_checker_sees_use_trees_inline_paths_and_loops() {
    let code = code(
        "use crate::{a::{self, B}, c::d as e};\nfn f() { crate::g::h(); super::i::j; \"crate::k::l\" }\n\
         // crate::m\n#[cfg(test)]\nmod tests { use crate::n; }",
    );
    let mut found: Vec<String> = paths(&code).iter().map(|p| p.join("::")).collect();
    found.sort();
    assert_eq!(found, ["crate::a", "crate::a::B", "crate::c::d", "crate::g::h", "super::i::j"]);
    let ranks = ranks("//! 1. `edge/` — x\n//! 2. `keys/`, `dpop/` — y\n//! 3. `config::vars`\n//! not a rank");
    assert_eq!(ranks, [vec!["edge"], vec!["keys", "dpop"], vec!["config/vars"]]);
}
