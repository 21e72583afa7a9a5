//! The source tree's layering, checked: each folder of `src/` imports only
//! the folders below it (so there is no import cycle between folders), and
//! planning imports nothing privileged. Reads the sources; needs no root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each folder and the folders it may import. The crate root's re-exports
/// (`crate::Error`, `crate::Nsnet`, ...) count as `api`; `error_chain` is a
/// root helper anyone may use. Front ends (`topology`, `cni`, `agent`, `docker`,
/// `netavark`, `ui`) go through `api` and speak `model`.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let below = |v: &[&'static str]| v.to_vec();
    BTreeMap::from([
        ("model", below(&[])),
        ("kernel", below(&["model"])),
        ("firewall", below(&["model", "kernel"])),
        ("plan", below(&["model", "firewall::rules"])),
        ("store", below(&["model"])),
        ("cluster", below(&["model"])),
        ("dns", below(&["model", "store", "kernel"])),
        ("host", below(&["plan", "model", "kernel", "firewall"])),
        ("apply", below(&["host", "plan", "model"])),
        (
            "check",
            below(&[
                "host",
                "plan",
                "model",
                "kernel",
                "firewall::rules",
                "firewall::drift",
            ]),
        ),
        (
            "api",
            below(&[
                "check", "apply", "host", "plan", "store", "cluster", "dns", "model", "kernel",
                "firewall",
            ]),
        ),
        ("agent", below(&["api", "model"])),
        ("topology", below(&["api", "model"])),
        ("cni", below(&["api", "model"])),
        ("docker", below(&["api", "model"])),
        ("netavark", below(&["api", "model"])),
        ("ui", below(&["api", "model"])),
    ])
}

/// What the binary (`main.rs` and `cli/`) may name of the library: the
/// door, the values, and the front ends it hands a process to.
const BINARY_MAY_USE: [&str; 8] = [
    "api", "model", "topology", "cni", "agent", "docker", "netavark", "ui",
];

/// The crate paths a file names: `crate::a::b` and `use crate::{a, b::c}`.
fn imports(text: &str) -> BTreeSet<String> {
    paths_after(text, "crate::")
}

/// The paths a file names after `prefix` (`crate::` inside the library,
/// `nsnet::` in the binary), grouped imports included.
fn paths_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find(prefix) {
        // `nsnet::` inside a longer word (`my_nsnet::`) is not the crate.
        let word_before = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[i + prefix.len()..];
        if word_before {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.insert(path_of(item.trim()));
            }
        } else {
            out.insert(path_of(rest));
        }
    }
    out
}

/// `firewall::rules::render(...)` → `firewall::rules`; `model` → `model`.
fn path_of(s: &str) -> String {
    let s = s.trim_start_matches('{');
    let p: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let parts: Vec<&str> = p.split("::").filter(|x| !x.is_empty()).collect();
    parts.iter().take(2).copied().collect::<Vec<_>>().join("::")
}

fn folder_of_root_item(item: &str) -> &str {
    let head = item.split("::").next().unwrap_or(item);
    match head {
        "Error" | "Nsnet" | "Result" | "Mode" | "require_root" => "api",
        other => other,
    }
}

fn may_import(allowed: &[&str], own: &str, path: &str) -> bool {
    let head = folder_of_root_item(path);
    head == own
        || head == "error_chain"
        || allowed
            .iter()
            .any(|a| *a == head || (a.contains("::") && path.starts_with(a)))
}

#[test]
fn each_folder_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules = allowed();
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name == "main.rs" || name == "lib.rs",
                "src/ holds only main.rs and lib.rs besides folders, found {name}"
            );
            continue;
        }
        let folder = path.file_name().unwrap().to_string_lossy().into_owned();
        if folder == "cli" {
            continue; // the binary's: checked below
        }
        let allowed = rules
            .get(folder.as_str())
            .unwrap_or_else(|| panic!("folder src/{folder} has no place in the layering"));
        seen.insert(folder.clone());
        for file in walk(&path) {
            let text = std::fs::read_to_string(&file).unwrap();
            // A folder's `tests.rs` is its `#[cfg(test)] mod tests;`: test
            // code, which may use whatever makes a test short.
            let test_module = file.file_name().is_some_and(|n| n == "tests.rs");
            let production = match test_module {
                true => "",
                false => text.split("#[cfg(test)]").next().unwrap_or(""),
            };
            assert!(
                text.starts_with("//!"),
                "{} opens without a module comment",
                file.display()
            );
            for import in imports(production) {
                if !may_import(allowed, &folder, &import) {
                    violations.push(format!("{}: crate::{import}", file.display()));
                }
            }
        }
    }
    assert_eq!(seen.len(), rules.len(), "every layer is a folder: {seen:?}");
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_binary_goes_through_the_door() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = walk(&src.join("cli"));
    files.push(src.join("main.rs"));
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let production = text.split("#[cfg(test)]").next().unwrap_or("");
        for path in paths_after(production, "nsnet::") {
            let head = folder_of_root_item(&path);
            if head != "error_chain" && !BINARY_MAY_USE.contains(&head) {
                violations.push(format!("{}: nsnet::{path}", file.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the binary reaches below the library's door:\n{}",
        violations.join("\n")
    );
}

/// The live machine is made in one place, the seam's constructor
/// (`host::LiveMachine::open`): every command works on the machine its
/// `Nsnet` was built with.
#[test]
fn no_live_kernel_is_made_outside_the_seam() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut makers = Vec::new();
    for file in walk(&src) {
        let code = without_comments(&std::fs::read_to_string(&file).unwrap());
        if code.contains("Live::new(") || code.contains("Live::default(") {
            makers.push(file.strip_prefix(&src).unwrap().display().to_string());
        }
    }
    makers.sort();
    assert_eq!(makers, ["host/mod.rs"]);
}

fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let found = imports("use crate::{kernel::netns, model};\nlet x = crate::firewall::rules::render(s);\n// crate::api in a comment\n");
    let want: BTreeSet<String> = ["kernel::netns", "model", "firewall::rules"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
    assert!(!may_import(
        &["model", "firewall::rules"],
        "plan",
        "firewall::apply"
    ));
    assert!(may_import(
        &["model", "firewall::rules"],
        "plan",
        "firewall::rules"
    ));
}

#[test]
fn a_front_end_reaching_below_the_door_is_caught() {
    let rules = allowed();
    for (front, path) in [
        ("cni", "apply::LiveKernel"),
        ("cni", "firewall::list_table"),
        ("topology", "plan::converge"),
        ("topology", "check::Probe"),
        ("agent", "kernel::stop_on"),
        ("agent", "cluster::Registry"),
    ] {
        assert!(!may_import(&rules[front], front, path), "{front} -> {path}");
    }
    assert!(may_import(&rules["cni"], "cni", "api::Report"));
    // The binary: `nsnet::` paths, grouped ones too.
    let named = paths_after(
        "use nsnet::{api::live, kernel::netns};\nlet d = nsnet::store::DEFAULT_DIR;\nmy_nsnet::x();",
        "nsnet::",
    );
    let heads: BTreeSet<&str> = named.iter().map(|p| folder_of_root_item(p)).collect();
    assert_eq!(heads, BTreeSet::from(["api", "kernel", "store"]));
    assert!(!BINARY_MAY_USE.contains(&"kernel") && !BINARY_MAY_USE.contains(&"store"));
}
