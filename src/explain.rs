//! `compart explain`, `compart rewrite`, `compart optimize`: the scaling analysis, the rewrites
//! and the optimizer of the analysis crate, on files.

use std::path::{Path, PathBuf};

use compart_analysis::{analyze, deployment, optimize, rewrite, scaling, Analysis};

use crate::Format;

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn load(path: &Path) -> Result<Analysis, u8> {
    let text = crate::check::read_source(path)?;
    let analysis = analyze(&text);
    if analysis.has_errors() {
        eprintln!("error: {} has errors; run `compart check` first", path.display());
        return Err(1);
    }
    Ok(analysis)
}

fn location(analysis: &Analysis, path: &Path, range: compart_analysis::TextRange) -> String {
    let line = analysis.text()[..range.start as usize].matches('\n').count() + 1;
    format!("{}:{line}", path.display())
}

/// Print every component's and rule's scaling class with its reasons.
pub fn explain(file: &Path, format: Format) -> u8 {
    let analysis = match load(file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // One scaling context for the report and every sealing question: building it reads the
    // whole program, so building it per component made explain quadratic in program size.
    let ctx = scaling::Context::new(&analysis.program);
    let report = scaling::classify_in(&ctx);
    match format {
        Format::Human => {
            let mut text = scaling::render(&analysis.program, &report);
            // A sequential component may still split with sealing (not an equivalence): say so.
            for c in report.components.iter().filter(|c| c.verdict.class.is_sequential()) {
                if let Ok(result) = rewrite::partition_sealed_in(&ctx, &analysis, &c.name, None) {
                    let how = result.explanation.first().map_or("", |l| l.as_str());
                    text.push_str(&format!(
                        "\nnote: `{}` can be partitioned with sealing (`compart rewrite {} --partition {} --seal`): {how}\n",
                        c.name,
                        file.display(),
                        c.name
                    ));
                }
            }
            emit(&text)
        }
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => emit(&format!("{json}\n")),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
    }
    0
}

/// `compart graph`: the component graph (`compart_analysis::graph`, as the editor draws it).
pub fn graph(file: &Path, format: crate::GraphFormat) -> u8 {
    let analysis = match load(file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let report = scaling::classify(&analysis.program);
    let graph = compart_analysis::graph::graph(&analysis.program, &report);
    match format {
        crate::GraphFormat::Dot => {
            let title = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            emit(&graph.to_dot(&title))
        }
        crate::GraphFormat::Json => match serde_json::to_string_pretty(&graph) {
            Ok(json) => emit(&format!("{json}\n")),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
    }
    0
}

/// Which rewrite `compart rewrite` applies (exactly one of decouple, partition, batch).
pub struct RewriteChoice<'a> {
    pub decouple: Option<&'a str>,
    pub into: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub by: Option<&'a str>,
    pub seal: bool,
    /// The component to batch, and the batch size.
    pub batch: Option<(&'a str, usize)>,
    /// The component to arrange in a grid, its rows, and its columns when given.
    pub grid: Option<(&'a str, usize, Option<usize>)>,
    /// The component whose broadcast becomes thrifty, and the rule selector.
    pub thrifty: Option<(&'a str, Option<&'a str>)>,
    /// `A,B`: the two components to merge into `into` (shared proxies).
    pub share: Option<&'a str>,
}

/// Apply one rewrite; the new program goes to stdout (or back to the file with `write`, the
/// deployment file updated or created with it: `deployment::update`), the explanation and the
/// deployment change to stderr. Exit 1 when the rewrite is refused, by its precondition or (unless
/// `check` is false) by the bounded refinement check against the original, with its
/// counterexample.
pub fn rewrite(file: &Path, choice: RewriteChoice<'_>, write: bool, deploy: Option<&Path>, check: bool) -> u8 {
    let analysis = match load(file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let RewriteChoice { decouple, into, partition, by, seal, batch, grid, thrifty, share } = choice;
    // Sealed partitioning, batching and grids are not equivalences: the check verifies the
    // invariants (a thrifty broadcast is: its outputs are compared too).
    let invariants_only = seal || batch.is_some() || grid.is_some();
    let deploy_path = deploy.map_or_else(|| deployment::beside(file), Path::to_path_buf);
    let deploy_text = compart_runtime::options::read_text(&deploy_path).ok();
    let result = match (decouple, partition, batch) {
        (None, None, None) if share.is_some() => {
            let spec = share.unwrap_or_default();
            let (Some(into), Some((a, b))) = (into, spec.split_once(',')) else {
                eprintln!("error: --share takes A,B (two components) and needs --into NAME");
                return 2;
            };
            rewrite::share(&analysis, a.trim(), b.trim(), into)
        }
        (None, None, None) if thrifty.is_some() && grid.is_none() => {
            let (component, rule) = thrifty.unwrap_or_default();
            rewrite::thrifty(&analysis, component, rule)
        }
        (None, None, None) if grid.is_some() && thrifty.is_none() => {
            let (component, rows, _) = grid.unwrap_or_default();
            rewrite::grid(&analysis, component, rows)
        }
        (None, None, Some((component, size))) => match deployment::request_delivery(deploy_text.as_deref()) {
            Ok(delivery) => rewrite::batch(&analysis, component, size, delivery),
            Err(e) => {
                eprintln!("error: {}: {e}", deploy_path.display());
                return 2;
            }
        },
        (Some(spec), None, None) => {
            let Some(into) = into else {
                eprintln!("error: --decouple needs --into NAME");
                return 2;
            };
            let Some((component, selectors)) = spec.split_once(':') else {
                eprintln!("error: --decouple takes COMPONENT:RULE,RULE,... (rules by 1-based index or head name)");
                return 2;
            };
            let selectors: Vec<&str> = selectors.split(',').filter(|s| !s.is_empty()).collect();
            rewrite::select_rules(&analysis, component, &selectors)
                .and_then(|rules| rewrite::decouple(&analysis, component, &rules, into))
        }
        (None, Some(component), None) if seal => rewrite::partition_sealed(&analysis, component, by),
        (None, Some(component), None) => rewrite::partition(&analysis, component, by),
        _ => {
            eprintln!("error: give exactly one of --decouple, --partition, --batch, --grid, --thrifty or --share");
            return 2;
        }
    };
    match result {
        Ok(result) => {
            for line in &result.explanation {
                eprintln!("note: {line}");
            }
            if check {
                let gate = BoundedCheck { original_deploy: deploy_text.clone() };
                match optimize::StepCheck::check(&gate, analysis.text(), &result.new_text, invariants_only) {
                    Ok(summary) => eprintln!("note: checked against the original: {summary}"),
                    Err(counterexample) => {
                        eprintln!("refused by the bounded check: {counterexample}");
                        return 1;
                    }
                }
            }
            // The deployment follows the program: `compart run` finds every component after it.
            let rewritten = analyze(&result.new_text);
            let mut changes = deployment::result_changes(&analysis.program, &rewritten.program, &result);
            if let Some((_, _, Some(columns))) = grid {
                deployment::set_grid_columns(&mut changes, columns);
            }
            let updated = if changes.is_empty() {
                None
            } else {
                match deployment::update(deploy_text.as_deref(), &rewritten.program, &changes) {
                    Ok(updated) => Some(updated),
                    Err(e) => {
                        eprintln!("warning: {} is left as it is: {e}", deploy_path.display());
                        None
                    }
                }
            };
            if write {
                if let Err(e) = std::fs::write(file, &result.new_text) {
                    eprintln!("error: cannot write {}: {e}", file.display());
                    return 2;
                }
                if let Some(updated) = updated {
                    if let Err(e) = std::fs::write(&deploy_path, &updated.text) {
                        eprintln!("error: cannot write {}: {e}", deploy_path.display());
                        return 2;
                    }
                    eprintln!("note: updated {}: {}", deploy_path.display(), deployment::summary(&updated));
                }
            } else {
                emit(&result.new_text);
                if let Some(updated) = updated {
                    eprintln!(
                        "note: with --write, {} would change too: {}",
                        deploy_path.display(),
                        deployment::summary(&updated)
                    );
                }
            }
            0
        }
        Err(refusal) => {
            eprintln!("refused: {}: {}", location(&analysis, file, refusal.range), refusal.reason);
            1
        }
    }
}

/// Profile written by `compart run --report` (`compart-run-report/1`, runtime/README.md): each
/// rule's `facts_per_request` becomes the measured frequency of rules with the same text. A report
/// of the program being optimized is matched by rule id; a report of another program (a rewriting
/// of it, run earlier: profile-guided rounds) through that program, read from the path the report
/// names, so that rewritten rules the search produces again get their measured frequencies.
fn read_profile(
    path: &Path,
    program: &compart_analysis::Program,
    profile: &mut optimize::Profile,
) -> Result<(), String> {
    let text = compart_runtime::options::read_text(path)?;
    let report: compart_runtime::report::RunReport =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a run report: {e}", path.display()))?;
    let matches = |program: &compart_analysis::Program| {
        report.rules.iter().all(|entry| {
            let id = compart_analysis::model::RuleId(entry.rule);
            id.index() < program.rules.len() && program.rule(id).head.relation == entry.head
        })
    };
    let other;
    let source = if matches(program) {
        program
    } else {
        let text = compart_runtime::options::read_text(&named_by_report(path, &report.program))
            .map_err(|e| format!("{}: its rules are not this program's, and its program: {e}", path.display()))?;
        other = analyze(&text);
        if !matches(&other.program) {
            return Err(format!(
                "{}: its rules match neither this program nor {} (changed since the run?)",
                path.display(),
                report.program
            ));
        }
        &other.program
    };
    let own: std::collections::HashSet<String> = program.rules.iter().map(optimize::Profile::key).collect();
    let shared = report
        .rules
        .iter()
        .any(|e| own.contains(&optimize::Profile::key(source.rule(compart_analysis::model::RuleId(e.rule)))));
    if !shared {
        return Err(format!(
            "{}: none of its rules ({}) is in this program; give reports of this program or of rewritings of it",
            path.display(),
            report.program
        ));
    }
    for entry in &report.rules {
        let key = optimize::Profile::key(source.rule(compart_analysis::model::RuleId(entry.rule)));
        // The first report that measured a rule decides.
        profile.rule_facts.entry(key).or_insert(entry.facts_per_request * busiest_share(&report, &entry.component));
    }
    Ok(())
}

/// The share of a component's work that its busiest logical node did (its instances together),
/// by the facts it sent and replied (by those it received when the component sends nothing): a
/// report sums each rule over the component's nodes, and the cost model wants one logical
/// node's figures (an acceptor's third; all of the two proposers', as only the leader works).
fn busiest_share(report: &compart_runtime::report::RunReport, component: &str) -> f64 {
    let nodes: Vec<_> = report.nodes.iter().filter(|n| n.component == component).collect();
    let sends = nodes.iter().any(|n| n.facts_sent + n.facts_out > 0);
    let mut logical: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for n in nodes {
        // `proposer/1` or, partitioned, `proposer/1.3`: the logical node is before the dot.
        let node = n.name.split('.').next().unwrap_or(&n.name);
        *logical.entry(node).or_default() += if sends { n.facts_sent + n.facts_out } else { n.facts_in };
    }
    let total: u64 = logical.values().sum();
    match logical.values().max() {
        Some(&max) if total > 0 => max as f64 / total as f64,
        _ => 1.0 / logical.len().max(1) as f64,
    }
}

/// Requests of each input per client request under the workload `compart run` would drive with
/// this deployment (its `[workload]`, else the detected request/reply pair); None when there is
/// none to detect. Round-robin sends each node of the entry component its share.
fn workload_inputs(
    program: &compart_analysis::Program,
    deploy_text: Option<&str>,
    logical: &std::collections::BTreeMap<String, usize>,
) -> Option<std::collections::BTreeMap<String, f64>> {
    use compart_runtime::loadgen::{SendTo, Workload, WorkloadChoice};
    let mut choice = WorkloadChoice::default();
    if let Some(text) = deploy_text {
        let doc: toml::Table = toml::from_str(text).ok()?;
        if let Some(toml::Value::Table(t)) = doc.get("workload") {
            choice = choice.merge_toml(t).ok()?;
        }
    }
    let workload = Workload::detect(program, &choice).ok()?;
    let total: f64 = workload.ops.iter().map(|o| o.weight).sum();
    let mut out = std::collections::BTreeMap::new();
    for op in &workload.ops {
        let nodes = match workload.send_to {
            SendTo::All => 1,
            SendTo::RoundRobin => logical.get(&program.component(op.entry).name).copied().unwrap_or(1).max(1),
        };
        *out.entry(op.input_name.clone()).or_insert(0.0) += op.weight / total / nodes as f64;
    }
    Some(out)
}

/// The plan `compart optimize` prints (also used by `compart bench`), with run reports of the
/// program itself or of rewritings of it; Err(exit code, message).
/// The calibration is `compart optimize`'s default (see [`crate::calibrate::load`]).
pub fn plan_with_profiles(
    file: &Path,
    machines: usize,
    profiles: &[&Path],
    batch: optimize::BatchChoice,
) -> Result<optimize::Plan, (u8, String)> {
    plan_checked(file, machines, profiles, true, None, Search { batch, ..Search::default() })
}

/// The bounded refinement check (`compart verify`'s, with bounds for one step) as the optimizer's
/// gate: against the original program and its deployment file.
pub struct BoundedCheck {
    pub original_deploy: Option<String>,
}

impl optimize::StepCheck for BoundedCheck {
    fn check(&self, original: &str, rewritten: &str, invariants_only: bool) -> Result<String, String> {
        match crate::verify::check_rewrite(original, rewritten, self.original_deploy.as_deref(), invariants_only) {
            // No time in it: the steps are snapshot-tested.
            Ok(summary) => Ok(format!(
                "{}{} states, {}",
                if invariants_only { "invariants: " } else { "" },
                summary.states,
                if summary.exhausted { "every bounded workload exhausted" } else { "some workloads bounded" },
            )),
            Err(counterexample) => {
                let mut text = counterexample.what;
                if !counterexample.trace.is_empty() {
                    text.push_str("\nshortest schedule of the rewritten program:");
                    for (i, step) in counterexample.trace.iter().enumerate() {
                        text.push_str(&format!("\n  {:>3}. {step}", i + 1));
                    }
                }
                Err(text)
            }
        }
    }
}

/// [`plan_with_profiles`], with every step gated by the bounded check unless `check` is false,
/// and the rewrites `search` allows considered.
pub fn plan_checked(
    file: &Path,
    machines: usize,
    profiles: &[&Path],
    check: bool,
    calibration: Option<&Path>,
    search: Search,
) -> Result<optimize::Plan, (u8, String)> {
    let Search { batch, grid, thrifty, share, clients } = search;
    let (mut calibration, _) = crate::calibrate::load(calibration).map_err(|e| (2u8, e))?;
    // The plan is sized for the workload's clients: they set how full a tick, and a batch, is.
    if let Some(clients) = clients {
        calibration.clients = clients as f64;
    }
    let text = compart_runtime::options::read_text(file).map_err(|e| (2u8, e))?;
    let analysis = analyze(&text);
    if analysis.has_errors() {
        return Err((1, format!("{} has errors; run `compart check` first", file.display())));
    }
    let toml = deployment::beside(file);
    let deploy_text = compart_runtime::options::read_text(&toml).ok();
    let options = optimize::Options {
        machines,
        batch,
        grid,
        thrifty,
        share,
        ..optimizer_options(&analysis.program, deploy_text.as_deref(), &toml, profiles, calibration)
            .map_err(|e| (2u8, e))?
    };
    let gate = BoundedCheck { original_deploy: deploy_text };
    let gate_ref: Option<&dyn optimize::StepCheck> = if check { Some(&gate) } else { None };
    let mut plan = optimize::optimize_checked(&analysis, &options, gate_ref);
    let rewritten = analyze(&plan.text);
    // Ports and the workload stay as the user set them, so the output runs with `compart run` as is.
    if let Some(original) = &gate.original_deploy {
        plan.deployment = compart_runtime::deploy::carry_settings(original, &rewritten.program, &plan.deployment);
    }
    // Inputs only a timer feeds (thrifty's widening) get their `[timers]` entry.
    let timers: Vec<deployment::Change> = deployment::rewrite_changes(&analysis.program, &rewritten.program)
        .into_iter()
        .filter(|c| matches!(c, deployment::Change::Timer { .. }))
        .collect();
    if !timers.is_empty() {
        let updated = deployment::update(Some(&plan.deployment), &rewritten.program, &timers).map_err(|e| (2u8, e))?;
        plan.deployment = updated.text;
        plan.notes.extend(updated.notes);
    }
    Ok(plan)
}

/// What the optimizer knows of `program` besides its text: the profiles' measured frequencies,
/// the logical nodes of its deployment (`deploy_text`, read from `deploy_path`) and the batchings
/// it records (`[batches]`), the workload's mix of inputs, and the calibration. No machine budget.
pub fn optimizer_options(
    program: &compart_analysis::Program,
    deploy_text: Option<&str>,
    deploy_path: &Path,
    profiles: &[&Path],
    calibration: optimize::Calibration,
) -> Result<optimize::Options, String> {
    let profile = if profiles.is_empty() {
        None
    } else {
        let mut profile = optimize::Profile::default();
        for p in profiles {
            read_profile(p, program, &mut profile)?;
        }
        Some(profile)
    };
    // Logical node counts come from the deployment beside the program (`paxos.toml`), if any.
    let mut logical = std::collections::BTreeMap::new();
    if let Some(text) = deploy_text {
        match compart_runtime::Deployment::from_toml(text, program) {
            Ok(deployment) => {
                for node in deployment.logical_nodes() {
                    *logical.entry(program.component(node.component).name.clone()).or_insert(0) += 1;
                }
            }
            Err(e) => eprintln!("warning: ignoring {}: {e}", deploy_path.display()),
        }
    }
    let inputs = workload_inputs(program, deploy_text, &logical);
    let delivery = deployment::request_delivery(deploy_text).map_err(|e| format!("{}: {e}", deploy_path.display()))?;
    // A plan's batchings: its batch channels carry one fact per batch.
    let batched = deployment::batchings(deploy_text, program).map_err(|e| format!("{}: {e}", deploy_path.display()))?;
    Ok(optimize::Options { profile, logical, inputs, calibration, delivery, batched, ..Default::default() })
}

/// A file a run report names (its program, its deployment): as named when it is there, else the
/// file of that name beside the report (reports kept with the programs they ran, as in bench/).
pub fn named_by_report(report: &Path, named: &str) -> PathBuf {
    let path = Path::new(named);
    if path.is_file() {
        return path.to_path_buf();
    }
    match (report.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// What `compart optimize` considers besides decoupling and partitioning, each taken where it
/// pays unless turned off: batching, grid quorums, thrifty broadcasts (after a crash, their
/// answers wait for the widening timer) and shared proxies; and the closed-loop clients the plan
/// is sized for.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    pub batch: optimize::BatchChoice,
    pub grid: optimize::GridChoice,
    pub thrifty: bool,
    pub share: bool,
    /// Closed-loop clients, in place of the calibration's.
    pub clients: Option<usize>,
}

impl Default for Search {
    fn default() -> Self {
        let defaults = optimize::Options::default();
        Search {
            batch: defaults.batch,
            grid: defaults.grid,
            thrifty: defaults.thrifty,
            share: defaults.share,
            clients: None,
        }
    }
}

/// Search rewrites for the best predicted throughput on `machines` machines.
pub fn optimize(
    file: &Path,
    machines: usize,
    profiles: &[PathBuf],
    out: Option<&PathBuf>,
    check: bool,
    calibration: Option<&Path>,
    search: Search,
) -> u8 {
    let profiles: Vec<&Path> = profiles.iter().map(PathBuf::as_path).collect();
    let plan = match plan_checked(file, machines, &profiles, check, calibration, search) {
        Ok(plan) => plan,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    emit(&optimize::render_steps(&plan));
    match out {
        Some(dir) => {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("program");
            let program = dir.join(format!("{stem}.optimized.ded"));
            let deployment = dir.join(format!("{stem}.optimized.toml"));
            let written = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&program, &plan.text))
                .and_then(|_| std::fs::write(&deployment, &plan.deployment));
            if let Err(e) = written {
                eprintln!("error: cannot write to {}: {e}", dir.display());
                return 2;
            }
            emit(&format!("\nwrote {} and {}\n", program.display(), deployment.display()));
        }
        None => emit(&format!("\n{}\n{}", plan.deployment, plan.text)),
    }
    0
}
