//! The `compart` command-line tool.

mod bench;
mod calibrate;
mod check;
mod deploy;
mod explain;
mod lsp;
mod run;
mod sim;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use compart_analysis::optimize::{BatchChoice, GridChoice};

#[derive(Parser)]
#[command(name = "compart", version, about = "Automatic compartmentalization of distributed protocols")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable reports with source snippets.
    Human,
    /// One JSON document on stdout, for tools.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz's DOT language.
    Dot,
    /// One JSON document (the language server's `compart/graph` answer, with byte ranges).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the language server protocol over stdin/stdout (for editors).
    Lsp,
    /// Parse and analyse programs; report errors and warnings.
    Check {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Treat warnings as errors for the exit code.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run a program on a local cluster (one process per node) under a generated workload.
    Run(Box<run::RunArgs>),
    /// Write what runs a program outside `compart run`: `compart deploy k8s` for Kubernetes.
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
    /// Run a program on the deterministic simulator: seeded schedules with reordering, delays,
    /// duplicates, crashes and partitions; every invariant checked after every tick.
    Sim(sim::SimArgs),
    /// One node of a deployment, for a supervisor to start (systemd, a container runtime,
    /// Kubernetes): peers from the deployment file, recovery from --durable (docs/deploying.md).
    Node(Box<run::NodeCli>),
    /// Drive a workload through a running deployment (nodes started with `compart node`) and
    /// check every reply, with the same report as `compart run`; starts no node.
    Load(Box<run::LoadArgs>),
    /// Rewrite programs in canonical format (comments kept).
    Fmt {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Do not write; exit 1 if any file is not formatted.
        #[arg(long)]
        check: bool,
        /// Print the formatted program to stdout instead of writing the file.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
    /// Show the scaling class of every component and rule, with the reasons.
    Explain {
        file: std::path::PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// The component graph: components with their scaling class, channels labelled with the
    /// relations they carry (`dot` for Graphviz: `compart graph FILE | dot -Tsvg > graph.svg`).
    Graph {
        file: std::path::PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Decouple rules into a new component, partition a component by a key, batch its requests,
    /// arrange the nodes its quorums count in a grid, or make a broadcast thrifty.
    Rewrite {
        file: std::path::PathBuf,
        /// COMPONENT:RULE,RULE,... with rules by number in the component (from 1, facts included:
        /// the N of run reports' `COMPONENT rule N (line L)`) or by head name.
        #[arg(long, requires = "into", conflicts_with = "partition")]
        decouple: Option<String>,
        /// Name of the new component.
        #[arg(long)]
        into: Option<String>,
        /// Component to partition.
        #[arg(long)]
        partition: Option<String>,
        /// Key column name for --partition (default: the best policy found).
        #[arg(long, requires = "partition")]
        by: Option<String>,
        /// With --partition: keep aggregates over every fact per instance and seal the replies
        /// that carry them (acceptor groups); not an equivalence, so verify the invariants.
        #[arg(long, requires = "partition")]
        seal: bool,
        /// Component to batch: batchers in front collect its requests, one request per batch
        /// reaches it, and the reply path unbatches; not an equivalence, so verify the invariants.
        #[arg(long, conflicts_with_all = ["decouple", "partition"])]
        batch: Option<String>,
        /// Component whose broadcast to send to a quorum only, widening to every node on a timer
        /// input (thrifty broadcast); the rule is chosen with --rule when it has several.
        #[arg(long, conflicts_with_all = ["decouple", "partition", "batch", "grid"])]
        thrifty: Option<String>,
        /// With --thrifty: the broadcast rule, by number in the component or by head name.
        #[arg(long, requires = "thrifty")]
        rule: Option<String>,
        /// With --batch: the most requests in one batch.
        #[arg(long, requires = "batch", default_value_t = compart_analysis::rewrite::DEFAULT_BATCH_SIZE)]
        size: usize,
        /// Component whose nodes the quorums count, to arrange in a grid (flexible quorums: a
        /// phase-2 quorum is a row, a phase-1 quorum a node of every row); not an equivalence,
        /// so verify the invariants.
        #[arg(long, conflicts_with_all = ["decouple", "partition", "batch"])]
        grid: Option<String>,
        /// With --grid: the rows.
        #[arg(long, requires = "grid", default_value_t = compart_analysis::rewrite::DEFAULT_GRID_ROWS as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        rows: u64,
        /// With --grid: the columns, for the deployment file (default: its nodes over the rows).
        #[arg(long, requires = "grid", value_parser = clap::value_parser!(u64).range(1..))]
        columns: Option<u64>,
        /// A,B: two stateless components to merge into one (--into NAME) whose nodes serve both
        /// (shared proxies); an equivalence, checked as one.
        #[arg(long, requires = "into", conflicts_with_all = ["decouple", "partition", "batch", "grid", "thrifty"])]
        share: Option<String>,
        /// Write the result back to FILE instead of stdout, and update the deployment file
        /// (a new component's nodes, a partitioned component's instances), or create it.
        #[arg(long)]
        write: bool,
        /// The deployment file to check against and update (default: FILE with `.toml`).
        #[arg(long, value_name = "FILE")]
        deploy: Option<std::path::PathBuf>,
        /// Skip the bounded refinement check against the original (the rewrite is then unproven).
        #[arg(long)]
        no_check: bool,
    },
    /// Check that a rewritten program refines the original: every schedule of a few small
    /// workloads explored (bounded), then random schedules of longer random workloads.
    Verify {
        original: std::path::PathBuf,
        rewritten: std::path::PathBuf,
        /// Sampled phase: random workloads, one per seed.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Sampled phase: input facts per seed.
        #[arg(long, default_value_t = 12)]
        inputs: usize,
        /// Only check invariants (for protocols whose outputs depend on timing).
        #[arg(long)]
        invariants_only: bool,
        #[command(flatten)]
        bounds: verify::Bounds,
    },
    /// Optimize, verify and run the bundled protocols, original vs rewritten, side by side.
    Bench(bench::BenchArgs),
    /// Search rewrites for the best predicted throughput on N machines.
    Optimize {
        file: std::path::PathBuf,
        #[arg(long)]
        machines: usize,
        /// Runtime profile from `compart run --report` of this program; repeat it to add reports
        /// of rewritings of it run earlier (their rules' measured frequencies carry over by text).
        #[arg(long)]
        profile: Vec<std::path::PathBuf>,
        /// Write FILE.optimized.ded and .toml into this directory instead of printing them.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Skip the bounded refinement check of each step (the plan is then unproven).
        #[arg(long)]
        no_check: bool,
        /// The cost model's constants (`compart calibrate -o FILE`); default: bench/calibration.toml
        /// when the current directory has one, else the built-in copy of it.
        #[arg(long)]
        calibration: Option<std::path::PathBuf>,
        /// Batch with this size only, at most N requests per batch (default: the search tries
        /// 16, 64 and 256). Batching spaces replies' log positions by N: checked on invariants.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=4096))]
        batch: Option<u64>,
        /// Never batch (replies keep the original's log positions).
        #[arg(long, conflicts_with = "batch")]
        no_batch: bool,
        /// Size the plan for this many closed-loop clients (`compart run --clients`) instead of
        /// the calibration's: they set how many requests a tick, and so a batch, holds.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        clients: Option<u64>,
        /// Try grid quorums of R rows only over the nodes a protocol's two quorums count (default:
        /// the search tries 2 and 3 rows; quorums change, so checked on invariants).
        #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
        grid_rows: Option<u64>,
        /// Never arrange grid quorums.
        #[arg(long, conflicts_with = "grid_rows")]
        no_grid: bool,
        /// Never send a broadcast to a quorum only (thrifty broadcast, widened on a timer input;
        /// by default taken where it pays: after a crash, its answers wait for the timer).
        #[arg(long)]
        no_thrifty: bool,
        /// Never merge two stateless components into one (shared proxies; by default taken when
        /// the machines it frees raise the prediction).
        #[arg(long)]
        no_share: bool,
    },
    /// Fit the optimizer's cost constants (CPU-µs per tick, frame, fact, rule work) to run reports
    /// of this machine (`compart run --report`), print the fit and its residuals, and write them.
    Calibrate(calibrate::CalibrateArgs),
}

/// Exit codes: 0 clean, 1 the input has errors, 2 usage or I/O problems.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match cli.command {
        Command::Lsp => lsp::lsp(),
        Command::Check { files, format, deny_warnings } => check::check(&files, format, deny_warnings),
        Command::Fmt { files, check, stdout } => check::fmt(&files, check, stdout),
        Command::Explain { file, format } => explain::explain(&file, format),
        Command::Graph { file, format } => explain::graph(&file, format),
        Command::Rewrite {
            file,
            decouple,
            into,
            partition,
            by,
            seal,
            batch,
            size,
            grid,
            rows,
            columns,
            thrifty,
            rule,
            share,
            write,
            deploy,
            no_check,
        } => explain::rewrite(
            &file,
            explain::RewriteChoice {
                decouple: decouple.as_deref(),
                into: into.as_deref(),
                partition: partition.as_deref(),
                by: by.as_deref(),
                seal,
                batch: batch.as_deref().map(|c| (c, size)),
                grid: grid.as_deref().map(|c| (c, rows as usize, columns.map(|c| c as usize))),
                thrifty: thrifty.as_deref().map(|c| (c, rule.as_deref())),
                share: share.as_deref(),
            },
            write,
            deploy.as_deref(),
            !no_check,
        ),
        Command::Verify { original, rewritten, seeds, inputs, invariants_only, bounds } => {
            verify::verify_command(&original, &rewritten, seeds, inputs, invariants_only, &bounds)
        }
        Command::Optimize {
            file,
            machines,
            profile,
            out,
            no_check,
            calibration,
            batch,
            no_batch,
            clients,
            grid_rows,
            no_grid,
            no_thrifty,
            no_share,
        } => {
            let batch = match (batch, no_batch) {
                (_, true) => BatchChoice::Off,
                (Some(n), false) => BatchChoice::Size(n as usize),
                (None, false) => BatchChoice::Search,
            };
            let clients = clients.map(|c| c as usize);
            let grid = match (grid_rows, no_grid) {
                (_, true) => GridChoice::Off,
                (Some(r), false) => GridChoice::Rows(r as usize),
                (None, false) => GridChoice::Search,
            };
            let search = explain::Search { batch, grid, thrifty: !no_thrifty, share: !no_share, clients };
            explain::optimize(&file, machines, &profile, out.as_ref(), !no_check, calibration.as_deref(), search)
        }
        Command::Calibrate(args) => calibrate::calibrate(args),
        Command::Run(args) => run::run(*args),
        Command::Bench(args) => bench::bench(args),
        Command::Sim(args) => sim::sim(args),
        Command::Deploy(command) => deploy::deploy(command),
        Command::Node(args) => run::node(*args),
        Command::Load(args) => run::load(*args),
    };
    ExitCode::from(code)
}
