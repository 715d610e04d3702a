//! `compart run` (launch a local cluster and drive a workload through it), `compart node` (one
//! node process: the launcher starts these, and so can any supervisor) and `compart load` (drive
//! a workload through nodes already running). docs/deploying.md says how they fit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};
use compart_runtime::cluster::launcher::{self, Fault, RunOptions};
use compart_runtime::cluster::load::LoadOptions;
use compart_runtime::cluster::node::{run_node, NodeArgs, Ordinal, Which};
use compart_runtime::cluster::secret_from_env;
use compart_runtime::loadgen::{KeyDistribution, Mix, SendTo, WorkloadChoice};
use compart_runtime::log::{Level, LogFormat};
use compart_runtime::net::DEFAULT_MAX_FRAME_BYTES;
use compart_runtime::options;
use compart_runtime::report::RunReport;

#[derive(Args)]
pub struct RunArgs {
    /// The program (.ded).
    pub program: PathBuf,
    /// The deployment file (.toml): instances per component, hosts and ports, optional [workload].
    #[arg(long)]
    pub deploy: PathBuf,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Write an SVG plot of throughput and latency over time here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Log table changes under this directory; restarted nodes recover from it.
    #[arg(long)]
    pub durable: Option<PathBuf>,
    /// A node whose durability log is damaged starts from the records before the damage (the
    /// rest is moved to a `.damaged-<time>` file) instead of refusing to start.
    #[arg(long, requires = "durable")]
    pub accept_log_loss: bool,
    /// Kill a node and restart it: `component/instance@seconds[+down_seconds]` (repeatable).
    #[arg(long = "kill-and-restart")]
    pub faults: Vec<Fault>,
    /// Use free ports instead of the deployment file's.
    #[arg(long)]
    pub auto_ports: bool,
    /// Largest accepted network frame, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// The emulated cluster: run every node process in its own cgroup limited to this fraction
    /// of one core (e.g. 0.1), so that nodes scale as if each had a machine. Needs write access
    /// to the cgroup `cpu` controller (root).
    #[arg(long)]
    pub cpu_per_node: Option<f64>,
}

/// The workload and its report: the same for `compart run` and `compart load`.
#[derive(Args)]
pub struct WorkloadArgs {
    /// Closed loop: this many clients, each with one outstanding request (default 16).
    #[arg(long, conflicts_with = "rate")]
    pub clients: Option<usize>,
    /// Open loop: send this many requests per second.
    #[arg(long, value_parser = options::parse_rate)]
    pub rate: Option<f64>,
    /// Total number of requests.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Input relation to inject (default: detected, or [workload] input).
    #[arg(long)]
    pub input: Option<String>,
    /// Output relation answering it (default: detected, or [workload] output).
    #[arg(long)]
    pub output: Option<String>,
    /// Component that takes requests (default: the input's component).
    #[arg(long)]
    pub entry: Option<String>,
    /// `all` (every instance of the entry component gets every request) or `round-robin`.
    #[arg(long)]
    pub send_to: Option<SendTo>,
    /// Drive several inputs, each with its weight, e.g. `put=1,get=9` (replies detected);
    /// default: [workload] mix, else one detected input.
    #[arg(long)]
    pub mix: Option<Mix>,
    /// Requests draw their key column from this many keys (default 1000 with a key option).
    #[arg(long)]
    pub keys: Option<u64>,
    /// How keys are drawn: `uniform`, `zipf` (YCSB's, theta 0.99) or `zipf:THETA`.
    #[arg(long)]
    pub distribution: Option<KeyDistribution>,
    /// The input column holding the key (default `k` or `key`).
    #[arg(long)]
    pub key_column: Option<String>,
    /// Seed of the request stream (which input, which key).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the JSON report here (schema: runtime/README.md).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stop waiting for replies after this many seconds without one.
    #[arg(long, default_value = "10", value_parser = options::parse_seconds)]
    pub reply_timeout: Duration,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Progress as a line on stderr about once a second (`progress: N/M replies`) instead of a
    /// bar, for a program reading the output as it comes (the editor's Run lens).
    #[arg(long, conflicts_with = "quiet")]
    pub progress_lines: bool,
}

