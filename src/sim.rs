//! `compart sim`: run a program on the deterministic simulator.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use compart_runtime::deploy::Deployment;
use compart_runtime::engine::CompiledProgram;
use compart_runtime::sim::{report, simulate_compiled, SimConfig, WorkloadSpec};

#[derive(Args)]
pub struct SimArgs {
    /// The program (.ded).
    pub program: PathBuf,
    /// The deployment file (.toml).
    #[arg(long)]
    pub deploy: PathBuf,
    /// Seed of the first schedule; a reported violation replays with the same seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scheduler events per schedule.
    #[arg(long, default_value_t = 400)]
    pub steps: usize,
    /// Number of schedules (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    pub schedules: u64,
    /// Input relations and weights, e.g. `request=3,timeout=1` (default: every input, equally).
    #[arg(long)]
    pub workload: Option<String>,
    /// At most this many input facts per schedule.
    #[arg(long, default_value_t = 40)]
    pub inputs: usize,
    /// Crashed nodes lose their tables (default: tables are durable).
    #[arg(long)]
    pub no_durability: bool,
    /// No crashes, partitions or duplicates: only reordering and delay.
    #[arg(long)]
    pub no_faults: bool,
    /// Print the outputs of each schedule.
    #[arg(long)]
    pub outputs: bool,
}

pub fn sim(args: SimArgs) -> u8 {
    let text = match crate::check::read_source(&args.program) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let analysis = compart_analysis::analyze(&text);
    let program = match CompiledProgram::new(&analysis) {
        Ok(p) => Arc::new(p),
        Err(errors) => {
            eprintln!(
                "error: {} has {} error(s); run `compart check` for details",
                args.program.display(),
                errors.len()
            );
            return 1;
        }
    };
    let deployment = match compart_runtime::options::read_text(&args.deploy).and_then(|t| {
        Deployment::from_toml(&t, &analysis.program).map_err(|e| format!("{}: {e}", args.deploy.display()))
    }) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let weights = match args.workload.as_deref().map(WorkloadSpec::parse_weights).transpose() {
        Ok(w) => w.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: --workload: {e}");
            return 2;
        }
    };
    let mut config = SimConfig {
        steps: args.steps,
        durability: !args.no_durability,
        workload: WorkloadSpec { weights, max_inputs: args.inputs, ..WorkloadSpec::default() },
        ..SimConfig::default()
    };
    if args.no_faults {
        config.crash = 0.0;
        config.crash_in_tick = 0.0;
        config.partition = 0.0;
        config.duplicate = 0.0;
    }
    let (mut ticks, mut messages, mut outputs) = (0u64, 0u64, 0usize);
    for seed in args.seed..args.seed.saturating_add(args.schedules) {
        config.seed = seed;
        let result = simulate_compiled(program.clone(), deployment.clone(), &config);
        ticks += result.ticks;
        messages += result.messages;
        outputs += result.outputs.values().map(Vec::len).sum::<usize>();
        if args.outputs {
            println!("seed {seed}:");
            for ((node, rel), facts) in &result.outputs {
                for f in facts {
                    println!(
                        "  {} {}",
                        deployment.nodes[node.index()].name,
                        compart_runtime::sim::fact_words(&deployment, program.relation_name(*rel), f)
                    );
                }
            }
        }
        for w in result.warnings.iter().take(5) {
            eprintln!("warning: seed {seed}: {w}");
        }
        if !result.violations.is_empty() {
            print!("{}", report(&program, &deployment, &result));
            return 1;
        }
    }
    println!(
        "{} schedule(s) from seed {}: no violation ({ticks} ticks, {messages} messages, {outputs} outputs)",
        args.schedules, args.seed
    );
    0
}
