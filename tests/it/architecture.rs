//! The shape of the runtime, pinned: `gateway` is the composition root
//! and nothing below it imports it, and the modules of `src/` depend on
//! each other in one direction only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules that build the gateway from the services, and the entry
/// points above them; everything else must be usable without them.
const ROOTS: &[&str] = &["gateway", "server", "main", "lib", "bin", "fuzzing"];

/// Each top-level module of `src/` and the top-level modules its code
/// (not its comments, not its tests) names as `crate::x`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap();
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let uses = graph.entry(module.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let name: String = line[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if name != module {
                        uses.insert(name);
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn nothing_below_the_composition_root_imports_it() {
    let graph = module_graph();
    let mut found = Vec::new();
    for (module, uses) in graph.iter().filter(|(m, _)| !ROOTS.contains(&m.as_str())) {
        for root in ["gateway", "server"] {
            if uses.contains(root) {
                found.push(format!("{module} uses crate::{root}"));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    // The services were handed to each other, not reached through a
    // pointer of the gateway to itself.
    let root = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/gateway/mod.rs"))
        .unwrap();
    assert!(!root.contains("new_cyclic") && !root.contains("Weak<Gateway>"));
}

#[test]
fn the_modules_depend_on_each_other_in_one_direction() {
    let graph = module_graph();
    // Depth-first search; a module met again while still on the path
    // closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            cycles.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(module.to_string()) {
            return;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, path, done, cycles);
            }
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
    // The guard itself must see the graph: the services are in it.
    for service in [
        "agent", "channels", "cron", "nodes", "exec", "store", "config",
    ] {
        assert!(graph.contains_key(service), "{service} is missing");
    }
    assert!(graph["cron"].contains("agent") && graph["gateway"].contains("cron"));
}