#[derive(Args)]
pub struct LoadArgs {
    /// The program (.ded), as the nodes run it.
    pub program: PathBuf,
    /// The deployment file the nodes were started with; the client listens at its `client`.
    #[arg(long)]
    pub deploy: PathBuf,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Where to bind (default: the deployment's client address if it is an IP address, else
    /// 0.0.0.0 on its port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Give up when some node has not answered (connected to every other) within this many seconds.
    #[arg(long, default_value = "30", value_parser = options::parse_seconds)]
    pub ready_timeout: Duration,
}

/// `compart node`: one node of a deployment, named by `--name`, or `--component` and
/// `--ordinal`. Exits 0 after a stop (SIGTERM, SIGINT, or the local launcher's), 2 when it
/// cannot start (configuration, address, durability log; the message names the cause), 1 when
/// it fails while running.
#[derive(Args)]
#[command(group(ArgGroup::new("which").args(["name", "component", "index"])))]
pub struct NodeCli {
    /// The program (.ded).
    pub program: PathBuf,
    /// The deployment file (.toml); every node and client of the deployment uses the same one.
    #[arg(long)]
    pub deploy: PathBuf,
    /// The node, as named in run reports: `acceptor/1`, or `acceptor/1.0` for a partitioned one.
    #[arg(long)]
    pub name: Option<String>,
    /// The node's component; with --ordinal.
    #[arg(long, requires = "ordinal")]
    pub component: Option<String>,
    /// Its position among the component's processes (0-based, deployment order), or `hostname`:
    /// the trailing `-N` of the host name (a StatefulSet pod `paxos-acceptor-2`).
    #[arg(long, requires = "component")]
    pub ordinal: Option<Ordinal>,
    /// Bind here (default: the node's own address if it is an IP address, else 0.0.0.0 on its port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve GET /healthz (200 while running) and /readyz (200 once connected to every other node).
    #[arg(long)]
    pub health: Option<SocketAddr>,
    /// Log table changes under this directory and recover from it when restarted.
    #[arg(long)]
    pub durable: Option<PathBuf>,
    /// Start from the intact prefix of a damaged durability log instead of refusing.
    #[arg(long, requires = "durable")]
    pub accept_log_loss: bool,
    /// Largest accepted network frame, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// `text`, or `json`: one JSON object per line on stderr (ts, level, node, msg).
    #[arg(long, default_value = "text")]
    pub log_format: LogFormat,
    /// The node's index in the deployment (`compart run` starts nodes so).
    #[arg(long, hide = true)]
    pub index: Option<u32>,
    /// The local launcher's address, replacing the deployment's client address.
    #[arg(long, hide = true)]
    pub launcher: Option<SocketAddr>,
    /// Comma-separated ports replacing the deployment file's, one per node (`compart run --auto-ports`).
    #[arg(long, value_delimiter = ',', hide = true)]
    pub ports: Option<Vec<u16>>,
}

/// The workload fields of `opts` from `args`; Err(exit code) after printing why not.
fn workload_options(args: &WorkloadArgs, opts: &mut RunOptions) -> Result<(), u8> {
    opts.clients = args.clients;
    opts.rate = args.rate;
    opts.requests = args.requests;
    opts.choice = WorkloadChoice {
        entry: args.entry.clone(),
        input: args.input.clone(),
        output: args.output.clone(),
        send_to: args.send_to,
        mix: args.mix.clone().map(|m| m.0),
        keys: args.keys,
        distribution: args.distribution,
        key_column: args.key_column.clone(),
        seed: args.seed,
    };
    opts.reply_timeout = args.reply_timeout.max(Duration::from_millis(100));
    opts.progress = !args.quiet;
    opts.progress_lines = args.progress_lines;
    // The run ends after a reply timeout without progress: at a rate that sends its first
    // request later than that, it would end having sent nothing.
    if let Some(rate) = opts.rate {
        if 1.0 / rate > opts.reply_timeout.as_secs_f64() {
            eprintln!(
                "error: --rate {rate}: the first request would leave after {:.3e} s, past --reply-timeout {} s, so nothing would be sent",
                1.0 / rate,
                opts.reply_timeout.as_secs_f64()
            );
            return Err(2);
        }
    }
    Ok(())
}

/// Prints the report, writes it (and the plot), and gives the exit code: 0 every request
/// answered correctly, 1 some request failed, went unsent or a node died, 2 output not
/// written, 130 interrupted.
fn finish(report: &RunReport, args: &WorkloadArgs, plot: Option<&PathBuf>) -> u8 {
    print!("{}", report.table());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 2;
        }
    }
    if let Some(path) = plot {
        if let Err(e) = report.plot(path) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    if report.summary.interrupted {
        return 130;
    }
    // The run ended (replies stopped coming) before sending every request: not a success, even
    // when the few requests sent were answered.
    let unsent = args.requests.saturating_sub(report.summary.sent);
    if unsent > 0 {
        eprintln!(
            "error: {unsent} of {} requests were never sent: the run ended after --reply-timeout without progress",
            args.requests
        );
        return 1;
    }
    if report.failed() {
        1
    } else {
        0
    }
}

