//! Soak: a long `compart run` (1,000,000 voting requests by default) with every node process's
//! resident memory sampled as it goes. A node's memory must stay flat once warmed up: the
//! figure is bytes of RSS gained per request after warm-up, per node.
//!
//! `cargo bench -p compart --bench soak` (release build of the CLI). Environment:
//! `SOAK_REQUESTS` (default 1000000), `SOAK_PROGRAM` / `SOAK_DEPLOY` (default the voting
//! example), `SOAK_CLIENTS` (64), `SOAK_MAX_BYTES_PER_REQUEST` (16: above it the bench fails),
//! `COMPART_BIN` (another compart binary, e.g. an older build to compare with).
//!
//! Progress is read from each node's own CPU time (it grows with the requests a node handled,
//! and unlike wall-clock time it excludes start-up and shutdown): a sample taken when a node had
//! used fraction f of its final CPU time stands for f of the requests. Warm-up is the first 20 %.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Sample {
    cpu_ticks: u64,
    rss_kb: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (parent pid, user + system CPU in clock ticks) from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state, ppid, ... utime is the 12th.
    let rest = text.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    Some((f.get(1)?.parse().ok()?, f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
}

fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `--index` a node process was started with.
fn node_index(pid: u32) -> Option<usize> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let i = args.iter().position(|a| a == "--index")?;
    args.get(i + 1)?.parse().ok()
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(ppid, _)| ppid == parent))
        .collect()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let requests: u64 = env_or("SOAK_REQUESTS", 1_000_000);
    let clients: u64 = env_or("SOAK_CLIENTS", 64);
    let limit: f64 = env_or("SOAK_MAX_BYTES_PER_REQUEST", 16.0);
    let program = root.join(env_or("SOAK_PROGRAM", "examples/voting.ded".to_string()));
    let deploy = root.join(env_or("SOAK_DEPLOY", "examples/voting.toml".to_string()));
    let bin = env_or("COMPART_BIN", env!("CARGO_BIN_EXE_compart").to_string());
    let report = std::env::temp_dir().join(format!("compart-soak-{}.json", std::process::id()));
    let names: Vec<String> = match compart_runtime::cluster::Cluster::load(&program, &deploy, None) {
        Ok(c) => c.deployment.nodes.iter().map(|n| n.name.clone()).collect(),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    println!("soak: {} with {requests} requests, {clients} clients, compart = {bin}", rel(&program, &root));
    let started = Instant::now();
    let mut child = match Command::new(&bin)
        .arg("run")
        .arg(&program)
        .arg("--deploy")
        .arg(&deploy)
        .args(["--requests", &requests.to_string(), "--clients", &clients.to_string()])
        .args(["--auto-ports", "--quiet", "--reply-timeout", "30", "--report"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: cannot start {bin}: {e}");
            std::process::exit(2);
        }
    };
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); names.len()];
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        for pid in children_of(child.id()) {
            let (Some(i), Some((_, cpu_ticks)), Some(rss_kb)) = (node_index(pid), stat(pid), rss_kb(pid)) else {
                continue;
            };
            if let Some(s) = samples.get_mut(i) {
                s.push(Sample { cpu_ticks, rss_kb });
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let ok = summary["summary"]["ok"].as_u64().unwrap_or(0);
    println!(
        "run: {status}, {ok} ok in {:.1} s ({:.0} requests/s), {:.1} CPU-us/request\n",
        started.elapsed().as_secs_f64(),
        summary["summary"]["throughput_rps"].as_f64().unwrap_or(0.0),
        summary["summary"]["cpu_us_per_request"].as_f64().unwrap_or(0.0)
    );
    if ok == 0 {
        eprintln!("soak: the run answered nothing");
        std::process::exit(2);
    }
    println!("| node | RSS MB at 10 % / 20 % / ... / 100 % of its work | after warm-up: MB gained | bytes/request |");
    println!("| --- | --- | --- | --- |");
    let mut worst: f64 = 0.0;
    for (name, s) in names.iter().zip(&samples) {
        let Some(last) = s.last().copied() else {
            println!("| {name} | no samples | | |");
            continue;
        };
        let total = last.cpu_ticks.max(1) as f64;
        // The largest RSS seen up to each progress point (RSS between samples is unseen).
        let at = |f: f64| s.iter().filter(|x| x.cpu_ticks as f64 <= f * total).map(|x| x.rss_kb).max();
        let curve: Vec<String> = (1..=10)
            .map(|k| at(k as f64 / 10.0).map_or("-".into(), |kb| format!("{:.1}", kb as f64 / 1024.0)))
            .collect();
        let warm = s.iter().find(|x| x.cpu_ticks as f64 >= 0.2 * total).copied().unwrap_or(last);
        let peak_after = s.iter().filter(|x| x.cpu_ticks >= warm.cpu_ticks).map(|x| x.rss_kb).max().unwrap_or(0);
        let work = (last.cpu_ticks - warm.cpu_ticks) as f64 / total;
        let gained_kb = peak_after.saturating_sub(warm.rss_kb);
        let per_request = if work > 0.0 { gained_kb as f64 * 1024.0 / (work * ok as f64) } else { 0.0 };
        worst = worst.max(per_request);
        println!("| {name} | {} | {:.2} | {per_request:.1} |", curve.join(" / "), gained_kb as f64 / 1024.0);
    }
    println!("\nlargest: {worst:.1} bytes/request after warm-up (limit {limit})");
    if !status.success() || worst > limit {
        std::process::exit(1);
    }
}

fn rel(p: &Path, root: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
