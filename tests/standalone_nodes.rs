//! `compart node` started by hand, as a supervisor would, and `compart load` attached to the
//! running nodes: names and DNS names in the deployment file, several clients one after another,
//! a durable acceptor SIGKILLed and restarted under load, JSON logs, the health probes, and the
//! configuration errors that exit 2 with a message.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("compart-standalone-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `compart` without any cluster secret in its environment.
fn compart() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_compart"));
    c.current_dir(root()).env_remove("COMPART_CLUSTER_SECRET").env_remove("COMPART_CLUSTER_SECRET_FILE");
    c
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Node processes, SIGKILLed when dropped (a failing test leaves none behind).
struct Nodes(Vec<(String, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const SIGTERM: i32 = 15;

fn signal(child: &Child, sig: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        kill(child.id() as i32, sig);
    }
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn load(deploy: &Path, requests: &str, report: &Path) -> Command {
    let mut c = compart();
    c.args(["load", "examples/paxos.ded", "--deploy"]).arg(deploy);
    c.args(["--requests", requests, "--quiet", "--reply-timeout", "20", "--report"]).arg(report);
    c
}

fn report_of(out: &Output, path: &Path) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn hand_started_paxos_serves_load_clients_one_after_another() {
    let dir = temp("paxos");
    let p = free_ports(7);
    // Proposers at IP addresses, acceptors at a DNS name (resolved when dialled; bound on
    // 0.0.0.0), the client's address given.
    let deploy = dir.join("paxos.toml");
    std::fs::write(
        &deploy,
        format!(
            "client = \"127.0.0.1:{}\"\n[components]\nproposer = {{ instances = 2, hosts = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"] }}\nacceptor = {{ instances = 3, hosts = [\"localhost:{}\", \"localhost:{}\", \"localhost:{}\"] }}\n",
            p[0], p[1], p[2], p[3], p[4], p[5]
        ),
    )
    .unwrap();
    let health = p[6];
    let start = |which: &[&str], extra: &[&str]| -> Child {
        compart()
            .args(["node", "examples/paxos.ded", "--deploy"])
            .arg(&deploy)
            .args(which)
            .args(["--log-format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let log = dir.join("log");
    let durable = ["--durable", log.to_str().unwrap()];
    let acceptor = |i: &str, extra: &[&str]| {
        let mut args = durable.to_vec();
        args.extend_from_slice(extra);
        start(&["--component", "acceptor", "--ordinal", i], &args)
    };
    let health_arg = format!("127.0.0.1:{health}");
    let mut nodes = Nodes(vec![("acceptor/0".into(), acceptor("0", &["--health", &health_arg]))]);
    // Alone, acceptor/0 is alive but not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(health, "/healthz").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "no /healthz");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(http_get(health, "/readyz").starts_with("HTTP/1.1 503"));
    nodes.0.push(("acceptor/1".into(), acceptor("1", &[])));
    nodes.0.push(("acceptor/2".into(), acceptor("2", &[])));
    nodes.0.push(("proposer/0".into(), start(&["--name", "proposer/0"], &[])));
    nodes.0.push(("proposer/1".into(), start(&["--name", "proposer/1"], &[])));
    while !http_get(health, "/readyz").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "acceptor/0 never ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Two clients, one after the other: the nodes keep their state, the second client's ids are
    // above the first's, and its report counts only its own work.
    let r1 = dir.join("r1.json");
    let first = report_of(&load(&deploy, "1500", &r1).output().unwrap(), &r1);
    let r2 = dir.join("r2.json");
    let second = report_of(&load(&deploy, "1500", &r2).output().unwrap(), &r2);
    for r in [&first, &second] {
        let s = &r["summary"];
        assert_eq!((s["ok"].as_u64(), s["missing"].as_u64(), s["duplicates"].as_u64()), (Some(1500), Some(0), Some(0)));
        assert_eq!(s["unexpected"], 0);
    }
    let acceptor_facts = |r: &serde_json::Value| -> u64 {
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["component"] == "acceptor")
            .map(|n| n["facts_in"].as_u64().unwrap())
            .sum()
    };
    // Each acceptor takes each request's accept once (and a few leader messages).
    let (f1, f2) = (acceptor_facts(&first), acceptor_facts(&second));
    assert!(f1 >= 4500 && f2 >= 4500 && f2 < f1 + 500, "acceptor facts_in: first {f1}, second {f2} (cumulative?)");

    // A third client while acceptor/1 is SIGKILLed and restarted from its log.
    let r3 = dir.join("r3.json");
    let client = load(&deploy, "20000", &r3).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, victim) = &mut nodes.0[1];
    let killed_pid = victim.id();
    victim.kill().unwrap();
    let status = victim.wait().unwrap();
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(500));
    nodes.0[1].1 = acceptor("1", &[]);
    let third = report_of(&client.wait_with_output().unwrap(), &r3);
    let s = &third["summary"];
    assert_eq!((s["ok"].as_u64(), s["missing"].as_u64(), s["duplicates"].as_u64()), (Some(20000), Some(0), Some(0)));
    let a1 = third["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "acceptor/1").unwrap();
    assert!(a1["recovered_changes"].as_u64().unwrap() > 0, "acceptor/1 did not recover from its log: {a1}");
    assert_ne!(a1["pid"].as_u64(), Some(killed_pid as u64), "the restarted acceptor answered");
    // The kill (at 1.5 s) and the restart (at 2 s) fell inside the run.
    assert!(s["duration_s"].as_f64().unwrap() > 2.0, "the run ended before the restart: {s}");

    // SIGTERM: every node stops with 0, and every line it logged is a JSON object naming it.
    for (name, child) in &mut nodes.0 {
        signal(child, SIGTERM);
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{name}: {status}\n{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.iter().any(|l| l.contains("SIGTERM: stopping")), "{name}: {stderr}");
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
            assert_eq!(v["node"], name.as_str(), "{line}");
            assert!(["info", "warn", "error"].contains(&v["level"].as_str().unwrap()), "{line}");
            assert!(v["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn refused(cmd: &mut Command, message: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(message), "expected {message:?} in:\n{stderr}");
}

#[test]
fn configuration_errors_exit_2_with_their_cause() {
    let dir = temp("errors");
    let node = |deploy: &Path, which: &[&str]| {
        let mut c = compart();
        c.args(["node", "examples/paxos.ded", "--deploy"]).arg(deploy).args(which);
        c
    };
    let local = root().join("examples/paxos.toml");
    refused(&mut node(&local, &[]), "name the node: --name");
    refused(&mut node(&local, &["--name", "acceptor/9"]), "no node `acceptor/9` in the deployment (nodes: proposer/0");
    refused(&mut node(&local, &["--component", "acceptor", "--ordinal", "3"]), "component `acceptor` has 3 processes");
    refused(&mut node(&local, &["--component", "learner", "--ordinal", "0"]), "`learner` is not a component");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[components]\nproposer = 2\nacceptor = { instances = 3, hosts = [\"a\", \"b\"] }\n").unwrap();
    refused(
        &mut node(&bad, &["--name", "acceptor/0"]),
        "bad.toml: component `acceptor`: `hosts` has 2 entries, expected 3",
    );

    // Addresses beyond loopback (from the benchmarking range; nothing is dialled: the node
    // stops before its network starts) need the secret, from the environment only.
    let away = dir.join("away.toml");
    std::fs::write(
        &away,
        "[components]\nproposer = 2\nacceptor = { instances = 3, host = \"198.18.0.1{n}\", port = 7000 }\n",
    )
    .unwrap();
    refused(
        &mut node(&away, &["--name", "proposer/0"]),
        "198.18.0.10:7000), so the cluster secret is required: set COMPART_CLUSTER_SECRET_FILE",
    );
    let mut load = compart();
    load.args(["load", "examples/paxos.ded", "--deploy"]).arg(&away);
    refused(&mut load, "so the cluster secret is required");
    let empty = dir.join("empty-secret");
    std::fs::write(&empty, "\n").unwrap();
    refused(node(&away, &["--name", "proposer/0"]).env("COMPART_CLUSTER_SECRET_FILE", &empty), "empty-secret is empty");
    refused(
        node(&away, &["--name", "proposer/0"]).env("COMPART_CLUSTER_SECRET_FILE", dir.join("missing")),
        "COMPART_CLUSTER_SECRET_FILE: cannot read",
    );
    // With the secret, an acceptor whose address is not on this machine cannot bind it.
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    refused(
        node(&away, &["--component", "acceptor", "--ordinal", "1"]).env("COMPART_CLUSTER_SECRET_FILE", &secret),
        "cannot listen on 198.18.0.11:7000",
    );

    // A client with no node to talk to gives up, naming them.
    let p = free_ports(6);
    let lonely = dir.join("lonely.toml");
    std::fs::write(
        &lonely,
        format!(
            "client = \"127.0.0.1:{}\"\n[components]\nproposer = {{ instances = 2, hosts = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"] }}\nacceptor = {{ instances = 3, hosts = [\"127.0.0.1:{}\", \"127.0.0.1:{}\", \"127.0.0.1:{}\"] }}\n",
            p[0], p[1], p[2], p[3], p[4], p[5]
        ),
    )
    .unwrap();
    let mut load = compart();
    load.args(["load", "examples/paxos.ded", "--quiet", "--ready-timeout", "0.5", "--deploy"]).arg(&lonely);
    refused(&mut load, "5 of 5 nodes did not answer within 500ms");
    let _ = std::fs::remove_dir_all(&dir);
}