/// Exit codes: 0 every request answered correctly, 1 some request failed or a node died,
/// 2 the cluster could not run, 130 interrupted.
pub fn run(args: RunArgs) -> u8 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the compart binary: {e}");
            return 2;
        }
    };
    let mut opts = RunOptions::new(args.program, args.deploy, exe);
    if let Err(code) = workload_options(&args.workload, &mut opts) {
        return code;
    }
    opts.durable = args.durable;
    opts.accept_log_loss = args.accept_log_loss;
    opts.faults = args.faults;
    opts.auto_ports = args.auto_ports;
    opts.max_frame_bytes = args.max_frame_bytes;
    opts.cpu_per_node = args.cpu_per_node;
    opts.secret = match secret_from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match launcher::run(&opts) {
        Ok(report) => finish(&report, &args.workload, args.plot.as_ref()),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// `compart load`: exit codes as `compart run`.
pub fn load(args: LoadArgs) -> u8 {
    let mut opts = RunOptions::new(args.program, args.deploy, PathBuf::new());
    if let Err(code) = workload_options(&args.workload, &mut opts) {
        return code;
    }
    let opts = LoadOptions { run: opts, listen: args.listen, ready_timeout: args.ready_timeout };
    match compart_runtime::cluster::load::load(&opts) {
        Ok(report) => finish(&report, &args.workload, None),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

pub fn node(args: NodeCli) -> u8 {
    let which = match (args.index, args.name, args.component, args.ordinal) {
        (Some(i), _, _, _) => Which::Index(i),
        (_, Some(name), _, _) => Which::Name(name),
        (_, _, Some(component), Some(ordinal)) => Which::Ordinal { component, ordinal },
        _ => {
            eprintln!("error: name the node: --name COMPONENT/INSTANCE, or --component C --ordinal N|hostname");
            return 2;
        }
    };
    let label = match &which {
        Which::Index(i) => format!("#{i}"),
        Which::Name(n) => n.clone(),
        Which::Ordinal { component, ordinal: Ordinal::Number(n) } => format!("{component}#{n}"),
        Which::Ordinal { component, ordinal: Ordinal::Hostname } => format!("{component}#hostname"),
    };
    compart_runtime::log::init(args.log_format, &label);
    let result = run_node(NodeArgs {
        program: args.program,
        deploy: args.deploy,
        which,
        client: args.launcher,
        ports: args.ports,
        listen: args.listen,
        health: args.health,
        durable: args.durable,
        accept_log_loss: args.accept_log_loss,
        max_frame_bytes: args.max_frame_bytes,
        log_format: args.log_format,
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            compart_runtime::log::line(Level::Error, &format!("compart node {label}: error: "), &e.message);
            e.code
        }
    }
}
