//! The run report: what `compart run --report out.json` writes (schema in runtime/README.md),
//! the table printed at the end of a run, and the SVG plot of throughput and latency over time.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::net::NetStatsSnapshot;

/// Version of the JSON schema below; bump on incompatible changes.
pub const SCHEMA: &str = "compart-run-report/1";

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    pub schema: String,
    pub program: String,
    pub deployment: String,
    /// The emulated cluster's CPU quota per node, in cores (None: nodes were not constrained).
    #[serde(default)]
    pub cpu_per_node: Option<f64>,
    pub workload: WorkloadReport,
    pub summary: Summary,
    /// One sample per interval of the run.
    pub timeline: Vec<Sample>,
    pub nodes: Vec<NodeReport>,
    /// Facts derived per rule, summed over the nodes that run it.
    pub rules: Vec<RuleReport>,
    pub faults: Vec<FaultEvent>,
    /// The first reply errors (up to 20), as text.
    pub errors: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct WorkloadReport {
    /// "closed" (clients with one outstanding request each) or "open" (fixed rate).
    pub mode: String,
    pub clients: Option<usize>,
    pub rate: Option<f64>,
    pub requests: u64,
    /// The first op of the mix (the only one without a mix).
    pub entry: String,
    pub input: String,
    pub output: String,
    pub send_to: String,
    /// Every request/reply pair driven, with its weight and counts.
    #[serde(default)]
    pub mix: Vec<OpReport>,
    /// The key space, when requests draw keys from one.
    #[serde(default)]
    pub keys: Option<KeysReport>,
    /// Seed of the request stream.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct OpReport {
    pub entry: String,
    pub input: String,
    pub output: String,
    pub weight: f64,
    pub sent: u64,
    /// Replies that passed every check.
    pub ok: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct KeysReport {
    /// The input column holding the key.
    pub column: String,
    pub count: u64,
    /// `uniform` or `zipf:THETA`.
    pub distribution: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub sent: u64,
    /// Replies that passed every check.
    pub ok: u64,
    /// Requests that got no reply before the run ended.
    pub missing: u64,
    pub duplicates: u64,
    pub mismatched: u64,
    pub unexpected: u64,
    /// Replies to an earlier client's requests (`compart load` against nodes that served
    /// another run before), not checked: ids below this run's first.
    #[serde(default)]
    pub earlier_replies: u64,
    /// From the first request to the last reply, seconds.
    pub duration_s: f64,
    /// ok / duration_s.
    pub throughput_rps: f64,
    pub latency_us: Latency,
    /// CPU seconds of every node process together, per ok reply, in microseconds.
    pub cpu_us_per_request: f64,
    /// CPU seconds of the launcher (load generator) itself, not included above.
    pub launcher_cpu_s: f64,
    pub interrupted: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// End of the interval, seconds since the first request.
    pub t_s: f64,
    /// Replies in this interval, per second.
    pub throughput_rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct NodeReport {
    /// `component/index` as in the deployment.
    pub name: String,
    pub component: String,
    pub addr: u32,
    /// Pid of the last process that ran this node.
    pub pid: u32,
    /// Times the node was killed and restarted by a fault.
    pub restarts: u32,
    /// Whether the node answered the final statistics request (a node that died did not).
    pub reported: bool,
    /// CPU seconds of every process that ran this node (killed ones read just before the kill).
    pub cpu_s: f64,
    pub cpu_us_per_request: f64,
    pub ticks: u64,
    pub tick_s: f64,
    /// The node's whole CPU (engine, network, kernel) divided by its ticks, and by the frames it
    /// received and sent: the fixed costs a tick and a frame carry.
    #[serde(default)]
    pub cpu_us_per_tick: f64,
    #[serde(default)]
    pub cpu_us_per_frame: f64,
    /// Emulated cluster only: CFS periods in which the node's group was throttled, of all periods.
    #[serde(default)]
    pub throttled: Option<(u64, u64)>,
    /// Facts that entered ticks (channel messages and inputs).
    pub facts_in: u64,
    pub facts_sent: u64,
    pub facts_out: u64,
    pub net: NetStatsSnapshot,
    /// Table sizes at the end.
    pub tables: Vec<(String, usize)>,
    pub recovered_changes: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct RuleReport {
    /// The analysis' `RuleId`.
    pub rule: u32,
    pub component: String,
    pub head: String,
    /// The rule's number in its component (`Program::rule_number`, as `--decouple COMPONENT:N`
    /// takes it); 0 in reports written before it was recorded.
    #[serde(default)]
    pub number: u32,
    /// 1-based source line of the rule.
    pub line: u32,
    pub text: String,
    pub facts: u64,
    /// Evaluation time, seconds, summed over nodes.
    pub eval_s: f64,
    /// facts / ok replies.
    pub facts_per_request: f64,
}

impl RuleReport {
    /// `proposer rule 12 (line 179)`: the number `--decouple proposer:12` takes, and where it is.
    pub fn label(&self) -> String {
        match self.number {
            0 => format!("{} (line {})", self.component, self.line),
            n => format!("{} rule {n} (line {})", self.component, self.line),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct FaultEvent {
    pub t_s: f64,
    pub node: String,
    /// "kill" or "restart".
    pub action: String,
}

impl RunReport {
    /// A human-readable summary: workload, latency, per-node costs, top rules.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} requests ({} {}) -> {} ok, {} missing, {} duplicate, {} mismatched, {} unexpected",
            s.sent, self.workload.input, self.workload.mode, s.ok, s.missing, s.duplicates, s.mismatched, s.unexpected
        );
        let _ = writeln!(
            out,
            "throughput {:.0} req/s over {:.2} s; latency p50 {} us, p99 {} us, p99.9 {} us, max {} us; {:.1} CPU-us/request",
            s.throughput_rps, s.duration_s, s.latency_us.p50, s.latency_us.p99, s.latency_us.p999, s.latency_us.max, s.cpu_us_per_request
        );
        let w = &self.workload;
        if w.mix.len() > 1 || w.keys.is_some() {
            let total: f64 = w.mix.iter().map(|o| o.weight).sum::<f64>().max(1e-9);
            let ops: Vec<String> = w
                .mix
                .iter()
                .map(|o| format!("{} {:.0}% ({} sent, {} ok)", o.input, 100.0 * o.weight / total, o.sent, o.ok))
                .collect();
            let keys = w
                .keys
                .as_ref()
                .map_or(String::new(), |k| format!("; {} keys `{}`, {}", k.count, k.column, k.distribution));
            let _ = writeln!(out, "mix: {}{keys}", ops.join(", "));
        }
        if let Some(cpus) = self.cpu_per_node {
            let _ = writeln!(out, "emulated cluster: every node limited to {:.0}% of one core", cpus * 100.0);
        }
        let _ = writeln!(
            out,
            "\n{:<16} {:>7} {:>9} {:>9} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "node",
            "cpu s",
            "us/req",
            "ticks",
            "us/tick",
            "us/frame",
            "msgs sent",
            "frames out",
            "msgs recv",
            "frames in",
            "restarts"
        );
        for n in &self.nodes {
            let throttled = match n.throttled {
                Some((t, p)) if p > 0 => format!("  throttled {:.0}%", 100.0 * t as f64 / p as f64),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<16} {:>7.2} {:>9.1} {:>9} {:>8.1} {:>9.1} {:>10} {:>10} {:>10} {:>10} {:>8}{}{}",
                n.name,
                n.cpu_s,
                n.cpu_us_per_request,
                n.ticks,
                n.cpu_us_per_tick,
                n.cpu_us_per_frame,
                n.net.msgs_sent,
                n.net.frames_sent,
                n.net.msgs_recv,
                n.net.frames_recv,
                n.restarts,
                throttled,
                if n.reported { "" } else { "  (no report)" }
            );
        }
        let mut rules: Vec<&RuleReport> = self.rules.iter().filter(|r| r.facts > 0).collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.facts));
        if !rules.is_empty() {
            let _ = writeln!(out, "\n{:>10} {:>9}  rule (top 10 by facts derived)", "facts", "per req");
            for r in rules.iter().take(10) {
                let _ = writeln!(out, "{:>10} {:>9.2}  {} {}", r.facts, r.facts_per_request, r.label(), r.text);
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }

    /// Throughput and latency over time, as an SVG file.
    pub fn plot(&self, path: &Path) -> Result<(), String> {
        use plotters::prelude::*;
        let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (top, bottom) = root.split_vertically(300);
        let t_max = self.timeline.last().map(|s| s.t_s).unwrap_or(1.0).max(0.001);
        let tp_max = self.timeline.iter().map(|s| s.throughput_rps).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&top)
            .caption("throughput (replies/s)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..tp_max)
            .map_err(|x| e(&x))?;
        chart.configure_mesh().x_desc("seconds").draw().map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t_s, s.throughput_rps)), &BLUE))
            .map_err(|x| e(&x))?;
        let lat_max = self.timeline.iter().map(|s| s.p99_us as f64).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .caption("latency (us): p50 blue, p99 red", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..lat_max)
            .map_err(|x| e(&x))?;
        chart.configure_mesh().x_desc("seconds").draw().map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t_s, s.p50_us as f64)), &BLUE))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t_s, s.p99_us as f64)), &RED))
            .map_err(|x| e(&x))?;
        for f in &self.faults {
            let _ = chart.draw_series(LineSeries::new([(f.t_s, 0.0), (f.t_s, lat_max)], &BLACK));
        }
        root.present().map_err(|x| e(&x))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> RunReport {
        RunReport {
            schema: SCHEMA.into(),
            program: "p.ded".into(),
            workload: WorkloadReport {
                mode: "closed".into(),
                clients: Some(2),
                requests: 10,
                input: "req".into(),
                ..Default::default()
            },
            summary: Summary { sent: 10, ok: 10, duration_s: 1.0, throughput_rps: 10.0, ..Default::default() },
            timeline: vec![
                Sample { t_s: 0.5, throughput_rps: 8.0, p50_us: 100, p99_us: 300 },
                Sample { t_s: 1.0, throughput_rps: 12.0, p50_us: 120, p99_us: 250 },
            ],
            nodes: vec![NodeReport { name: "c/0".into(), reported: true, cpu_s: 0.5, ..Default::default() }],
            rules: vec![RuleReport {
                rule: 0,
                component: "c".into(),
                number: 2,
                line: 3,
                text: "rep(i) :- req(i).".into(),
                facts: 10,
                facts_per_request: 1.0,
                ..Default::default()
            }],
            faults: vec![FaultEvent { t_s: 0.7, node: "c/0".into(), action: "kill".into() }],
            ..Default::default()
        }
    }

    #[test]
    fn report_round_trips_as_json() {
        let r = sample_report();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<RunReport>(&json).unwrap(), r);
        let table = r.table();
        assert!(table.contains("10 ok"), "{table}");
        assert!(table.contains("c rule 2 (line 3) rep(i) :- req(i)."), "{table}");
        // A report from before rules were numbered still reads, by line only.
        let old = json.replace(r#""number":2,"#, "");
        assert_eq!(serde_json::from_str::<RunReport>(&old).unwrap().rules[0].label(), "c (line 3)");
    }

    #[test]
    fn plot_writes_an_svg() {
        let dir = std::env::temp_dir().join(format!("compart-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        sample_report().plot(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{}", &svg[..svg.len().min(200)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
