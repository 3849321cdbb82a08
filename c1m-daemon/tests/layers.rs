//! The dependency rule of `c1m-daemon`, enforced: imports go down the
//! layers written in the README (Development, "Layers"), never up, never
//! sideways between rooms of one layer, and no files import each other
//! in a circle. A rule that is only written down drifts within
//! weeks; this test reads every `use crate::…`/`use super::…` line (and
//! `crate::x::` paths in code) of `src/` and fails naming the import.
//!
//! `C1M_LAYERS_SRC=/some/old/src cargo test -p c1m-daemon --test layers`
//! checks another copy of the sources (e.g. an older commit's).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Rooms (top-level modules of `src/`) by layer, lowest first. A room may
/// import rooms of lower layers only; the crate root (`lib.rs`, `main.rs`)
/// is above them all.
const LAYERS: &[&[&str]] = &[
    &["exit", "human", "runtime"],
    &["system"],
    &["model"],
    &["analysis", "ebpf"],
    &["monitor", "loadgen"],
    &["api", "parsers"],
    &["cli"],
    &["commands"],
];

#[test]
fn imports_go_down_the_layers_without_cycles() {
    let src = std::env::var_os("C1M_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let problems = check(&src);
    assert!(
        problems.is_empty(),
        "{} import(s) break the dependency rule (README, Development):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_checker_catches_an_upward_import_and_a_cycle() {
    let dir = std::env::temp_dir().join(format!("c1m-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in [
        ("lib.rs", "mod model;\nmod commands;\nmod ebpf;\n"),
        ("model/mod.rs", "use crate::commands::EXIT;\n"),
        ("commands/mod.rs", "pub const EXIT: u8 = 4;\n"),
        ("ebpf/mod.rs", "mod a;\nmod b;\n"),
        ("ebpf/a.rs", "use super::b::B;\npub struct A;\n"),
        (
            "ebpf/b.rs",
            "pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\nfn f() { crate::ebpf::a::A; }\n",
        ),
    ] {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    let problems = check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("model -> commands"), "{problems:#?}");
    assert!(
        problems[1].contains("cycle: ebpf::a -> ebpf::b -> ebpf::a"),
        "{problems:#?}"
    );
}

/// Every violation under `src`, one line each.
fn check(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    collect(src, src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let layer_of: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, rooms)| rooms.iter().map(move |r| (*r, i)))
        .collect();
    let mut problems = Vec::new();
    let mut unknown = BTreeSet::new();
    let mut edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let file = path.strip_prefix(src).unwrap().display().to_string();
        for (line, target) in imports(module, &text) {
            let Some(to) = resolve(&modules, &target) else {
                continue;
            };
            if &to == module || module.starts_with(&to) {
                // Itself, or its own parent `mod.rs` (the room's front door).
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .entry(to.clone())
                .or_insert_with(|| format!("{file}:{line}"));
            let (Some(from_room), Some(to_room)) = (module.first(), to.first()) else {
                continue; // the crate root imports anything
            };
            if from_room == to_room {
                continue;
            }
            let (Some(&from_layer), Some(&to_layer)) = (
                layer_of.get(from_room.as_str()),
                layer_of.get(to_room.as_str()),
            ) else {
                for room in [from_room, to_room] {
                    if !layer_of.contains_key(room.as_str()) && unknown.insert(room.clone()) {
                        problems.push(format!("{file}:{line}: room `{room}` is in no layer"));
                    }
                }
                continue;
            };
            if to_layer >= from_layer {
                problems.push(format!(
                    "{file}:{line}: {from_room} -> {to_room} ({}) goes {} a layer",
                    to.join("::"),
                    if to_layer == from_layer {
                        "across"
                    } else {
                        "up"
                    }
                ));
            }
        }
    }
    problems.extend(cycles(&edges));
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

/// `(module path, file)` of every `.rs` file under `dir`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(Vec<String>, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            out.push((module, path));
        }
    }
}

