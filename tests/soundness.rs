//! The soundness corpus: every program under tests/soundness/ names, in its header, a rewrite that
//! could go wrong on it (`// rewrite: --decouple C:RULES --into NEW`, `// rewrite: --partition C
//! [--by KEY] [--seal]`, `// rewrite: optimize --machines N`) and says what could go wrong
//! (`// hazard: ...`). The real `compart` binary applies the rewrite; the outcome must be either
//! a refusal that names a rule or relation, or an accepted rewrite that `compart verify` finds no
//! difference in (`--invariants-only` for sealed partitioning, which is not an equivalence).
//! Internal errors and panics fail too. Every program's outcome is recorded in one snapshot so
//! reviewers see them all; the failures are printed before the snapshot is compared.
//!
//! The rewritten program runs with the original's deployment (tests/soundness/NAME.toml when
//! present), the new component of a decoupling with as many nodes as the component it came from,
//! and 3 instances per partitioned logical node; the optimizer writes its own deployment.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "soundness/support.rs"]
mod support;

use support::{compart, decoupled_names, deployment, first_difference, looks_internal, on_two_workers, text, ROOT};

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("tests/soundness"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ded"))
        .collect();
    files.sort();
    files
}

/// The value of the first `// KEY: ...` header line.
fn header<'a>(source: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("// {key}:");
    source.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(str::trim)
}

/// The rewrite column of the optimizer's table of steps (step 0, the original, left out).
fn optimizer_steps(stdout: &str) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    // The table starts after its header line (a line about the calibration may come first).
    let table = stdout.lines().skip_while(|l| !l.trim_start().starts_with("step")).skip(1);
    for line in table {
        if line.trim().is_empty() {
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().and_then(|f| f.parse::<usize>().ok()) {
            Some(0) => {}
            Some(_) if fields.len() > 4 => steps.push(fields[4..].join(" ")),
            Some(_) => {}
            None => {
                if let Some(last) = steps.last_mut() {
                    last.push(' ');
                    last.push_str(&fields.join(" "));
                }
            }
        }
    }
    steps
}

struct Outcome {
    /// One line for the snapshot.
    line: String,
    /// Why the test fails on this program, if it does.
    failure: Option<String>,
}

