//! `compart explain` through the real binary: classes, and the sealing note for a sequential
//! component that sealed partitioning would split.

use std::path::PathBuf;
use std::process::Command;

/// examples/paxos.ded and its deployment copied into a fresh directory: (the directory, the
/// program, the deployment file).
fn paxos_copy(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("compart-rewrite-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let (ded, toml) = (dir.join("paxos.ded"), dir.join("paxos.toml"));
    std::fs::copy(format!("{root}/examples/paxos.ded"), &ded).unwrap();
    std::fs::copy(format!("{root}/examples/paxos.toml"), &toml).unwrap();
    (dir, ded, toml)
}

fn compart(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_compart")).args(args).output().unwrap()
}

fn explain(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sequential_components_that_sealing_splits_get_a_note() {
    let paxos = explain("examples/paxos.ded");
    assert!(paxos.contains("component acceptor"), "{paxos}");
    assert!(
        paxos.contains("note: `acceptor` can be partitioned with sealing (`compart rewrite examples/paxos.ded --partition acceptor --seal`)"),
        "{paxos}"
    );
    // The proposer's maxima feed its own decisions, not replies: no sealing for it.
    assert!(!paxos.contains("note: `proposer`"), "{paxos}");
    // Partitionable components need no sealing.
    assert!(!explain("examples/voting.ded").contains("with sealing"));
}

/// `copies` copies of examples/kvs.ded (a sequencer and its replicas, both sequential, so explain
/// also asks whether sealing splits them), every component, relation and invariant renamed with
/// the copy's number: a large program whose parts do not interact.
fn many_kvs(copies: usize) -> String {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kvs.ded")).unwrap();
    // Comments out, so that every remaining identifier followed by `(` or `@` names a relation
    // or an invariant (or a built-in, kept).
    let mut code = String::new();
    let mut rest = src.as_str();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = &r[r.find("*/").unwrap() + 2..];
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = &r[r.find('\n').unwrap_or(r.len())..];
        } else {
            let c = rest.chars().next().unwrap();
            code.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    const KEEP: [&str; 7] = ["count", "max", "min", "sum", "key", "nodes", "instance"];
    let mut out = String::new();
    for i in 0..copies {
        let mut chars = code.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if !(c.is_ascii_alphabetic() || c == '_') {
                out.push(c);
                continue;
            }
            let mut end = start + 1;
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_') {
                    break;
                }
                end = j + 1;
                chars.next();
            }
            let word = &code[start..end];
            let next = code[end..].trim_start().chars().next();
            // `apply@r(...)`: `r` is the address variable, not a relation.
            let address = code[..start].ends_with('@');
            let named = matches!(next, Some('(' | '@')) && !KEEP.contains(&word) && !address;
            out.push_str(word);
            if named || word == "leader" || word == "replica" {
                out.push_str(&i.to_string());
            }
        }
    }
    out
}

fn timed(args: &[&str]) -> std::time::Duration {
    let start = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_compart")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed()
}

