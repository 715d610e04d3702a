//! `compart calibrate`: fit the optimizer's cost constants to run reports of this machine, and
//! the calibration file `compart optimize` and `compart bench` read (`--calibration FILE`, else
//! bench/calibration.toml under the current directory when present, else the built-in default,
//! which is that file's content).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use compart_analysis::optimize::{self, Calibration, NodeSample};
use compart_runtime::report::RunReport;
use serde::{Deserialize, Serialize};

/// Where `compart optimize` and `compart bench` look when no `--calibration` is given.
pub const DEFAULT_FILE: &str = "bench/calibration.toml";

/// Version of the file format below; bump on incompatible changes.
pub const VERSION: u32 = 1;

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Run reports (`compart run --report`), of any programs; every node of each is a sample.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the calibration here (TOML); without it, only print the fit.
    #[arg(short = 'o', long)]
    pub out: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CostUs {
    tick: f64,
    frame_recv: f64,
    frame_sent: f64,
    fact: f64,
    rule: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Saturation {
    tick_window: f64,
    frames_recv_per_tick: f64,
    frames_sent_per_tick: f64,
    clients: f64,
    cpu_per_node: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct FitInfo {
    reports: Vec<String>,
    nodes: usize,
    rms_relative_residual: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CalibrationFile {
    version: u32,
    cost_us: CostUs,
    saturation: Saturation,
    fit: Option<FitInfo>,
}

impl CalibrationFile {
    fn new(c: &Calibration, fit: Option<FitInfo>) -> Self {
        CalibrationFile {
            version: VERSION,
            cost_us: CostUs {
                tick: c.tick_us,
                frame_recv: c.frame_recv_us,
                frame_sent: c.frame_sent_us,
                fact: c.fact_us,
                rule: c.rule_us,
            },
            saturation: Saturation {
                tick_window: c.tick_window,
                frames_recv_per_tick: c.frames_recv_per_tick,
                frames_sent_per_tick: c.frames_sent_per_tick,
                clients: c.clients,
                cpu_per_node: c.cpu_per_node,
            },
            fit,
        }
    }

    fn calibration(&self) -> Calibration {
        Calibration {
            tick_us: self.cost_us.tick,
            frame_recv_us: self.cost_us.frame_recv,
            frame_sent_us: self.cost_us.frame_sent,
            fact_us: self.cost_us.fact,
            rule_us: self.cost_us.rule,
            tick_window: self.saturation.tick_window,
            frames_recv_per_tick: self.saturation.frames_recv_per_tick,
            frames_sent_per_tick: self.saturation.frames_sent_per_tick,
            clients: self.saturation.clients,
            cpu_per_node: self.saturation.cpu_per_node,
        }
    }
}

const HEADER: &str = "# Written by `compart calibrate`: this machine's CPU costs for the optimizer's cost model\n\
# (analysis/src/optimize/mod.rs): CPU-µs per tick, frame received, frame sent, fact, unit of rule\n\
# work; ticks per request x clients of a busy instance, frames per tick; the clients and CPU quota\n\
# per node of the runs. Refit: compart calibrate REPORT.json... -o FILE\n";

/// Parses a calibration file's text.
pub fn parse(text: &str) -> Result<Calibration, String> {
    let file: CalibrationFile = toml::from_str(text).map_err(|e| format!("not a calibration file: {e}"))?;
    if file.version != VERSION {
        return Err(format!("calibration file version {} (this compart reads {VERSION})", file.version));
    }
    let c = file.calibration();
    let values = [
        c.tick_us,
        c.frame_recv_us,
        c.frame_sent_us,
        c.fact_us,
        c.rule_us,
        c.tick_window,
        c.frames_recv_per_tick,
        c.frames_sent_per_tick,
    ];
    if values.iter().any(|v| !v.is_finite() || *v < 0.0) || c.clients <= 0.0 || c.cpu_per_node <= 0.0 {
        return Err("calibration constants must be non-negative, clients and cpu_per_node positive".into());
    }
    Ok(c)
}

/// The calibration for `compart optimize` / `compart bench`: the file given, else
/// [`DEFAULT_FILE`] when present, else the built-in default; with where it came from.
pub fn load(explicit: Option<&Path>) -> Result<(Calibration, String), String> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
        None => return Ok((Calibration::default(), "built-in".into())),
    };
    let text = compart_runtime::options::read_text(&path)?;
    let c = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((c, path.display().to_string()))
}

/// Body atoms of each rule of a report, from its program when that is still the program the
/// report ran, else from the rule's text alone.
fn rule_atoms(report: &RunReport) -> HashMap<u32, usize> {
    let program =
        compart_runtime::options::read_text(Path::new(&report.program)).ok().map(|t| compart_analysis::analyze(&t));
    let mut out = HashMap::new();
    for entry in &report.rules {
        let from_program = program.as_ref().and_then(|a| {
            let p = &a.program;
            let id = compart_analysis::model::RuleId(entry.rule);
            (id.index() < p.rules.len() && p.rule(id).head.relation == entry.head).then(|| p.rule(id).atoms().count())
        });
        let atoms = from_program.unwrap_or_else(|| {
            let a = compart_analysis::analyze(&format!("component c {{\n{}\n}}\n", entry.text));
            a.program.rules.first().map_or(1, |r| r.atoms().count())
        });
        out.insert(entry.rule, atoms);
    }
    out
}

/// Every node of a report as a sample: what it did per answered request, and its CPU.
pub fn samples(report: &RunReport, label: &str) -> Vec<NodeSample> {
    let requests = report.summary.ok as f64;
    if requests <= 0.0 {
        return Vec::new();
    }
    let atoms = rule_atoms(report);
    // Rules are reported summed over a component's nodes: each node gets the share of the work
    // that its share of the component's facts in says.
    let mut work: HashMap<&str, f64> = HashMap::new();
    for r in &report.rules {
        *work.entry(r.component.as_str()).or_default() +=
            r.facts as f64 * (1.0 + atoms.get(&r.rule).copied().unwrap_or(1) as f64);
    }
    let mut facts_in: HashMap<&str, (f64, usize)> = HashMap::new();
    for n in &report.nodes {
        let e = facts_in.entry(n.component.as_str()).or_default();
        e.0 += n.facts_in as f64;
        e.1 += 1;
    }
    let clients = report.workload.clients.unwrap_or(0) as f64;
    report
        .nodes
        .iter()
        .filter(|n| n.reported)
        .map(|n| {
            let (total_in, count) = facts_in[n.component.as_str()];
            let share = if total_in > 0.0 { n.facts_in as f64 / total_in } else { 1.0 / count as f64 };
            NodeSample {
                name: format!("{label}: {}", n.name),
                ticks: n.ticks as f64 / requests,
                frames_recv: n.net.frames_recv as f64 / requests,
                frames_sent: n.net.frames_sent as f64 / requests,
                facts: (n.facts_in + n.facts_sent + n.facts_out) as f64 / requests,
                rule_work: work.get(n.component.as_str()).copied().unwrap_or(0.0) * share / requests,
                facts_in: n.facts_in as f64 / requests,
                clients,
                cpu_us: n.cpu_s * 1e6 / requests,
                weight: 1.0 / count as f64,
            }
        })
        .collect()
}

/// The fit as text: constants, saturation figures, then every node's residual.
fn render(fit: &optimize::Fit, samples: &[NodeSample]) -> String {
    let c = &fit.calibration;
    let mut out = String::from("fitted CPU-µs (non-negative least squares on relative residuals):\n");
    for (name, v) in optimize::TERMS.iter().zip([c.tick_us, c.frame_recv_us, c.frame_sent_us, c.fact_us, c.rule_us]) {
        out.push_str(&format!("  {name:<11} {v:>9.3}\n"));
    }
    out.push_str(&format!(
        "saturation (medians of busy nodes): {:.2} ticks per request x clients, {:.2} frames received and \
         {:.2} sent per tick; {} clients, {} core(s) per node\n",
        c.tick_window, c.frames_recv_per_tick, c.frames_sent_per_tick, c.clients, c.cpu_per_node
    ));
    out.push_str(&format!(
        "rms relative residual {:.1}% over {} busy nodes\n\n",
        fit.rms_relative * 100.0,
        samples.iter().filter(|s| optimize::busy(s)).count()
    ));
    out.push_str("node                                       measured   fitted  residual  (CPU-µs/request)\n");
    for (s, f) in samples.iter().zip(&fit.fitted) {
        let residual =
            if optimize::busy(s) { format!("{:>+7.1}%", (f - s.cpu_us) / s.cpu_us * 100.0) } else { "   idle".into() };
        out.push_str(&format!("{:<42} {:>8.2} {:>8.2}  {residual}\n", s.name, s.cpu_us, f));
    }
    out
}

pub fn calibrate(args: CalibrateArgs) -> u8 {
    let mut all = Vec::new();
    let mut quota: Option<Option<f64>> = None;
    for path in &args.reports {
        let report: RunReport = match compart_runtime::options::read_text(path)
            .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{}: not a run report: {e}", path.display())))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        match quota {
            None => quota = Some(report.cpu_per_node),
            Some(q) if q != report.cpu_per_node => {
                eprintln!(
                    "error: {}: ran with a CPU quota per node of {:?}, the first report with {:?}: calibrate runs \
                     of one quota together",
                    path.display(),
                    report.cpu_per_node,
                    q
                );
                return 2;
            }
            Some(_) => {}
        }
        let label = path.file_stem().and_then(|s| s.to_str()).unwrap_or("report").to_string();
        all.extend(samples(&report, &label));
    }
    let cpu_per_node = quota.flatten().unwrap_or_else(|| {
        eprintln!("warning: the runs had no CPU quota per node (--cpu-per-node): predictions assume a core per node");
        1.0
    });
    let Some(fit) = optimize::fit(&all, cpu_per_node) else {
        eprintln!("error: no node of these reports did any work");
        return 2;
    };
    crate::explain::emit(&render(&fit, &all));
    if let Some(out) = &args.out {
        let info = FitInfo {
            reports: args.reports.iter().map(|p| p.display().to_string()).collect(),
            nodes: all.iter().filter(|s| optimize::busy(s)).count(),
            rms_relative_residual: (fit.rms_relative * 1000.0).round() / 1000.0,
        };
        let file = CalibrationFile::new(&rounded(&fit.calibration), Some(info));
        let text = format!("{HEADER}{}", toml::to_string(&file).expect("serializable"));
        if let Err(e) = std::fs::write(out, text) {
            eprintln!("error: cannot write {}: {e}", out.display());
            return 2;
        }
        crate::explain::emit(&format!("\nwrote {}\n", out.display()));
    }
    0
}

