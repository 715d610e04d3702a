//! Helpers shared by tests/soundness.rs and tests/mutations.rs, included with `#[path]` (cargo does
//! not build files in subdirectories of tests/ as test crates of their own).

use std::process::{Command, Output};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Run the `compart` binary of this build from the workspace root.
pub fn compart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_compart")).current_dir(ROOT).args(args).output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Does this build's `compart verify` have a bounded (exhaustive) phase besides sampling?
pub fn verify_has_bounded_phase() -> bool {
    text(&compart(&["verify", "--help"]).stdout).contains("--max-states")
}

/// `compart verify` configurations, cheapest first: `--quick` (the check the optimizer runs per
/// step), then a deeper one (sampled seeds, unless `sampled` is false, and a larger bounded
/// phase); a build whose verify has no bounded phase gets its sampled check alone. Bounds are
/// kept small enough for whole corpora to run in a few minutes in a debug build on two cores.
pub fn verify_configs(sampled: bool, invariants_only: bool) -> Vec<Vec<String>> {
    let owned = |flags: &[&str]| flags.iter().map(|f| f.to_string()).collect::<Vec<String>>();
    let mut out = if verify_has_bounded_phase() {
        let deep = if sampled {
            owned(&["--seeds", "6", "--inputs", "12", "--max-states", "10000", "--search", "100"])
        } else {
            owned(&["--seeds", "0", "--max-states", "20000"])
        };
        vec![owned(&["--quick"]), deep]
    } else {
        vec![owned(&["--seeds", "6", "--inputs", "12"])]
    };
    if invariants_only {
        out.iter_mut().for_each(|c| c.push("--invariants-only".into()));
    }
    out
}

/// `[components]` counts of a deployment file (`name = N` lines).
pub fn component_counts(toml: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut in_components = false;
    for line in toml.lines().map(|l| l.split('#').next().unwrap_or("").trim()) {
        if line.starts_with('[') {
            in_components = line == "[components]";
        } else if let (true, Some((name, count))) = (in_components, line.split_once('=')) {
            if let Ok(n) = count.trim().parse() {
                out.push((name.trim().to_string(), n));
            }
        }
    }
    out
}

/// The deployment of a rewritten program: the original's node counts (one node for a component
/// it does not list), the new component of a decoupling (`decoupled`: source, new) as many nodes
/// as its source, as the rewrite asks, and 3 instances per partitioned logical node.
pub fn deployment(rewritten: &str, original_toml: Option<&str>, decoupled: Option<(&str, &str)>) -> String {
    let counts = original_toml.map(component_counts).unwrap_or_default();
    let count = |name: &str| counts.iter().find(|(n, _)| n == name).map_or(1, |(_, c)| *c);
    let mut components = String::new();
    let mut partitions = String::new();
    for line in rewritten.lines() {
        let Some(rest) = line.strip_prefix("component ") else { continue };
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let n = match decoupled {
            Some((from, into)) if into == name => count(from),
            _ => count(&name),
        };
        components.push_str(&format!("{name} = {n}\n"));
        if rest.contains(" partitioned by ") {
            partitions.push_str(&format!("{name} = 3\n"));
        }
    }
    let mut out = format!("# Written by the compart tests.\nbase_port = 7900\n\n[components]\n{components}");
    if !partitions.is_empty() {
        out.push_str(&format!("\n[partitions]\n{partitions}"));
    }
    out
}

/// `--decouple C:RULES --into NEW` among rewrite arguments -> (C, NEW).
pub fn decoupled_names(args: &[&str]) -> Option<(String, String)> {
    let spec = args.iter().position(|a| *a == "--decouple").and_then(|i| args.get(i + 1))?;
    let into = args.iter().position(|a| *a == "--into").and_then(|i| args.get(i + 1))?;
    Some((spec.split(':').next()?.to_string(), into.to_string()))
}

/// The first line of a verify report that says what differs (no timings, so snapshots are stable).
pub fn first_difference(report: &str) -> String {
    let markers = ["violated", "new output", "missing output", "did not settle", "check failed", "lack outputs"];
    report
        .lines()
        .map(str::trim)
        .find(|l| markers.iter().any(|m| l.contains(m)))
        .or_else(|| report.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("(empty report)")
        .to_string()
}

/// A crash or an internal error of the tool rather than an answer.
pub fn looks_internal(stderr: &str) -> bool {
    stderr.contains("internal error") || stderr.contains("panicked")
}

/// `f` applied to every item by two worker threads (the machine the tests run on has two cores);
/// the results in the items' order.
pub fn on_two_workers<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<R>>> = std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(k) else { break };
                let result = f(item);
                results.lock().unwrap()[k] = Some(result);
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(|r| r.expect("every item was taken by a worker")).collect()
}
