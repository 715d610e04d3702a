//! Finding 6 of issue 14: unauthenticated connections announcing huge frames made a node reserve
//! and fill them (16 connections: 7 MB to 253 MB). A test binary of its own, so that the
//! process's resident memory is this test's alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compart_runtime::net::{Endpoint, NetConfig, Secret, ACCEPT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 16;
const BODY_SENT: usize = 8 << 20;

/// Resident set size in bytes (Linux; the runtime's cluster code is Linux-only too).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm's resident field");
    pages * 4096
}

#[tokio::test]
async fn unauthenticated_connections_announcing_huge_frames_are_dropped_unallocated() {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = NetConfig::new(1, addr, vec![]);
    config.secret = Secret::new(b"k");
    let (endpoint, _rx) = Endpoint::<(u32, String)>::start(config).await.unwrap();
    let chunk = Arc::new(vec![0x55u8; 1 << 20]);
    let before = rss();
    // Memory is measured while every attacker is still connected (a closed connection's buffer
    // is freed), so each reports when it has sent what it could.
    let (wrote, mut written) = tokio::sync::mpsc::unbounded_channel();
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (chunk, wrote) = (chunk.clone(), wrote.clone());
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let started = Instant::now();
                // Just under the configured limit, which an authenticated peer may use.
                let announced = (DEFAULT_MAX_FRAME_BYTES - 1) as u32;
                let _ = s.write_all(&announced.to_be_bytes()).await;
                let mut sent = 0;
                while sent < BODY_SENT && s.write_all(&chunk).await.is_ok() {
                    sent += chunk.len();
                }
                wrote.send(()).unwrap();
                let mut buf = [0u8; 256];
                let closed = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await
                .is_ok();
                (closed, started.elapsed())
            })
        })
        .collect();
    for _ in 0..CONNECTIONS {
        written.recv().await.unwrap();
    }
    let grown = rss().saturating_sub(before);
    let mut outcomes = Vec::new();
    for a in attackers {
        outcomes.push(a.await.unwrap());
    }
    // Reserving and filling the frames would be CONNECTIONS * BODY_SENT = 128 MiB.
    assert!(grown < 16 << 20, "resident memory grew by {grown} bytes");
    for (closed, took) in outcomes {
        assert!(closed, "the connection is closed");
        assert!(took < ACCEPT_HANDSHAKE_TIMEOUT, "closed at once, not after the handshake timeout: {took:?}");
    }
    assert_eq!(endpoint.stats().frames_recv, 0);
}
