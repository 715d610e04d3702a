//! `compart load`: a client attached to a running deployment (nodes started by a supervisor with
//! `compart node`). It listens at the deployment's client address, pings every node and waits
//! for each one's pong (sent once that node is connected to every other), then drives the same
//! workload with the same checks and report as `compart run` (`driver.rs`). It starts and stops
//! no node.
//!
//! Nodes keep their state between clients, so each client takes request ids above any earlier
//! one's (from the clock: milliseconds x 1000), ignores what a node sent before its pong
//! (owed to an earlier client), and counts answers to earlier ids as `earlier_replies`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::driver::{collect_stats, signals, Attached, Driver};
use super::launcher::RunOptions;
use super::{required_secret, Cluster, Control, Envelope};
use crate::net::{Endpoint, NetConfig, Secret};
use crate::report::RunReport;

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The workload fields (program, deploy, clients, rate, requests, choice, reply_timeout,
    /// interval, progress, max_frame_bytes); the launcher's own (durable, faults, ports,
    /// exe, cpu_per_node, secret) are not used.
    pub run: RunOptions,
    /// Where to bind (default: the client address if it is an IP literal, else 0.0.0.0 on its
    /// port).
    pub listen: Option<SocketAddr>,
    /// How long to wait for every node's pong.
    pub ready_timeout: Duration,
}

/// Drives the workload through the running nodes; the report, also when requests failed.
pub fn load(opts: &LoadOptions) -> Result<RunReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(load_async(opts))
}

async fn load_async(opts: &LoadOptions) -> Result<RunReport, String> {
    let mut signals = signals()?;
    let run = &opts.run;
    let cluster = Cluster::load(&run.program, &run.deploy, None)?;
    let secret = required_secret(&cluster.deployment)?;
    let name = cluster.deployment.client_address();
    let listen = match opts.listen {
        Some(l) => l,
        None => name.socket().unwrap_or_else(|| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), name.port)),
    };
    let n = cluster.deployment.nodes.len();
    let mut config = NetConfig::with_peers(
        cluster.launcher_id(),
        listen,
        cluster.deployment.nodes.iter().map(|s| (s.addr.0, s.address.clone())).collect(),
    );
    config.name = Some(name.clone());
    config.secret = secret.as_deref().map(Secret::new).unwrap_or_else(Secret::none);
    config.max_frame_bytes = run.max_frame_bytes;
    let (endpoint, mut rx) = Endpoint::<Envelope>::start(config)
        .await
        .map_err(|e| format!("cannot listen on {listen} (the deployment's client address {name}): {e}"))?;
    let mut driver = Driver::new(&cluster, run, &endpoint)?;
    driver.first_id = super::driver::first_id_after_earlier_clients();

    // ---- Ping every node until each has answered.
    let nonce = crate::net::fresh_incarnation();
    for i in 0..n {
        endpoint.send(i as u32, vec![Envelope::Control(Control::Ping(nonce))]);
    }
    let mut ponged = HashSet::new();
    let deadline = tokio::time::Instant::now() + opts.ready_timeout;
    while ponged.len() < n {
        let [sigint, sigterm] = &mut signals;
        tokio::select! {
            d = rx.recv() => {
                let Some(d) = d else { return Err("the client's network stopped".into()) };
                endpoint.ack(d.from, d.seq);
                if d.batch.contains(&Envelope::Control(Control::Pong(nonce))) {
                    ponged.insert(d.from);
                }
            }
            _ = sigint.recv() => return Err("interrupted while waiting for the nodes".into()),
            _ = sigterm.recv() => return Err("terminated while waiting for the nodes".into()),
            _ = tokio::time::sleep_until(deadline) => {
                let missing: Vec<&str> = cluster
                    .deployment
                    .nodes
                    .iter()
                    .filter(|s| !ponged.contains(&s.addr.0))
                    .map(|s| s.name.as_str())
                    .collect();
                return Err(format!(
                    "{} of {n} nodes did not answer within {:?} (not running, not reachable, not connected to \
                     every other node, or another cluster secret): {}",
                    missing.len(),
                    opts.ready_timeout,
                    missing.join(", ")
                ));
            }
        }
    }
    // What the nodes did before this client: subtracted in the report.
    let all: Vec<usize> = (0..n).collect();
    let mut errors = Vec::new();
    driver.baseline = collect_stats(&endpoint, &mut rx, &all, &mut errors).await;
    if let Some(e) = errors.first() {
        return Err(e.clone());
    }
    let mut attached = Attached { none_down: HashSet::new() };
    let driven = driver.run(&mut rx, &mut attached, &mut signals).await?;
    endpoint.drain(Duration::from_secs(1)).await;
    Ok(driver.report(driven, &attached))
}
