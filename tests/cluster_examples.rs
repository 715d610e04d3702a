//! End to end: each example runs as a real cluster (one process per node) under a small closed
//! loop workload; every request must get exactly one correct reply, every node must report its
//! statistics, and no node process may survive the launcher.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_example(name: &str, requests: u64, extra: &[&str]) -> serde_json::Value {
    let (ded, toml) = (root().join(format!("examples/{name}.ded")), root().join(format!("examples/{name}.toml")));
    run_program(name, &ded, &toml, requests, extra)
}

fn run_program(name: &str, ded: &Path, toml: &Path, requests: u64, extra: &[&str]) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("compart-cluster-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(root())
        .arg("run")
        .arg(ded)
        .arg("--deploy")
        .arg(toml)
        .args(["--requests", &requests.to_string(), "--auto-ports", "--quiet", "--reply-timeout", "20"])
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {}\n{stdout}\n{stderr}", out.status);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let s = &json["summary"];
    assert_eq!(s["sent"], requests, "{stdout}");
    assert_eq!(s["ok"], requests, "{stdout}");
    for k in ["missing", "duplicates", "mismatched", "unexpected"] {
        assert_eq!(s[k], 0, "{k}: {stdout}");
    }
    assert!(s["latency_us"]["p50"].as_u64().unwrap() > 0);
    for n in json["nodes"].as_array().unwrap() {
        assert_eq!(n["reported"], true, "{n}");
        assert!(n["net"]["msgs_recv"].as_u64().unwrap() > 0, "{n}");
        assert!(n["cpu_s"].as_f64().unwrap() > 0.0, "{n}");
        assert_no_process(n["pid"].as_u64().unwrap() as u32);
    }
    json
}

/// The process is gone (reaped by the launcher), not left running.
fn assert_no_process(pid: u32) {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    if let Ok(s) = std::fs::read_to_string(stat) {
        // A recycled pid would belong to an unrelated program; ours are `compart`.
        assert!(!s.contains("(compart)"), "node process {pid} survived: {s}");
    }
}

fn rule_facts(json: &serde_json::Value, head: &str) -> u64 {
    json["rules"].as_array().unwrap().iter().filter(|r| r["head"] == head).map(|r| r["facts"].as_u64().unwrap()).sum()
}

#[test]
fn cluster_voting() {
    let r = run_example("voting", 2000, &[]);
    // One ballot per participant (3) per request, one vote back each.
    assert_eq!(rule_facts(&r, "ballot"), 6000);
    assert_eq!(rule_facts(&r, "vote"), 6000);
}

#[test]
fn cluster_two_phase_commit() {
    let r = run_example("two_phase_commit", 2000, &["--clients", "32"]);
    assert_eq!(r["workload"]["input"], "begin");
    assert_eq!(r["workload"]["clients"], 32);
}

