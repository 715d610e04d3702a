//! `compart run` (launch a local cluster and drive a workload through it) and `compart node` (one
//! node process; the launcher starts these, users need not).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use compart_runtime::cluster::launcher::{self, Fault, RunOptions};
use compart_runtime::cluster::node::{run_node, NodeArgs};
use compart_runtime::cluster::SECRET_ENV;
use compart_runtime::loadgen::{KeyDistribution, Mix, SendTo, WorkloadChoice};
use compart_runtime::net::{Secret, DEFAULT_MAX_FRAME_BYTES};
use compart_runtime::options;

#[derive(Args)]
pub struct RunArgs {
    /// The program (.ded).
    pub program: PathBuf,
    /// The deployment file (.toml): instances per component, ports, optional [workload].
    #[arg(long)]
    pub deploy: PathBuf,
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
    /// Stop waiting for replies after this many seconds without one.
    #[arg(long, default_value = "10", value_parser = options::parse_seconds)]
    pub reply_timeout: Duration,
    /// Largest accepted network frame, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// The emulated cluster: run every node process in its own cgroup limited to this fraction
    /// of one core (e.g. 0.1), so that nodes scale as if each had a machine. Needs write access
    /// to the cgroup `cpu` controller (root).
    #[arg(long)]
    pub cpu_per_node: Option<f64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct NodeCli {
    pub program: PathBuf,
    #[arg(long)]
    pub deploy: PathBuf,
    /// This node's address (index in the deployment).
    #[arg(long)]
    pub index: u32,
    /// The launcher's socket.
    #[arg(long)]
    pub launcher: SocketAddr,
    /// Comma-separated ports replacing the deployment file's, one per node.
    #[arg(long, value_delimiter = ',')]
    pub ports: Option<Vec<u16>>,
    #[arg(long)]
    pub durable: Option<PathBuf>,
    /// Start from the intact prefix of a damaged durability log instead of refusing.
    #[arg(long, requires = "durable")]
    pub accept_log_loss: bool,
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
}

fn env_secret() -> Option<Vec<u8>> {
    std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty()).map(String::into_bytes)
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
    opts.clients = args.clients;
    opts.rate = args.rate;
    opts.requests = args.requests;
    opts.choice = WorkloadChoice {
        entry: args.entry,
        input: args.input,
        output: args.output,
        send_to: args.send_to,
        mix: args.mix.map(|m| m.0),
        keys: args.keys,
        distribution: args.distribution,
        key_column: args.key_column,
        seed: args.seed,
    };
    opts.durable = args.durable;
    opts.accept_log_loss = args.accept_log_loss;
    opts.faults = args.faults;
    opts.auto_ports = args.auto_ports;
    opts.reply_timeout = args.reply_timeout.max(Duration::from_millis(100));
    // The run ends after a reply timeout without progress: at a rate that sends its first
    // request later than that, it would end having sent nothing.
    if let Some(rate) = opts.rate {
        if 1.0 / rate > opts.reply_timeout.as_secs_f64() {
            eprintln!(
                "error: --rate {rate}: the first request would leave after {:.3e} s, past --reply-timeout {} s, so nothing would be sent",
                1.0 / rate,
                opts.reply_timeout.as_secs_f64()
            );
            return 2;
        }
    }
    opts.max_frame_bytes = args.max_frame_bytes;
    opts.progress = !args.quiet;
    opts.cpu_per_node = args.cpu_per_node;
    opts.secret = env_secret();
    let report = match launcher::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 2;
        }
    }
    if let Some(path) = &args.plot {
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

pub fn node(args: NodeCli) -> u8 {
    let secret = env_secret().map(|s| Secret::new(&s)).unwrap_or_else(Secret::none);
    let result = run_node(NodeArgs {
        program: args.program,
        deploy: args.deploy,
        index: args.index,
        launcher: args.launcher,
        ports: args.ports,
        durable: args.durable,
        accept_log_loss: args.accept_log_loss,
        secret,
        max_frame_bytes: args.max_frame_bytes,
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("compart node {}: error: {e}", args.index);
            2
        }
    }
}