/// Four significant digits: the fit is not more precise, and the file stays readable.
fn rounded(c: &Calibration) -> Calibration {
    let r = |v: f64| {
        if v == 0.0 {
            return 0.0;
        }
        let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
        (v * scale).round() / scale
    };
    Calibration {
        tick_us: r(c.tick_us),
        frame_recv_us: r(c.frame_recv_us),
        frame_sent_us: r(c.frame_sent_us),
        fact_us: r(c.fact_us),
        rule_us: r(c.rule_us),
        tick_window: r(c.tick_window),
        frames_recv_per_tick: r(c.frames_recv_per_tick),
        frames_sent_per_tick: r(c.frames_sent_per_tick),
        clients: c.clients,
        cpu_per_node: c.cpu_per_node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compart_runtime::report::{NodeReport, RuleReport};

    /// A report whose nodes' CPU follows known constants exactly.
    fn synthetic(c: &Calibration, shapes: &[(u64, u64, u64, u64, u64)], seed: u64) -> RunReport {
        let requests = 10_000u64;
        let mut report = RunReport { cpu_per_node: Some(0.1), ..Default::default() };
        report.summary.ok = requests;
        report.workload.clients = Some(1000);
        report.program = "/nonexistent.ded".into();
        for (i, &(ticks, fr, fs, fin, fsent)) in shapes.iter().enumerate() {
            let component = format!("c{i}");
            // One rule `h(x) :- a(x), b(x).`: two atoms, so its work is 3 per fact.
            let rule_facts = (fin * (seed + i as u64)) % 7_000 + 500;
            let rule = RuleReport {
                rule: i as u32,
                component: component.clone(),
                head: "h".into(),
                text: "h(x) :- a(x), b(x).".into(),
                facts: rule_facts,
                ..Default::default()
            };
            report.rules.push(rule);
            let per = |v: u64| v as f64 / requests as f64;
            let cpu_us = c.tick_us * per(ticks)
                + c.frame_recv_us * per(fr)
                + c.frame_sent_us * per(fs)
                + c.fact_us * per(fin + fsent)
                + c.rule_us * 3.0 * per(rule_facts);
            let mut node = NodeReport {
                name: format!("{component}/0"),
                component,
                reported: true,
                cpu_s: cpu_us * requests as f64 / 1e6,
                ticks,
                facts_in: fin,
                facts_sent: fsent,
                ..Default::default()
            };
            node.net.frames_recv = fr;
            node.net.frames_sent = fs;
            report.nodes.push(node);
        }
        report
    }

    #[test]
    fn the_fit_recovers_the_constants_reports_were_made_with() {
        let truth = Calibration {
            tick_us: 45.0,
            frame_recv_us: 4.0,
            frame_sent_us: 7.0,
            fact_us: 0.5,
            rule_us: 0.2,
            ..Calibration::default()
        };
        let a = synthetic(&truth, &[(70, 50, 40, 40_000, 30_000), (120, 300, 90, 10_000, 10_000)], 3);
        let b = synthetic(&truth, &[(400, 900, 500, 6_000, 5_000), (90, 60, 200, 20_000, 60_000)], 11);
        let c = synthetic(&truth, &[(1500, 1300, 1000, 7_000, 7_000), (240, 120, 120, 30_000, 30_000)], 5);
        let mut samples = Vec::new();
        for (i, r) in [a, b, c].iter().enumerate() {
            samples.extend(super::samples(r, &format!("r{i}")));
        }
        let fit = optimize::fit(&samples, 0.1).unwrap();
        let got = &fit.calibration;
        let pairs = [
            (truth.tick_us, got.tick_us),
            (truth.frame_recv_us, got.frame_recv_us),
            (truth.frame_sent_us, got.frame_sent_us),
            (truth.fact_us, got.fact_us),
            (truth.rule_us, got.rule_us),
        ];
        for (want, have) in pairs {
            assert!((want - have).abs() < 1e-6 * want, "{pairs:?}");
        }
        assert!(fit.rms_relative < 1e-9, "{}", fit.rms_relative);
        assert_eq!(got.clients, 1000.0);
        assert_eq!(got.cpu_per_node, 0.1);
        // A file written with the fit reads back as the same constants.
        let text = format!("{HEADER}{}", toml::to_string(&CalibrationFile::new(got, None)).unwrap());
        assert_eq!(parse(&text).unwrap(), *got);
    }

    #[test]
    fn the_committed_calibration_is_the_built_in_default() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/calibration.toml")).unwrap();
        assert_eq!(parse(&text).unwrap(), Calibration::default());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(parse("version = 1\n").unwrap_err().contains("not a calibration file"));
        let future =
            toml::to_string(&CalibrationFile { version: 9, ..CalibrationFile::new(&Calibration::default(), None) })
                .unwrap();
        assert!(parse(&future).unwrap_err().contains("version 9"));
        let negative = CalibrationFile::new(&Calibration { tick_us: -1.0, ..Calibration::default() }, None);
        assert!(parse(&toml::to_string(&negative).unwrap()).unwrap_err().contains("non-negative"));
    }
}