/// Explain was quadratic: the sealing question it asks of each sequential component rebuilt the
/// scaling context of the whole program (before: 200 copies of kvs, 15,600 lines, 8 s in release;
/// after: 0.4 s). Measured against `compart check` of the same file, so the bound holds on slow
/// and loaded machines alike: before, explain took about 50 times as long as check here; now about
/// 5 (debug build, quiet), and up to 15 on a machine loaded with builds, hence the bound of 20.
#[test]
fn explain_is_near_linear_in_program_size() {
    let dir = std::env::temp_dir().join(format!("compart-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("many_kvs.ded");
    let text = many_kvs(100);
    assert!(text.lines().count() > 7_000);
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    // The generated program is valid, and every copy is explained.
    let report = explain(file);
    assert!(report.contains("component leader99: sequential"), "{report}");
    assert_eq!(report.matches(": sequential\n").count(), 200, "{report}");
    let best = |args: &[&str]| (0..2).map(|_| timed(args)).min().unwrap();
    let check = best(&["check", file]);
    let explained = best(&["explain", file]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        explained < check * 20 + std::time::Duration::from_millis(1000),
        "explain took {explained:?}, check {check:?}"
    );
}

/// `compart rewrite --write` keeps the deployment file beside the program in step: the new
/// component is added (so `compart run` finds it), a partitioned component gets its instances,
/// and a program without a file gets one. Without `--write`, nothing is written and stderr says
/// what would change.
#[test]
fn rewrite_updates_the_deployment_beside_the_program() {
    let (dir, ded, toml) = paxos_copy("deploy");
    let root = env!("CARGO_MANIFEST_DIR");
    let original_toml = std::fs::read_to_string(&toml).unwrap();
    let rewrite = |extra: &[&str]| {
        let mut args = vec!["rewrite", ded.to_str().unwrap(), "--decouple", "proposer:p2a", "--into", "proposer_p2a"];
        args.extend(["--no-check"].iter().chain(extra));
        let out = Command::new(env!("CARGO_BIN_EXE_compart")).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let dry = rewrite(&[]);
    assert!(dry.contains("with --write") && dry.contains("[components] proposer_p2a = 2"), "{dry}");
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), original_toml);

    let written = rewrite(&["--write"]);
    assert!(written.contains("note: updated"), "{written}");
    let new_toml = std::fs::read_to_string(&toml).unwrap();
    // Comments and settings kept; the new part has a node per proposer, and the runtime takes it.
    assert_eq!(new_toml, format!("{original_toml}proposer_p2a = 2\n"));
    let program = compart_analysis::analyze(&std::fs::read_to_string(&ded).unwrap()).program;
    let deployment = compart_runtime::Deployment::from_toml(&new_toml, &program).unwrap();
    assert_eq!(deployment.logical_nodes().count(), 7);

    // No deployment file: one is written, every component with one node.
    std::fs::copy(format!("{root}/examples/paxos.ded"), &ded).unwrap();
    std::fs::remove_file(&toml).unwrap();
    rewrite(&["--write"]);
    let created = std::fs::read_to_string(&toml).unwrap();
    let program = compart_analysis::analyze(&std::fs::read_to_string(&ded).unwrap()).program;
    let deployment = compart_runtime::Deployment::from_toml(&created, &program).unwrap();
    assert_eq!(deployment.logical_nodes().count(), 3, "{created}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `compart rewrite --grid` with `--write` writes the grid into the deployment file and sets the
/// node count it needs, which the runtime accepts; a file whose grid its nodes do not fill is an
/// error naming the file and the component, and zero columns are refused before anything runs.
#[test]
fn grid_rewrite_writes_the_grid_and_the_runtime_checks_it() {
    let (dir, ded, toml) = paxos_copy("grid");
    let d = ded.to_str().unwrap();
    let zero = compart(&["rewrite", d, "--grid", "acceptor", "--columns", "0", "--no-check"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--columns"), "{}", String::from_utf8_lossy(&zero.stderr));

    let out = compart(&["rewrite", d, "--grid", "acceptor", "--rows", "2", "--columns", "3", "--no-check", "--write"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[grids] acceptor = { rows = 2, columns = 3 }; [components] acceptor = 6"), "{stderr}");
    let written = std::fs::read_to_string(&toml).unwrap();
    assert!(
        written.contains("acceptor = 6") && written.contains("[grids]\nacceptor = { rows = 2, columns = 3 }"),
        "{written}"
    );
    let program = compart_analysis::analyze(&std::fs::read_to_string(&ded).unwrap()).program;
    let deployment = compart_runtime::Deployment::from_toml(&written, &program).unwrap();
    assert_eq!(deployment.logical_nodes().count(), 8);

    // A grid the nodes do not fill: `compart sim` (like run) refuses the file, naming it.
    std::fs::write(&toml, written.replace("acceptor = 6", "acceptor = 4")).unwrap();
    let out = compart(&["sim", d, "--deploy", toml.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("paxos.toml") && stderr.contains("[grids] `acceptor`: 2 rows x 3 columns is 6 nodes"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A batching's size is in no declaration: `compart rewrite --batch --write` and `compart
/// optimize --out` record it in `[batches]`, which the runtime accepts, and `compart optimize` on
/// the batched program reads back (a plan of it keeps the entry).
#[test]
fn batch_rewrite_and_plan_record_the_batching() {
    let (dir, ded, toml) = paxos_copy("batches");
    let d = ded.to_str().unwrap();
    let plan_dir = dir.join("plan");
    let out = compart(&[
        "optimize",
        d,
        "--machines",
        "12",
        "--batch",
        "16",
        "--no-check",
        "--out",
        plan_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = std::fs::read_to_string(plan_dir.join("paxos.optimized.toml")).unwrap();
    assert!(plan.contains("[batches]\nproposer_batcher = { channel = \"request_batch\", size = 16 }\n"), "{plan}");
    let plan_program = std::fs::read_to_string(plan_dir.join("paxos.optimized.ded")).unwrap();
    compart_runtime::Deployment::from_toml(&plan, &compart_analysis::analyze(&plan_program).program).unwrap();

    let out = compart(&["rewrite", d, "--batch", "proposer", "--size", "64", "--no-check", "--write"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[batches] proposer_batcher = { channel = \"request_batch\", size = 64 }"), "{stderr}");
    let written = std::fs::read_to_string(&toml).unwrap();
    assert!(
        written.ends_with("[batches]\nproposer_batcher = { channel = \"request_batch\", size = 64 }\n"),
        "{written}"
    );
    let program = compart_analysis::analyze(&std::fs::read_to_string(&ded).unwrap()).program;
    compart_runtime::Deployment::from_toml(&written, &program).unwrap();
    // Optimizing the batched program: its batching is known, so the plan records it again.
    let out = compart(&["optimize", d, "--machines", "12", "--no-check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("proposer_batcher = { channel = \"request_batch\", size = 64 }"), "{stdout}");
    // A bad entry is an error naming the file and the entry.
    std::fs::write(&toml, written.replace("size = 64", "size = 0")).unwrap();
    let out = compart(&["optimize", d, "--machines", "12", "--no-check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("paxos.toml: [batches] `proposer_batcher`: `size` must be"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Thrifty's widening input is fed only by a timer: `compart rewrite --thrifty --write` and
/// `compart optimize --out` (whose default search takes the thrifty p2a) both write its
/// `[timers]` entry (without it a crashed quorum member stalls the answers), and the runtime
/// reads the file; `--no-thrifty` takes none.
#[test]
fn thrifty_rewrite_and_plan_write_the_widening_timer() {
    let (dir, ded, toml) = paxos_copy("thrifty");
    let optimize = |extra: &[&str], into: &str| {
        let out_dir = dir.join(into);
        // 29 machines: with 12 the batchers take them all and no quorum saving pays.
        let mut args = vec!["optimize", ded.to_str().unwrap(), "--machines", "29", "--no-check"];
        args.extend(extra);
        args.extend(["--out", out_dir.to_str().unwrap()]);
        let out = compart(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(out_dir.join("paxos.optimized.toml")).unwrap()
    };
    let plan = optimize(&[], "plan");
    assert!(plan.contains("[timers]\np2a_widen = 0.2\n"), "{plan}");
    let plan = optimize(&["--no-thrifty"], "plain");
    assert!(!plan.contains("[timers]"), "{plan}");

    let out =
        compart(&["rewrite", ded.to_str().unwrap(), "--thrifty", "proposer", "--rule", "p2a", "--no-check", "--write"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[timers] p2a_widen = 0.2"), "{stderr}");
    let written = std::fs::read_to_string(&toml).unwrap();
    assert!(written.ends_with("[timers]\np2a_widen = 0.2\n"), "{written}");
    let program = compart_analysis::analyze(&std::fs::read_to_string(&ded).unwrap()).program;
    let timers = compart_runtime::deploy::timers(&written, &program).unwrap();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].1, std::time::Duration::from_millis(200));
    std::fs::remove_dir_all(&dir).unwrap();
}