/// Absolute module paths (`["model", "report", "Report"]`) this file's
/// code names, with their line numbers: `use` trees starting at `crate`,
/// `super` or `self`, and `crate::`/`super::` paths anywhere in code.
fn imports(module: &[String], text: &str) -> Vec<(usize, Vec<String>)> {
    let code = strip_comments_and_strings(text);
    let mut found = Vec::new();
    // Depth of inline modules (`mod tests { … }`), where `super` is the file.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut chars = code.char_indices().peekable();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    while let Some((at, c)) = chars.next() {
        match c {
            '{' => {
                let before = code[..at].trim_end();
                let last_line = before.rsplit('\n').next().unwrap_or("");
                let words: Vec<&str> = last_line.split_whitespace().collect();
                if words.len() >= 2 && words[words.len() - 2] == "mod" {
                    inline_mods.push(depth);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if inline_mods.last() == Some(&depth) {
                    inline_mods.pop();
                }
            }
            _ => {}
        }
        let rest = &code[at..];
        let boundary = at == 0 || {
            let p = code[..at].chars().next_back().unwrap();
            !(p.is_alphanumeric() || p == '_' || p == ':')
        };
        if !boundary {
            continue;
        }
        // The module `super` names here: the file's parent, or the file
        // itself inside an inline module.
        let base: Vec<String> = if inline_mods.is_empty() {
            module[..module.len().saturating_sub(1)].to_vec()
        } else {
            module.to_vec()
        };
        let statement = if let Some(tree) = rest.strip_prefix("use ") {
            tree.split(';').next().unwrap_or("")
        } else if rest.starts_with("crate::") || rest.starts_with("super::") {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            &rest[..end]
        } else {
            continue;
        };
        for path in expand(statement) {
            let absolute = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let mut base = base.clone();
                    let mut rest = &path[..];
                    while rest.first().map(String::as_str) == Some("super") {
                        rest = &rest[1..];
                        if rest.first().map(String::as_str) == Some("super") {
                            base.pop();
                        }
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                Some("self") => {
                    let mut here = module.to_vec();
                    here.extend(path[1..].iter().cloned());
                    here
                }
                _ => continue,
            };
            found.push((line_of(at), absolute));
        }
        // Skip the rest of the statement or path so it is not read again
        // (its braces are a use tree's, not a block's).
        let skip = if rest.starts_with("use ") {
            "use ".len() + statement.len()
        } else {
            statement.len()
        };
        for _ in 1..rest[..skip].chars().count() {
            chars.next();
        }
    }
    found
}

/// `a::{b, c::{d, e}}` → `[a,b]`, `[a,c,d]`, `[a,c,e]` (aliases dropped).
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn go(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let mut head: Vec<String> = prefix.to_vec();
            head.extend(segments(&tree[..open]));
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&head, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&head, &inner[start..], out);
        } else if !tree.is_empty() {
            let mut path = prefix.to_vec();
            path.extend(segments(tree.split(" as ").next().unwrap_or(tree)));
            out.push(path);
        }
    }
    fn segments(text: &str) -> Vec<String> {
        text.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
            .map(str::to_owned)
            .collect()
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// Code without comments, string and char literals (newlines kept, so
/// line numbers stay right).
fn strip_comments_and_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") || rest.starts_with("br\"") {
            let open = rest.find('"').unwrap();
            let hashes = &rest[rest.find('r').unwrap() + 1..open];
            let close = format!("\"{hashes}");
            let end = rest[open + 1..]
                .find(&close)
                .map_or(rest.len(), |e| open + 1 + e + close.len());
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with("'\\")
            || (rest.len() >= 3 && rest.as_bytes()[2] == b'\'') && rest.starts_with('\'')
        {
            // A char literal ('{', '\n', '\''); lifetimes have no closing quote.
            let end = rest[1..]
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '\'')
                .map_or(1, |(e, _)| e + 2);
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every cycle among files, once, as `a -> b -> a`.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut out = Vec::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    let mut key: Vec<_> = path.clone();
                    key.sort();
                    if found.insert(key) {
                        let names: Vec<String> =
                            path.iter().chain([start]).map(|m| m.join("::")).collect();
                        let at: Vec<&str> = path
                            .iter()
                            .zip(path.iter().skip(1).chain([start]))
                            .map(|(a, b)| edges[a][b].as_str())
                            .collect();
                        out.push(format!(
                            "cycle: {} (at {})",
                            names.join(" -> "),
                            at.join(", ")
                        ));
                    }
                } else if !path.contains(next) && next > start {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    out
}
