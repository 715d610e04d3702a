//! `compart bench`: for each bundled protocol, in one run, the optimizer's rewrite (as
//! `compart optimize --out`), its check (as `compart verify`), the original and the rewritten
//! program on the local cluster under the same workload (as `compart run`), and the scale-out
//! throughput predicted from the measured per-instance CPU costs, side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use compart_analysis::optimize::Plan;
use compart_runtime::cluster::launcher::{self, RunOptions};
use compart_runtime::loadgen::WorkloadChoice;
use compart_runtime::report::RunReport;
use serde::Serialize;

use crate::Format;

/// The bundled protocols with the machine budgets of docs/compartmentalization.md, and whether
/// `verify` compares invariants only (Paxos: which slot a request gets depends on timing).
const DEFAULTS: [(&str, usize, bool); 3] =
    [("voting", 12, false), ("two_phase_commit", 16, false), ("paxos", 29, true)];

/// The gains of the SIGMOD'24 paper's hand-made rewrites ("Optimizing Distributed Protocols
/// with Query Rewrites", Table 2), what the emulated gains are read against.
const PAPER_GAINS: [(&str, f64); 3] = [("voting", 2.5), ("two_phase_commit", 5.0), ("paxos", 3.0)];

pub const SCHEMA: &str = "compart-bench/1";

#[derive(Args)]
pub struct BenchArgs {
    /// `NAME` or `NAME=MACHINES` (repeatable): benchmark `DIR/NAME.ded` with `DIR/NAME.toml`
    /// (DIR is --examples); default: voting=12, two_phase_commit=16, paxos=29.
    #[arg(long = "protocol")]
    pub protocols: Vec<String>,
    /// Directory holding the programs and their deployment files.
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Requests per run (the same for the original and the rewritten program).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Closed-loop clients, each with one outstanding request.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seeds for the `verify` check of each rewrite.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Input facts per verify seed.
    #[arg(long, default_value_t = 12)]
    pub inputs: usize,
    /// Compare only invariants when verifying NAME (repeatable; paxos always is).
    #[arg(long = "invariants-only")]
    pub invariants_only: Vec<String>,
    /// Stop waiting for replies after this many seconds without one.
    #[arg(long, default_value = "20", value_parser = compart_runtime::options::parse_seconds)]
    pub reply_timeout: Duration,
    /// Write report.md, report.json, the run reports and the rewritten programs here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// The emulated cluster: every node process in its own cgroup with this fraction of one
    /// core (as `compart run --cpu-per-node`); the measured throughput ratio becomes the headline.
    #[arg(long)]
    pub cpu_per_node: Option<f64>,
    /// Runs of each configuration; the median by throughput is reported (default: 3 with
    /// --cpu-per-node, else 1).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// The optimizer never batches (`compart optimize --no-batch`); by default its search may.
    #[arg(long)]
    pub no_batch: bool,
}

impl BenchArgs {
    fn batch(&self) -> compart_analysis::optimize::BatchChoice {
        if self.no_batch {
            compart_analysis::optimize::BatchChoice::Off
        } else {
            compart_analysis::optimize::BatchChoice::Search
        }
    }