#[test]
fn cluster_kvs() {
    // kvs.toml's [workload]: puts and gets in equal parts over 1000 Zipfian keys.
    let r = run_example("kvs", 2000, &[]);
    let mix: Vec<(&str, &str, u64, u64)> = r["workload"]["mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["input"].as_str().unwrap(),
                o["output"].as_str().unwrap(),
                o["sent"].as_u64().unwrap(),
                o["ok"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(mix.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(), [("get", "get_reply"), ("put", "put_done")]);
    assert!(mix.iter().all(|m| m.2 == m.3 && m.2 > 700), "{mix:?}");
    assert_eq!(r["workload"]["keys"]["distribution"], "zipf:0.99");
    // Every replica applied every write and served reads (round-robin).
    let replicas: Vec<_> = r["nodes"].as_array().unwrap().iter().filter(|n| n["component"] == "replica").collect();
    assert_eq!(replicas.len(), 3);
    assert_eq!(rule_facts(&r, "applied"), 3 * mix[1].2);
    assert!(rule_facts(&r, "get_reply") >= mix[0].2);
    // A write-only run, uniform keys, from flags.
    let w = run_example("kvs", 1000, &["--mix", "put=1", "--distribution", "uniform", "--keys", "50"]);
    assert_eq!(w["workload"]["mix"].as_array().unwrap().len(), 1);
    assert_eq!(w["workload"]["keys"]["count"], 50);
    assert_eq!(rule_facts(&w, "applied"), 3000);
}

fn table_sizes(json: &serde_json::Value, component: &str, table: &str) -> Vec<u64> {
    json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["component"] == component)
        .map(|n| n["tables"].as_array().unwrap().iter().find(|t| t[0] == table).unwrap()[1].as_u64().unwrap())
        .collect()
}

/// mencius.toml sends each request to one leader (round-robin), which proposes it once: one p2a
/// per acceptor, one `learn` to each of the two other leaders, and every leader ends up holding
/// every committed value (it executes the whole log to reply for its own slots).
#[test]
fn cluster_mencius() {
    let requests = 2000;
    let r = run_example("mencius", requests, &[]);
    assert_eq!(r["workload"]["send_to"], "roundrobin");
    assert_eq!(rule_facts(&r, "p2a"), 3 * requests);
    assert_eq!(rule_facts(&r, "learn"), 2 * requests);
    assert_eq!(table_sizes(&r, "leader", "committed"), [requests; 3]);
}

/// Every request: 4 pre-prepares, 3 backups x 4 prepares, 4 x 4 commits, and a reply from each
/// of the 4 replicas, of which the proxy outputs one (f + 1 = 2 matching). Then the optimizer's
/// plan (the primary's pre-prepare broadcast decoupled into `pre_prepare_proxy`) runs as written.
#[test]
fn cluster_pbft() {
    let requests = 2000;
    let r = run_example("pbft", requests, &["--clients", "64"]);
    assert_eq!(r["workload"]["entry"], "client_proxy");
    assert_eq!(rule_facts(&r, "pre_prepare"), 4 * requests);
    assert_eq!(rule_facts(&r, "prepare"), 12 * requests);
    assert_eq!(rule_facts(&r, "commit"), 16 * requests);
    assert_eq!(rule_facts(&r, "replica_reply"), 4 * requests);
    assert_eq!(table_sizes(&r, "replica", "committed"), [requests; 4]);

    let dir = std::env::temp_dir().join(format!("compart-cluster-pbft-plan-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(root())
        .args(["optimize", "examples/pbft.ded", "--machines", "12", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ded, toml) = (dir.join("pbft.optimized.ded"), dir.join("pbft.optimized.toml"));
    assert!(std::fs::read_to_string(&ded).unwrap().contains("component pre_prepare_proxy"));
    let p = run_program("pbft-plan", &ded, &toml, 1000, &["--clients", "64"]);
    let proxies: Vec<&serde_json::Value> =
        p["nodes"].as_array().unwrap().iter().filter(|n| n["component"] == "pre_prepare_proxy").collect();
    assert_eq!(proxies.len(), 4);
    assert_eq!(rule_facts(&p, "pre_prepare"), 4 * 1000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `compart optimize --out DIR` writes a deployment that `compart run` takes with no flags: it keeps
/// the original's ports and [workload], adapted to the rewritten program (Paxos' plan batches the
/// proposer: requests and replies move into the new batcher).
#[test]
fn optimized_plans_run_as_written() {
    let dir = std::env::temp_dir().join(format!("compart-optimized-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("examples/paxos.ded"), dir.join("paxos.ded")).unwrap();
    let toml = std::fs::read_to_string(root().join("examples/paxos.toml")).unwrap()
        + "\n[workload]\nentry = \"proposer\"\ninput = \"request\"\noutput = \"reply\"\n";
    std::fs::write(dir.join("paxos.toml"), toml).unwrap();
    std::fs::copy(root().join("examples/kvs.ded"), dir.join("kvs.ded")).unwrap();
    std::fs::copy(root().join("examples/kvs.toml"), dir.join("kvs.toml")).unwrap();
    for (name, machines) in [("paxos", "9"), ("kvs", "8")] {
        let out = dir.join(format!("{name}-out"));
        let status = Command::new(env!("CARGO_BIN_EXE_compart"))
            .args(["optimize", dir.join(format!("{name}.ded")).to_str().unwrap(), "--machines", machines, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let deploy = std::fs::read_to_string(out.join(format!("{name}.optimized.toml"))).unwrap();
        assert!(deploy.contains("base_port") && deploy.contains("[workload]"), "{deploy}");
        let report = out.join("report.json");
        let run = Command::new(env!("CARGO_BIN_EXE_compart"))
            .arg("run")
            .arg(out.join(format!("{name}.optimized.ded")))
            .arg("--deploy")
            .arg(out.join(format!("{name}.optimized.toml")))
            .args(["--quiet", "--report"])
            .arg(&report)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{name}: {stdout}\n{}", String::from_utf8_lossy(&run.stderr));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(json["summary"]["ok"], 10_000, "{name}: {stdout}");
        if name == "paxos" {
            let program = std::fs::read_to_string(out.join("paxos.optimized.ded")).unwrap();
            assert!(program.contains("component proposer_batcher"), "the plan moved the reply:\n{program}");
            assert!(!deploy.contains("entry = \"proposer\""), "the entry no longer takes requests:\n{deploy}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_paxos_open_loop() {
    let r = run_example("paxos", 1500, &["--rate", "3000"]);
    assert_eq!(r["workload"]["mode"], "open");
    // Both proposers get every request; only the leader commits it.
    let committed: Vec<u64> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["component"] == "proposer")
        .map(|n| n["tables"].as_array().unwrap().iter().find(|t| t[0] == "committed").unwrap()[1].as_u64().unwrap())
        .collect();
    assert_eq!(committed.iter().sum::<u64>(), 1500, "{committed:?}");
}

/// Paxos batched (`compart rewrite --batch proposer`): every request answered once, through two
/// batcher instances, and the proposers commit fewer slots than there are requests.
#[test]
fn cluster_paxos_batched() {
    let dir = std::env::temp_dir().join(format!("compart-cluster-batched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ded, toml) = (dir.join("paxos.ded"), dir.join("paxos.toml"));
    std::fs::copy(root().join("examples/paxos.ded"), &ded).unwrap();
    std::fs::copy(root().join("examples/paxos.toml"), &toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .args(["rewrite", ded.to_str().unwrap(), "--batch", "proposer", "--size", "16", "--write", "--no-check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut deploy = std::fs::read_to_string(&toml).unwrap();
    assert!(deploy.contains("proposer_batcher = 1"), "{deploy}");
    deploy.push_str("\n[partitions]\nproposer_batcher = 2\n");
    std::fs::write(&toml, deploy).unwrap();
    let requests = 3000;
    let r = run_program("paxos-batched", &ded, &toml, requests, &["--clients", "64"]);
    assert_eq!(r["workload"]["entry"], "proposer_batcher");
    let committed: u64 = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["component"] == "proposer")
        .map(|n| n["tables"].as_array().unwrap().iter().find(|t| t[0] == "committed").unwrap()[1].as_u64().unwrap())
        .sum();
    assert!(committed > 0 && committed < requests, "one slot per batch: {committed} slots for {requests} requests");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mencius batched (`compart rewrite --batch leader`, its clients sending each request to one
/// leader): each batch reaches one leader, so every request is answered exactly once
/// (`run_program` asserts no duplicates; sent to every leader, each batch was proposed three
/// times and hundreds of requests were answered twice) and there are fewer p2a than without
/// batching.
#[test]
fn cluster_mencius_batched() {
    let dir = std::env::temp_dir().join(format!("compart-cluster-mencius-batched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ded, toml) = (dir.join("mencius.ded"), dir.join("mencius.toml"));
    std::fs::copy(root().join("examples/mencius.ded"), &ded).unwrap();
    std::fs::copy(root().join("examples/mencius.toml"), &toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .args(["rewrite", ded.to_str().unwrap(), "--batch", "leader", "--size", "16", "--write", "--no-check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("each batch goes to one node of `leader`"), "{stderr}");
    let requests = 3000;
    let r = run_program("mencius-batched", &ded, &toml, requests, &["--clients", "64"]);
    assert_eq!(r["workload"]["entry"], "leader_batcher");
    let p2a = rule_facts(&r, "p2a");
    assert!(p2a < 3 * requests, "one slot per batch: {p2a} p2a for {requests} requests");
    let _ = std::fs::remove_dir_all(&dir);
}