fn run_one(path: &Path, scratch: &Path) -> Outcome {
    let name = path.file_stem().unwrap().to_str().unwrap().to_string();
    let relative = format!("tests/soundness/{name}.ded");
    let fail = |line: String, why: String| Outcome { line, failure: Some(format!("{name}: {why}")) };
    let source = std::fs::read_to_string(path).unwrap();
    let (Some(rewrite), Some(_hazard)) = (header(&source, "rewrite"), header(&source, "hazard")) else {
        return fail("no `// rewrite:` or `// hazard:` header".into(), "header lines missing".into());
    };
    let check = compart(&["check", "--deny-warnings", &relative]);
    if !check.status.success() {
        let why = format!("`compart check` is not clean:\n{}{}", text(&check.stdout), text(&check.stderr));
        return fail("invalid program".into(), why);
    }
    let toml_path = path.with_extension("toml");
    let original_toml = std::fs::read_to_string(&toml_path).ok();
    let dir = scratch.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let args: Vec<&str> = rewrite.split_whitespace().collect();
    let seal = args.contains(&"--seal");
    let (rewritten, summary) = if args.first() == Some(&"optimize") {
        let mut cmd = vec!["optimize", relative.as_str()];
        cmd.extend(&args[1..]);
        let out_dir = dir.to_str().unwrap().to_string();
        cmd.extend(["--out", out_dir.as_str()]);
        let out = compart(&cmd);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if !out.status.success() || looks_internal(&stderr) {
            let code = out.status.code().map_or("a signal".to_string(), |c| c.to_string());
            return fail(format!("optimize failed (exit {code})"), format!("optimize failed:\n{stdout}{stderr}"));
        }
        let steps = optimizer_steps(&stdout);
        let summary = if steps.is_empty() { "no rewrite".to_string() } else { steps.join("; ") };
        (dir.join(format!("{name}.optimized.ded")), format!("optimized: {summary}"))
    } else {
        let mut cmd = vec!["rewrite", relative.as_str()];
        cmd.extend(&args);
        let out = compart(&cmd);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        match out.status.code() {
            Some(1) if !looks_internal(&stderr) => {
                let Some(reason) = stderr.lines().find_map(|l| l.strip_prefix("refused: ")) else {
                    return fail("exit 1 without a refusal".into(), format!("no `refused:` line:\n{stderr}"));
                };
                // `tests/soundness/NAME.ded:LINE: reason` -> `line LINE: reason`.
                let reason = reason.strip_prefix(&format!("{relative}:")).map_or(reason.to_string(), |r| {
                    let (line, why) = r.split_once(": ").unwrap_or((r, ""));
                    format!("line {line}: {why}")
                });
                let line = format!("refused: {reason}");
                if !reason.contains('`') {
                    return fail(line, "the refusal names no rule or relation".into());
                }
                return Outcome { line, failure: None };
            }
            Some(0) if !looks_internal(&stderr) => {}
            code => {
                let code = code.map_or("a signal".to_string(), |c| c.to_string());
                let first = stderr.lines().find(|l| !l.starts_with("note:")).unwrap_or("").to_string();
                return fail(format!("error (exit {code}): {first}"), format!("internal error or panic:\n{stderr}"));
            }
        }
        let file = dir.join(format!("{name}.ded"));
        std::fs::write(&file, &stdout).unwrap();
        let names = decoupled_names(&args);
        let toml = deployment(&stdout, original_toml.as_deref(), names.as_ref().map(|(a, b)| (a.as_str(), b.as_str())));
        std::fs::write(file.with_extension("toml"), toml).unwrap();
        let kind = stderr
            .lines()
            .find_map(|l| l.strip_prefix("note: "))
            .map(|l| l.split(": ").next().unwrap_or(l).to_string())
            .unwrap_or_else(|| "no explanation".into());
        (file, format!("accepted ({kind})"))
    };
    let new_text = std::fs::read_to_string(&rewritten).unwrap_or_default();
    // Sealed partitioning (asked for, or chosen by the optimizer) is checked on invariants only.
    let invariants_only = seal || new_text.contains("instance(");
    let verify = |against: &Path, flags: &[String]| {
        let mut cmd: Vec<&str> = vec!["verify", relative.as_str(), against.to_str().unwrap()];
        cmd.extend(flags.iter().map(String::as_str));
        compart(&cmd)
    };
    let mode = if invariants_only { "verify --invariants-only" } else { "verify" };
    // The configurations in turn, cheapest first, until one reports a difference.
    for flags in support::verify_configs(true, invariants_only) {
        let out = verify(&rewritten, &flags);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        match out.status.code() {
            Some(0) if !looks_internal(&stderr) => continue,
            Some(1) if !looks_internal(&stderr) => {
                // The original against itself tells a difference of the rewrite from the verifier's own.
                let control = match verify(path, &flags).status.code() {
                    Some(0) => "",
                    Some(1) => " [the original against itself differs too]",
                    _ => " [the original against itself: verify error]",
                };
                let line = format!("{summary}; {mode}: DIFFERS: {}{control}", first_difference(&stdout));
                let why = format!("{name}: accepted, but `verify {}` reports a difference:\n{stdout}", flags.join(" "));
                return Outcome { failure: Some(why), line };
            }
            code => {
                let code = code.map_or("a signal".to_string(), |c| c.to_string());
                let first = stderr.lines().next().unwrap_or("").to_string();
                let line = format!("{summary}; {mode}: error (exit {code}): {first}");
                return Outcome { line, failure: Some(format!("{name}: verify failed to run:\n{stdout}{stderr}")) };
            }
        }
    }
    Outcome { line: format!("{summary}; {mode}: no difference"), failure: None }
}

#[test]
fn every_rewrite_is_refused_with_a_reason_or_passes_verify() {
    let files = corpus();
    assert!(files.len() >= 40, "the corpus has only {} programs", files.len());
    let scratch = std::env::temp_dir().join(format!("compart-soundness-{}", std::process::id()));
    let started = std::time::Instant::now();
    let outcomes: Vec<Outcome> = on_two_workers(&files, |path| run_one(path, &scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    let mut report = String::new();
    let mut failures = Vec::new();
    for (path, outcome) in files.iter().zip(outcomes) {
        let name = path.file_stem().unwrap().to_str().unwrap();
        report.push_str(&format!("{name}: {}\n", outcome.line));
        failures.extend(outcome.failure);
    }
    eprintln!("{report}\n{} program(s) in {:.1?}", files.len(), started.elapsed());
    for f in &failures {
        eprintln!("FAILED {f}\n");
    }
    let failing: Vec<&str> = failures.iter().map(|f| f.split(':').next().unwrap_or("")).collect();
    insta::assert_snapshot!("outcomes", report);
    assert!(failures.is_empty(), "{} program(s) fail: {}", failures.len(), failing.join(", "));
}