    fn repeat(&self) -> usize {
        self.repeat.unwrap_or(if self.cpu_per_node.is_some() { 3 } else { 1 }).max(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Protocol {
    name: String,
    machines: usize,
    invariants_only: bool,
}

fn protocols(args: &BenchArgs) -> Result<Vec<Protocol>, String> {
    let mut out: Vec<Protocol> = Vec::new();
    let specs: Vec<String> = if args.protocols.is_empty() {
        DEFAULTS.iter().map(|d| d.0.to_string()).collect()
    } else {
        args.protocols.clone()
    };
    for spec in specs {
        let (name, machines) = match spec.split_once('=') {
            Some((n, m)) => {
                let m = m.trim().parse::<usize>().ok().filter(|m| *m > 0).ok_or_else(|| {
                    format!("--protocol {spec}: expected NAME=MACHINES with a positive number of machines")
                })?;
                (n.trim().to_string(), Some(m))
            }
            None => (spec.trim().to_string(), None),
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("--protocol {spec}: expected a program name such as `voting`"));
        }
        let default = DEFAULTS.iter().find(|d| d.0 == name);
        let machines = machines.or(default.map(|d| d.1)).ok_or_else(|| {
            format!("--protocol {name}: no default machine budget for `{name}`; give one as {name}=MACHINES")
        })?;
        let invariants_only = default.is_some_and(|d| d.2) || args.invariants_only.contains(&name);
        if out.iter().any(|p| p.name == name) {
            return Err(format!("--protocol {name} is given twice"));
        }
        out.push(Protocol { name, machines, invariants_only });
    }
    Ok(out)
}

/// One cluster run, reduced to what the comparison needs (the full report is saved beside it).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunResult {
    pub program: String,
    pub deployment: String,
    /// Every request answered exactly once and correctly, and every node reported.
    pub ok: bool,
    /// Node processes (instances) of the deployment.
    pub instances: usize,
    pub sent: u64,
    pub ok_replies: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub mismatched: u64,
    pub unexpected: u64,
    pub nodes_not_reported: Vec<String>,
    pub errors: Vec<String>,
    pub throughput_rps: f64,
    /// Every repetition's throughput, in run order; the rest of this row is the median run's.
    pub throughputs_rps: Vec<f64>,
    pub p50_us: u64,
    pub p99_us: u64,
    /// CPU of every node process per answered request, microseconds.
    pub cpu_us_per_request: f64,
    /// The instance with the most CPU per request.
    pub bottleneck: String,
    pub bottleneck_cpu_us_per_request: f64,
    /// 1e6 / bottleneck_cpu_us_per_request: requests/s with one core per instance.
    pub predicted_scale_out_rps: f64,
    /// The instance with the most evaluation time (inside ticks) per request, and that time:
    /// the part of the cost that is the program's, without networking and scheduling.
    pub bottleneck_by_ticks: String,
    pub bottleneck_tick_us_per_request: f64,
    pub nodes: Vec<NodeCost>,
    /// The JSON run report, when written to --out.
    pub report: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeCost {
    pub name: String,
    pub component: String,
    pub cpu_us_per_request: f64,
    /// Time inside ticks (evaluation) per answered request, microseconds.
    pub tick_us_per_request: f64,
    /// Facts received (inputs and messages) per answered request.
    pub facts_in_per_request: f64,
    /// Facts received per tick: how much each tick's fixed cost is shared.
    pub facts_per_tick: f64,
    /// The process's CPU per tick and per frame (received and sent), microseconds.
    pub cpu_us_per_tick: f64,
    pub cpu_us_per_frame: f64,
}

impl RunResult {
    fn of(report: &RunReport, requests: u64) -> RunResult {
        let s = &report.summary;
        let per_req = |x: f64| if s.ok > 0 { x / s.ok as f64 } else { 0.0 };
        let nodes: Vec<NodeCost> = report
            .nodes
            .iter()
            .map(|n| NodeCost {
                name: n.name.clone(),
                component: n.component.clone(),
                cpu_us_per_request: n.cpu_us_per_request,
                tick_us_per_request: per_req(n.tick_s * 1e6),
                facts_in_per_request: per_req(n.facts_in as f64),
                facts_per_tick: if n.ticks > 0 { n.facts_in as f64 / n.ticks as f64 } else { 0.0 },
                cpu_us_per_tick: n.cpu_us_per_tick,
                cpu_us_per_frame: n.cpu_us_per_frame,
            })
            .collect();
        let worst = nodes.iter().max_by(|a, b| a.cpu_us_per_request.total_cmp(&b.cpu_us_per_request));
        let bottleneck_cpu = worst.map_or(0.0, |n| n.cpu_us_per_request);
        let worst_ticks = nodes.iter().max_by(|a, b| a.tick_us_per_request.total_cmp(&b.tick_us_per_request));
        let not_reported: Vec<String> = report.nodes.iter().filter(|n| !n.reported).map(|n| n.name.clone()).collect();
        RunResult {
            program: report.program.clone(),
            deployment: report.deployment.clone(),
            ok: !report.failed() && !s.interrupted && s.sent == requests && s.ok == requests && not_reported.is_empty(),
            instances: report.nodes.len(),
            sent: s.sent,
            ok_replies: s.ok,
            missing: s.missing,
            duplicates: s.duplicates,
            mismatched: s.mismatched,
            unexpected: s.unexpected,
            nodes_not_reported: not_reported,
            errors: report.errors.clone(),
            throughput_rps: s.throughput_rps,
            throughputs_rps: vec![s.throughput_rps],
            p50_us: s.latency_us.p50,
            p99_us: s.latency_us.p99,
            cpu_us_per_request: s.cpu_us_per_request,
            bottleneck: worst.map_or_else(String::new, |n| n.name.clone()),
            bottleneck_cpu_us_per_request: bottleneck_cpu,
            predicted_scale_out_rps: if bottleneck_cpu > 0.0 { 1e6 / bottleneck_cpu } else { 0.0 },
            bottleneck_by_ticks: worst_ticks.map_or_else(String::new, |n| n.name.clone()),
            bottleneck_tick_us_per_request: worst_ticks.map_or(0.0, |n| n.tick_us_per_request),
            nodes,
            report: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OptimizerResult {
    pub machines_budget: usize,
    /// Machines (instances) the plan's deployment uses.
    pub machines_used: usize,
    /// Predicted throughput of the final plan over the original's, static cost model.
    pub predicted_gain: f64,
    pub steps: Vec<String>,
    /// The same search with `--profile` = the original's run report.
    pub profile_predicted_gain: Option<f64>,
    pub profile_machines_used: Option<usize>,
    pub profile_steps: Vec<String>,
    pub profile_error: Option<String>,
    pub rewritten_program: String,
    pub rewritten_deployment: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    pub ok: bool,
    pub seeds: u64,
    pub inputs: usize,
    pub invariants_only: bool,
    /// What `compart verify` prints.
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProtocolResult {
    pub name: String,
    pub program: String,
    pub deployment: String,
    pub optimizer: Option<OptimizerResult>,
    pub verify: Option<VerifyResult>,
    pub base: Option<RunResult>,
    pub rewritten: Option<RunResult>,
    /// rewritten.predicted_scale_out_rps / base.predicted_scale_out_rps.
    pub measured_scale_out_gain: Option<f64>,
    /// Emulated cluster only: rewritten.throughput_rps / base.throughput_rps, both measured with
    /// the same CPU quota per node. The headline.
    pub emulated_gain: Option<f64>,
    /// The paper's hand-made rewrite's gain for this protocol, when it has one.
    pub paper_gain: Option<f64>,
    /// Round 2: the optimizer again, with both runs' reports as profiles (measured costs of the
    /// rules round 1 rewrote), when that changes the plan.
    pub profiled: Option<ProfiledRound>,
    /// Why a step could not run at all (the rest of the row is then missing).
    pub errors: Vec<String>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfiledRound {
    pub program: String,
    pub deployment: String,
    pub machines_used: usize,
    pub predicted_gain: f64,
    pub steps: Vec<String>,
    pub verify: Option<VerifyResult>,
    pub run: Option<RunResult>,
    /// run.predicted_scale_out_rps / base.predicted_scale_out_rps.
    pub measured_scale_out_gain: Option<f64>,
    /// Emulated cluster only: run.throughput_rps / base.throughput_rps.
    pub emulated_gain: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub schema: String,
    pub requests: u64,
    pub clients: usize,
    /// The emulated cluster's CPU quota per node, in cores (None: not emulated).
    pub cpu_per_node: Option<f64>,
    /// Runs per configuration (the median is reported).
    pub repeat: usize,
    /// Cores this process may use, and the 1/5/15-minute load averages when the bench started:
    /// every instance and the load generator share these cores.
    pub cores: usize,
    pub load_average: Option<String>,
    pub protocols: Vec<ProtocolResult>,
    /// Every run answered every request and every verify passed.
    pub ok: bool,
}

fn steps(plan: &Plan) -> Vec<String> {
    let base = plan.steps.first().map_or(1.0, |s| s.throughput.max(1e-9));
    plan.steps
        .iter()
        .map(|s| {
            format!("{:.2} ({:.1}x) on {} machines: {}", s.throughput, s.throughput / base, s.machines, s.description)
        })
        .collect()
}

fn gain(plan: &Plan) -> f64 {
    match plan.steps.first() {
        Some(first) if first.throughput > 0.0 => plan.estimate.throughput / first.throughput,
        _ => 0.0,
    }
}

struct Ctx<'a> {
    args: &'a BenchArgs,
    exe: PathBuf,
    /// Where rewritten programs and run reports go: --out, or a temporary directory.
    dir: PathBuf,
    keep: bool,
}

impl Ctx<'_> {
    /// `like`: the original's run, whose request and reply relations the rewritten program gets
    /// too (a rewrite may move the reply into a new component, where detection would not look).
    /// Runs the configuration `--repeat` times; returns the median run by throughput and every
    /// run's throughput. A failed repetition is the result (a run that loses requests is not
    /// hidden by two that did not).
    fn cluster_runs(
        &self,
        program: &Path,
        deploy: &Path,
        label: &str,
        like: Option<&RunReport>,
    ) -> Result<(RunReport, Vec<f64>), String> {
        let mut reports = Vec::new();
        for i in 0..self.args.repeat() {
            let label = if self.args.repeat() > 1 { format!("{label}, run {}", i + 1) } else { label.to_string() };
            let report = self.cluster_run(program, deploy, &label, like)?;
            if report.failed() || report.summary.ok < self.args.requests {
                let throughputs = vec![report.summary.throughput_rps];
                return Ok((report, throughputs));
            }
            reports.push(report);
        }
        Ok(median_run(reports))
    }

    fn cluster_run(
        &self,
        program: &Path,
        deploy: &Path,
        label: &str,
        like: Option<&RunReport>,
    ) -> Result<RunReport, String> {
        eprintln!("bench: running {label} ({} requests, {} clients)", self.args.requests, self.args.clients);
        let mut opts = RunOptions::new(program.to_path_buf(), deploy.to_path_buf(), self.exe.clone());
        // A mix is not pinned here: the optimizer's deployment file carries the [workload] table.
        if let Some(base) = like.filter(|b| b.workload.mix.len() <= 1) {
            let w = &base.workload;
            opts.choice = WorkloadChoice {
                entry: None,
                input: Some(w.input.clone()),
                output: Some(w.output.clone()),
                send_to: w.send_to.parse().ok(),
                ..Default::default()
            };
        }
        opts.clients = Some(self.args.clients);
        opts.requests = self.args.requests;
        // Free ports: the optimizer's deployments name none, and other clusters may be running.
        opts.auto_ports = true;
        opts.reply_timeout = self.args.reply_timeout.max(Duration::from_millis(100));
        opts.progress = !self.args.quiet;
        opts.cpu_per_node = self.args.cpu_per_node;
        opts.secret =
            std::env::var(compart_runtime::cluster::SECRET_ENV).ok().filter(|s| !s.is_empty()).map(String::into_bytes);
        launcher::run(&opts)
    }

    fn save_report(&self, report: &RunReport, name: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    fn protocol(&self, p: &Protocol) -> ProtocolResult {
        let program = self.args.examples.join(format!("{}.ded", p.name));
        let deploy = self.args.examples.join(format!("{}.toml", p.name));
        let mut r = ProtocolResult {
            name: p.name.clone(),
            program: program.display().to_string(),
            deployment: deploy.display().to_string(),
            optimizer: None,
            verify: None,
            base: None,
            rewritten: None,
            measured_scale_out_gain: None,
            emulated_gain: None,
            paper_gain: PAPER_GAINS.iter().find(|g| g.0 == p.name).map(|g| g.1),
            profiled: None,
            errors: Vec::new(),
            ok: false,
        };
        // 1. The rewrite, written as `compart optimize --out` writes it.
        eprintln!("bench: {}: optimize --machines {}", p.name, p.machines);
        let plan = match crate::explain::plan_with_profiles(&program, p.machines, &[], self.args.batch()) {
            Ok(plan) => plan,
            Err((_, e)) => {
                r.errors.push(format!("optimize: {e}"));
                return r;
            }
        };
        let new_program = self.dir.join(format!("{}.optimized.ded", p.name));
        let new_deploy = self.dir.join(format!("{}.optimized.toml", p.name));
        let written =
            std::fs::write(&new_program, &plan.text).and_then(|_| std::fs::write(&new_deploy, &plan.deployment));
        if let Err(e) = written {
            r.errors.push(format!("cannot write to {}: {e}", self.dir.display()));
            return r;
        }
        let mut optimizer = OptimizerResult {
            machines_budget: p.machines,
            machines_used: plan.estimate.machines,
            predicted_gain: gain(&plan),
            steps: steps(&plan),
            profile_predicted_gain: None,
            profile_machines_used: None,
            profile_steps: Vec::new(),
            profile_error: None,
            rewritten_program: new_program.display().to_string(),
            rewritten_deployment: new_deploy.display().to_string(),
        };
        // 2. The check.
        let invariants_only = p.invariants_only || plan.invariants_only;
        eprintln!(
            "bench: {}: verify ({} seeds{})",
            p.name,
            self.args.seeds,
            if invariants_only { ", invariants only" } else { "" }
        );
        match self.verify(&program, &new_program, invariants_only) {
            Ok(v) => r.verify = Some(v),
            Err(e) => r.errors.push(format!("verify: {e}")),
        }
        // 3. Both programs on the cluster, same workload.
        let mut base_report = None;
        let mut base_json = None;
        match self.cluster_runs(&program, &deploy, &format!("{} (original)", p.name), None) {
            Ok((report, throughputs)) => {
                let mut base = RunResult::of(&report, self.args.requests);
                base.throughputs_rps = throughputs;
                match self.save_report(&report, &format!("{}.base.json", p.name)) {
                    Ok(path) => {
                        // 4b. The optimizer again, weighted by what the original measured.
                        match crate::explain::plan_with_profiles(&program, p.machines, &[&path], self.args.batch()) {
                            Ok(plan) => {
                                optimizer.profile_predicted_gain = Some(gain(&plan));
                                optimizer.profile_machines_used = Some(plan.estimate.machines);
                                optimizer.profile_steps = steps(&plan);
                            }
                            Err((_, e)) => optimizer.profile_error = Some(e),
                        }
                        base.report = self.keep.then(|| path.display().to_string());
                        base_json = Some(path);
                    }
                    Err(e) => r.errors.push(e),
                }
                r.base = Some(base);
                base_report = Some(report);
            }
            Err(e) => r.errors.push(format!("run {}: {e}", program.display())),
        }
        r.optimizer = Some(optimizer);
        let label = format!("{} (rewritten)", p.name);
        let mut rewritten_report = None;
        match self.cluster_runs(&new_program, &new_deploy, &label, base_report.as_ref()) {
            Ok((report, throughputs)) => {
                let mut run = RunResult::of(&report, self.args.requests);
                run.throughputs_rps = throughputs;
                match self.save_report(&report, &format!("{}.rewritten.json", p.name)) {
                    Ok(path) => {
                        run.report = self.keep.then(|| path.display().to_string());
                        rewritten_report = Some(path);
                    }
                    Err(e) => r.errors.push(e),
                }
                r.rewritten = Some(run);
            }
            Err(e) => r.errors.push(format!("run {}: {e}", new_program.display())),
        }
        // A rewritten run's figure over the original run's.
        let ratio = |run: Option<&RunResult>, figure: fn(&RunResult) -> f64| match (&r.base, run) {
            (Some(b), Some(n)) if figure(b) > 0.0 => Some(figure(n) / figure(b)),
            _ => None,
        };
        let scale_out_gain = |run| ratio(run, |x| x.predicted_scale_out_rps);
        // Measured throughputs compare as gains only when every node had the same quota.
        let emulated = self.args.cpu_per_node.is_some();
        let emulated_gain = |run| ratio(run, |x| x.throughput_rps).filter(|_| emulated);
        r.measured_scale_out_gain = scale_out_gain(r.rewritten.as_ref());
        r.emulated_gain = emulated_gain(r.rewritten.as_ref());
        // 5. Round 2: profiles of both runs; the rules round 1 rewrote are now costed as measured.
        if let (Some(base_json), Some(rewritten_json), Some(base)) = (&base_json, &rewritten_report, &base_report) {
            match crate::explain::plan_with_profiles(
                &program,
                p.machines,
                &[base_json, rewritten_json],
                self.args.batch(),
            ) {
                Ok(plan2) if plan2.text != plan.text || plan2.deployment != plan.deployment => {
                    let mut round = self.profiled_round(p, &program, &plan2, base, &mut r.errors);
                    round.measured_scale_out_gain = scale_out_gain(round.run.as_ref());
                    round.emulated_gain = emulated_gain(round.run.as_ref());
                    r.profiled = Some(round);
                }
                Ok(_) => {}
                Err((_, e)) => r.errors.push(format!("optimize with both profiles: {e}")),
            }
        }
        r.ok = r.errors.is_empty()
            && r.verify.as_ref().is_some_and(|v| v.ok)
            && r.base.as_ref().is_some_and(|b| b.ok)
            && r.rewritten.as_ref().is_some_and(|b| b.ok)
            && r.profiled
                .as_ref()
                .is_none_or(|p| p.verify.as_ref().is_some_and(|v| v.ok) && p.run.as_ref().is_some_and(|r| r.ok));
        r
    }

    /// `invariants_only`: the protocol's outputs depend on timing, or the plan seals or batches.
    fn verify(&self, program: &Path, rewritten: &Path, invariants_only: bool) -> Result<VerifyResult, String> {
        let (ok, output) =
            crate::verify::verify_files(program, rewritten, self.args.seeds, self.args.inputs, invariants_only)?;
        Ok(VerifyResult { ok, seeds: self.args.seeds, inputs: self.args.inputs, invariants_only, output })
    }

    /// Write round 2's plan, verify it and run it like round 1's.
    fn profiled_round(
        &self,
        p: &Protocol,
        program: &Path,
        plan: &Plan,
        base: &RunReport,
        errors: &mut Vec<String>,
    ) -> ProfiledRound {
        let new_program = self.dir.join(format!("{}.profiled.ded", p.name));
        let new_deploy = self.dir.join(format!("{}.profiled.toml", p.name));
        let mut round = ProfiledRound {
            program: new_program.display().to_string(),
            deployment: new_deploy.display().to_string(),
            machines_used: plan.estimate.machines,
            predicted_gain: gain(plan),
            steps: steps(plan),
            verify: None,
            run: None,
            measured_scale_out_gain: None,
            emulated_gain: None,
        };
        let written =
            std::fs::write(&new_program, &plan.text).and_then(|_| std::fs::write(&new_deploy, &plan.deployment));
        if let Err(e) = written {
            errors.push(format!("cannot write to {}: {e}", self.dir.display()));
            return round;
        }
        eprintln!("bench: {}: round 2 (both runs as profiles): verify", p.name);
        match self.verify(program, &new_program, p.invariants_only || plan.invariants_only) {
            Ok(v) => round.verify = Some(v),
            Err(e) => errors.push(format!("verify round 2: {e}")),
        }
        match self.cluster_runs(&new_program, &new_deploy, &format!("{} (round 2)", p.name), Some(base)) {
            Ok((report, throughputs)) => {
                let mut run = RunResult::of(&report, self.args.requests);
                run.throughputs_rps = throughputs;
                match self.save_report(&report, &format!("{}.profiled.json", p.name)) {
                    Ok(path) => run.report = self.keep.then(|| path.display().to_string()),
                    Err(e) => errors.push(e),
                }
                round.run = Some(run);
            }
            Err(e) => errors.push(format!("run {}: {e}", new_program.display())),
        }
        round
    }
}

/// The run with the median throughput (the upper one of an even count), and every run's
/// throughput in run order.
fn median_run(mut reports: Vec<RunReport>) -> (RunReport, Vec<f64>) {
    let throughputs: Vec<f64> = reports.iter().map(|r| r.summary.throughput_rps).collect();
    reports.sort_by(|a, b| a.summary.throughput_rps.total_cmp(&b.summary.throughput_rps));
    let median = if reports.is_empty() { RunReport::default() } else { reports.swap_remove(reports.len() / 2) };
    (median, throughputs)
}

/// Exit codes: 0 every run answered every request and every rewrite verified; 1 otherwise;
/// 2 usage or I/O problems.
pub fn bench(args: BenchArgs) -> u8 {
    let list = match protocols(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the compart binary: {e}");
            return 2;
        }
    };
    let (dir, keep) = match &args.out {
        Some(d) => (d.clone(), true),
        None => (std::env::temp_dir().join(format!("compart-bench-{}", std::process::id())), false),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return 2;
    }
    if let Some(cpus) = args.cpu_per_node {
        // Refuse before any work where the emulated cluster cannot run.
        if let Err(e) = compart_runtime::cluster::cgroup::CpuQuota::new(cpus) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let ctx = Ctx { args: &args, exe, dir: dir.clone(), keep };
    let protocols: Vec<ProtocolResult> = list.iter().map(|p| ctx.protocol(p)).collect();
    let ok = protocols.iter().all(|p| p.ok);
    let report = BenchReport {
        schema: SCHEMA.into(),
        requests: args.requests,
        clients: args.clients,
        cpu_per_node: args.cpu_per_node,
        repeat: args.repeat(),
        cores,
        load_average,
        protocols,
        ok,
    };
    let markdown = render(&report, &args);
    let json = match serde_json::to_string_pretty(&report) {
        Ok(j) => j + "\n",
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut code = if ok { 0 } else { 1 };
    if keep {
        for (name, text) in [("report.md", &markdown), ("report.json", &json)] {
            if let Err(e) = std::fs::write(dir.join(name), text) {
                eprintln!("error: cannot write {}: {e}", dir.join(name).display());
                code = 2;
            }
        }
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    crate::explain::emit(match args.format {
        Format::Human => &markdown,
        Format::Json => &json,
    });
    if !ok {
        eprintln!("bench: FAILED: some run did not answer every request, or a rewrite did not verify (see the report)");
    }
    code
}

fn fmt_int(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// The markdown report: one table per protocol, the formulas, the verify output and the steps.
fn render(report: &BenchReport, args: &BenchArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# compart bench: original vs rewritten\n");
    let _ = writeln!(
        out,
        "Closed loop, {} clients, {} requests per run, every reply checked. Verify: {} seeds of {} inputs. \
         Machine: {} core(s) shared by every instance and the load generator; load average at start: {}.\n",
        report.clients,
        fmt_int(report.requests as f64),
        args.seeds,
        args.inputs,
        report.cores,
        report.load_average.as_deref().unwrap_or("unknown")
    );
    if let Some(cpus) = report.cpu_per_node {
        let _ = writeln!(
            out,
            "**Emulated cluster:** every node process ran in its own cgroup limited to {:.0}% of one core \
             (the load generator unconstrained); each configuration ran {} time(s), the median by throughput \
             is shown. Emulated gain = the rewritten program's measured requests/s / the original's, at the \
             same quota per node.\n",
            cpus * 100.0,
            report.repeat
        );
        let _ = writeln!(
            out,
            "| protocol | original req/s | rewritten req/s | emulated gain (measured) | round 2 (profiled) | \
             optimizer's prediction (static) | SIGMOD'24, by hand |\n| --- | --- | --- | --- | --- | --- | --- |"
        );
        for p in &report.protocols {
            let rps = |r: Option<&RunResult>| r.map_or("—".to_string(), |r| fmt_int(r.throughput_rps));
            let x = |g: Option<f64>| g.map_or("—".to_string(), |g| format!("{g:.2}x"));
            let round2 = p
                .profiled
                .as_ref()
                .map_or("—".to_string(), |r| format!("{} req/s, {}", rps(r.run.as_ref()), x(r.emulated_gain)));
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | **{}** | {} | {} | {} |",
                p.name,
                if p.ok { "" } else { " (FAILED)" },
                rps(p.base.as_ref()),
                rps(p.rewritten.as_ref()),
                x(p.emulated_gain),
                round2,
                x(p.optimizer.as_ref().map(|o| o.predicted_gain)),
                x(p.paper_gain)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "- CPU-µs/request of an instance = its process's CPU time (user + system) / answered requests.\n\
         - Predicted scale-out requests/s = 1e6 / (CPU-µs/request of the most loaded instance): the \
         throughput if every instance had a core of its own and nothing else limited it.\n\
         - Measured scale-out gain = predicted scale-out requests/s of the rewritten run / of the original run.\n\
         - Optimizer's predicted gain = its cost model's throughput for the plan / for the original \
         (static, and with `--profile` = the original's run report).\n\
         - tick-µs/request = wall-clock time inside ticks (rule evaluation) / answered requests; it \
         includes time a process was descheduled mid-tick, so it is inflated when instances share cores. \
         facts/tick = facts received / ticks: how many facts share each tick's fixed costs. CPU-µs/tick and \
         CPU-µs/frame = the process's whole CPU time / its ticks, / the frames it received and sent.\n"
    );
    for p in &report.protocols {
        let _ = writeln!(out, "## {}{}\n", p.name, if p.ok { "" } else { " — FAILED" });
        let _ = write!(out, "`{}` with `{}`", p.program, p.deployment);
        if let Some(o) = &p.optimizer {
            let _ = writeln!(
                out,
                "; rewritten by `compart optimize --machines {}`: `{}` with `{}`.\n",
                o.machines_budget, o.rewritten_program, o.rewritten_deployment
            );
        } else {
            let _ = writeln!(out, ".\n");
        }
        for e in &p.errors {
            let _ = writeln!(out, "**error:** {e}\n");
        }
        let mut runs: Vec<(&str, Option<&RunResult>)> =
            vec![("original", p.base.as_ref()), ("rewritten", p.rewritten.as_ref())];
        if let Some(round) = &p.profiled {
            runs.push(("round 2 (profiled)", round.run.as_ref()));
        }
        let cell = |f: &dyn Fn(&RunResult) -> String, r: Option<&RunResult>| r.map_or("—".to_string(), f);
        let row = |out: &mut String, label: &str, f: &dyn Fn(&RunResult) -> String| {
            let cells: Vec<String> = runs.iter().map(|(_, r)| cell(f, *r)).collect();
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        };
        // A row with a value for the rewritten runs only (gains, verify).
        let extra = |out: &mut String, label: &str, rewritten: String, round2: Option<String>| {
            let tail = if runs.len() > 2 { format!(" | {}", round2.unwrap_or_default()) } else { String::new() };
            let _ = writeln!(out, "| {label} | | {rewritten}{tail} |");
        };
        let names: Vec<&str> = runs.iter().map(|r| r.0).collect();
        let _ = writeln!(out, "| | {} |\n| --- |{}", names.join(" | "), " --- |".repeat(runs.len()));
        row(&mut out, "instances (processes)", &|r| r.instances.to_string());
        row(&mut out, "answered / sent", &|r| {
            let mut s = format!("{} / {}", fmt_int(r.ok_replies as f64), fmt_int(r.sent as f64));
            let bad = [
                ("missing", r.missing),
                ("duplicate", r.duplicates),
                ("mismatched", r.mismatched),
                ("unexpected", r.unexpected),
            ];
            for (what, n) in bad.iter().filter(|b| b.1 > 0) {
                let _ = write!(s, ", **{n} {what}**");
            }
            if !r.nodes_not_reported.is_empty() {
                let _ = write!(s, ", **no report from {}**", r.nodes_not_reported.join(", "));
            }
            if !r.ok {
                s.push_str(" **FAILED**");
            }
            s
        });
        row(&mut out, "measured requests/s", &|r| {
            let mut s = fmt_int(r.throughput_rps);
            if r.throughputs_rps.len() > 1 {
                let all: Vec<String> = r.throughputs_rps.iter().map(|t| fmt_int(*t)).collect();
                let _ = write!(s, " (median of {})", all.join(", "));
            }
            s
        });
        row(&mut out, "latency p50 / p99", &|r| format!("{} / {}", ms(r.p50_us), ms(r.p99_us)));
        row(&mut out, "CPU-µs/request, all instances", &|r| format!("{:.1}", r.cpu_us_per_request));
        row(&mut out, "bottleneck instance: CPU-µs/request", &|r| {
            format!("{}: {:.1}", r.bottleneck, r.bottleneck_cpu_us_per_request)
        });
        row(&mut out, "predicted scale-out requests/s", &|r| fmt_int(r.predicted_scale_out_rps));
        row(&mut out, "most evaluation time: instance, tick-µs/request", &|r| {
            format!("{}: {:.1}", r.bottleneck_by_ticks, r.bottleneck_tick_us_per_request)
        });
        if let Some(g) = p.emulated_gain {
            let round2 = p.profiled.as_ref().and_then(|r| r.emulated_gain).map(|g| format!("**{g:.2}x**"));
            extra(&mut out, "emulated gain (measured requests/s ratio)", format!("**{g:.2}x**"), round2);
        }
        if let Some(g) = p.measured_scale_out_gain {
            let round2 = p.profiled.as_ref().and_then(|r| r.measured_scale_out_gain).map(|g| format!("{g:.2}x"));
            extra(&mut out, "measured scale-out gain", format!("{g:.2}x"), round2);
        }
        if let Some(o) = &p.optimizer {
            let profile = match (o.profile_predicted_gain, &o.profile_error) {
                (Some(g), _) => format!("{g:.2}x on {} machines", o.profile_machines_used.unwrap_or(0)),
                (None, Some(e)) => format!("error: {e}"),
                (None, None) => "— (no run report)".into(),
            };
            let round2 = p
                .profiled
                .as_ref()
                .map(|r| format!("{:.2}x on {} machines (both runs as profiles)", r.predicted_gain, r.machines_used));
            extra(
                &mut out,
                "optimizer's predicted gain: static / with profile",
                format!("{:.2}x on {} machines / {profile}", o.predicted_gain, o.machines_used),
                round2,
            );
        }
        let verdict = |v: Option<&VerifyResult>| match v {
            Some(v) => format!(
                "{} ({} seeds{})",
                if v.ok { "passed" } else { "**FAILED**" },
                v.seeds,
                if v.invariants_only { ", invariants only" } else { ", outputs and invariants" }
            ),
            None => "**not run**".into(),
        };
        let round2 = p.profiled.as_ref().map(|r| verdict(r.verify.as_ref()));
        extra(&mut out, "verify", verdict(p.verify.as_ref()), round2);
        out.push('\n');
        if runs.iter().any(|r| r.1.is_some()) {
            let _ = writeln!(
                out,
                "| run | instance | CPU-µs/request | tick-µs/request | facts in/request | facts/tick | CPU-µs/tick | CPU-µs/frame |\n\
                 | --- | --- | --- | --- | --- | --- | --- | --- |"
            );
        }
        for &(label, r) in &runs {
            for n in r.map_or(&[][..], |r| &r.nodes[..]) {
                let _ = writeln!(
                    out,
                    "| {label} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} |",
                    n.name,
                    n.cpu_us_per_request,
                    n.tick_us_per_request,
                    n.facts_in_per_request,
                    n.facts_per_tick,
                    n.cpu_us_per_tick,
                    n.cpu_us_per_frame
                );
            }
        }
        out.push('\n');
        let mut listed = false;
        for &(label, r) in &runs {
            for e in r.map_or(&[][..], |r| &r.errors[..]).iter().take(5) {
                let _ = writeln!(out, "- {label} run error: {e}");
                listed = true;
            }
        }
        if listed {
            out.push('\n');
        }
        if let Some(o) = &p.optimizer {
            let _ = writeln!(out, "Optimizer steps (static cost model):\n");
            for s in &o.steps {
                let _ = writeln!(out, "- {s}");
            }
            if !o.profile_steps.is_empty() {
                let _ = writeln!(out, "\nWith `--profile` (the original's run report):\n");
                for s in &o.profile_steps {
                    let _ = writeln!(out, "- {s}");
                }
            }
            out.push('\n');
        }
        if let Some(round) = &p.profiled {
            let _ = writeln!(
                out,
                "Round 2, `--profile` with both runs' reports (`{}` with `{}`):\n",
                round.program, round.deployment
            );
            for s in &round.steps {
                let _ = writeln!(out, "- {s}");
            }
            out.push('\n');
        }
        if let Some(v) = &p.verify {
            let _ = writeln!(out, "Verify output:\n\n```\n{}```\n", v.output);
        }
        if let Some(v) = p.profiled.as_ref().and_then(|r| r.verify.as_ref()) {
            let _ = writeln!(out, "Verify output, round 2:\n\n```\n{}```\n", v.output);
        }
    }
    let _ = writeln!(out, "Overall: {}", if report.ok { "ok" } else { "FAILED" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> BenchArgs {
        Wrap::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).unwrap().args
    }

    #[test]
    fn bench_batches_unless_told_not_to() {
        use compart_analysis::optimize::BatchChoice;
        assert_eq!(parse(&[]).batch(), BatchChoice::Search);
        assert_eq!(parse(&["--no-batch"]).batch(), BatchChoice::Off);
    }

    #[test]
    fn protocols_default_and_override() {
        let all = protocols(&parse(&[])).unwrap();
        let names: Vec<(&str, usize, bool)> =
            all.iter().map(|p| (p.name.as_str(), p.machines, p.invariants_only)).collect();
        assert_eq!(names, [("voting", 12, false), ("two_phase_commit", 16, false), ("paxos", 29, true)]);
        let one =
            protocols(&parse(&["--protocol", "paxos=7", "--protocol", "kvs=5", "--invariants-only", "kvs"])).unwrap();
        assert_eq!(
            one,
            [
                Protocol { name: "paxos".into(), machines: 7, invariants_only: true },
                Protocol { name: "kvs".into(), machines: 5, invariants_only: true }
            ]
        );
        for bad in [
            &["--protocol", "kvs"][..],
            &["--protocol", "voting=0"],
            &["--protocol", "voting=x"],
            &["--protocol", "voting", "--protocol", "voting=3"],
        ] {
            assert!(protocols(&parse(bad)).is_err(), "{bad:?}");
        }
    }

    fn report(nodes: &[(&str, f64, bool)], ok: u64) -> RunReport {
        let mut r = RunReport::default();
        r.summary.sent = 100;
        r.summary.ok = ok;
        r.summary.missing = 100 - ok;
        r.nodes = nodes
            .iter()
            .map(|(n, cpu, reported)| compart_runtime::report::NodeReport {
                name: n.to_string(),
                component: n.split('/').next().unwrap().to_string(),
                cpu_us_per_request: *cpu,
                reported: *reported,
                ..Default::default()
            })
            .collect();
        r
    }

    #[test]
    fn bottleneck_and_prediction_come_from_the_most_loaded_instance() {
        let r = RunResult::of(&report(&[("leader/0", 20.0, true), ("participant/0", 40.0, true)], 100), 100);
        assert!(r.ok);
        assert_eq!(r.bottleneck, "participant/0");
        assert_eq!(r.predicted_scale_out_rps, 25_000.0);
        // A missing reply, or a node that did not report, is a failure.
        assert!(!RunResult::of(&report(&[("leader/0", 20.0, true)], 99), 100).ok);
        let silent = RunResult::of(&report(&[("leader/0", 20.0, false)], 100), 100);
        assert!(!silent.ok);
        assert_eq!(silent.nodes_not_reported, ["leader/0"]);
    }

    fn node(name: &str, cpu: f64, tick_s: f64, facts_in: u64, ticks: u64) -> compart_runtime::report::NodeReport {
        compart_runtime::report::NodeReport {
            name: name.into(),
            component: name.split('/').next().unwrap().into(),
            reported: true,
            cpu_us_per_request: cpu,
            tick_s,
            facts_in,
            ticks,
            ..Default::default()
        }
    }

    fn run(nodes: Vec<compart_runtime::report::NodeReport>, ok: u64, errors: Vec<String>) -> RunResult {
        let mut r = RunReport::default();
        r.summary.sent = 100;
        r.summary.ok = ok;
        r.summary.missing = 100 - ok;
        r.summary.throughput_rps = 12_345.6;
        r.summary.latency_us.p50 = 1_200;
        r.summary.latency_us.p99 = 4_500;
        r.summary.cpu_us_per_request = nodes.iter().map(|n| n.cpu_us_per_request).sum();
        r.nodes = nodes;
        r.errors = errors;
        RunResult::of(&r, 100)
    }

    /// The layout of the markdown report, and that a failed run and a failed verify show as
    /// failures (in the row, the heading and the overall line).
    #[test]
    fn report_shows_both_runs_and_every_failure() {
        let optimizer = |name: &str| OptimizerResult {
            machines_budget: 12,
            machines_used: 10,
            predicted_gain: 6.666,
            steps: vec!["5.00 (1.0x) on 4 machines: original program".into()],
            profile_predicted_gain: Some(6.0),
            profile_machines_used: Some(12),
            profile_steps: vec![],
            profile_error: None,
            rewritten_program: format!("out/{name}.optimized.ded"),
            rewritten_deployment: format!("out/{name}.optimized.toml"),
        };
        let base =
            run(vec![node("leader/0", 20.0, 0.001, 400, 10), node("participant/0", 5.0, 0.0002, 100, 2)], 100, vec![]);
        let good = ProtocolResult {
            name: "voting".into(),
            program: "examples/voting.ded".into(),
            deployment: "examples/voting.toml".into(),
            optimizer: Some(optimizer("voting")),
            verify: Some(VerifyResult {
                ok: true,
                seeds: 2,
                inputs: 12,
                invariants_only: false,
                output: "no difference found over 2 seed(s)\n".into(),
            }),
            base: Some(RunResult { throughputs_rps: vec![12_000.0, 12_345.6, 13_000.0], ..base.clone() }),
            rewritten: Some(run(
                vec![node("leader/0.0", 8.0, 0.0003, 60, 12), node("leader/0.1", 9.0, 0.0003, 60, 12)],
                100,
                vec![],
            )),
            measured_scale_out_gain: Some(20.0 / 9.0),
            emulated_gain: Some(2.6),
            paper_gain: Some(2.5),
            profiled: None,
            errors: vec![],
            ok: true,
        };
        let bad = ProtocolResult {
            name: "paxos".into(),
            program: "examples/paxos.ded".into(),
            deployment: "examples/paxos.toml".into(),
            optimizer: Some(optimizer("paxos")),
            verify: Some(VerifyResult {
                ok: false,
                seeds: 2,
                inputs: 12,
                invariants_only: true,
                output: "seed 0: ...\nthe rewritten program differs from the original\n".into(),
            }),
            base: Some(base),
            rewritten: Some(run(vec![node("proposer/0", 30.0, 0.002, 100, 5)], 97, vec!["request 7: no reply".into()])),
            measured_scale_out_gain: None,
            emulated_gain: None,
            paper_gain: Some(3.0),
            profiled: None,
            errors: vec!["run out/paxos.optimized.ded: something broke".into()],
            ok: false,
        };
        let report = BenchReport {
            schema: SCHEMA.into(),
            requests: 100,
            clients: 4,
            cpu_per_node: Some(0.1),
            repeat: 3,
            cores: 2,
            load_average: Some("1.00 2.00 3.00".into()),
            protocols: vec![good, bad],
            ok: false,
        };
        let md = render(&report, &parse(&["--seeds", "2"]));
        for failure in
            ["## paxos — FAILED", "**3 missing**", "**FAILED** (2 seeds", "request 7: no reply", "Overall: FAILED"]
        {
            assert!(md.contains(failure), "{failure} not shown");
        }
        insta::assert_snapshot!(md);
    }

    #[test]
    fn the_median_run_is_reported_with_every_throughput() {
        let at = |rps: f64| {
            let mut r = RunReport::default();
            r.summary.throughput_rps = rps;
            r
        };
        let (median, all) = median_run(vec![at(300.0), at(100.0), at(200.0)]);
        assert_eq!(median.summary.throughput_rps, 200.0);
        assert_eq!(all, [300.0, 100.0, 200.0]);
        assert_eq!(median_run(vec![at(5.0)]).0.summary.throughput_rps, 5.0);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(fmt_int(1234567.4), "1,234,567");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_int(-1000.0), "-1,000");
    }
}
