use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;

type Msg = (u32, String);

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn pair(
    secret_a: &[u8],
    secret_b: &[u8],
) -> (Endpoint<Msg>, Endpoint<Msg>, mpsc::UnboundedReceiver<Delivery<Msg>>) {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut ca = NetConfig::new(0, a_addr, vec![(1, b_addr)]);
    ca.secret = Secret::new(secret_a);
    let mut cb = NetConfig::new(1, b_addr, vec![(0, a_addr)]);
    cb.secret = Secret::new(secret_b);
    let (a, _ra) = Endpoint::<Msg>::start(ca).await.unwrap();
    let (b, rb) = Endpoint::<Msg>::start(cb).await.unwrap();
    (a, b, rb)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Delivery<Msg>>) -> Delivery<Msg> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("timed out").expect("closed")
}

#[tokio::test]
async fn delivers_batches_in_order_and_acks() {
    let (a, b, mut rb) = pair(b"k", b"k").await;
    for i in 0..10 {
        assert!(a.send(1, vec![(i, format!("m{i}")), (i, "x".into())]));
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let d = recv(&mut rb).await;
        assert_eq!(d.from, 0);
        b.ack(d.from, d.seq);
        got.extend(d.batch);
    }
    assert_eq!(got[0], (0, "m0".to_string()));
    assert_eq!(got[18], (9, "m9".to_string()));
    assert!(a.drain(Duration::from_secs(5)).await, "every frame is acked");
    let s = a.stats();
    assert_eq!((s.frames_sent, s.msgs_sent), (10, 20));
    assert_eq!(b.stats().msgs_recv, 20);
}

#[tokio::test]
async fn large_batches_are_split_into_frames() {
    let (a, b, mut rb) = pair(b"", b"").await;
    let n = MAX_MESSAGES_PER_FRAME * 2 + 5;
    a.send(1, (0..n as u32).map(|i| (i, String::new())).collect());
    let mut count = 0;
    while count < n {
        let d = recv(&mut rb).await;
        b.ack(d.from, d.seq);
        count += d.batch.len();
    }
    assert_eq!(a.stats().frames_sent, 3);
}

#[tokio::test]
async fn wrong_secret_is_refused() {
    let (a, b, mut rb) = pair(b"right", b"wrong").await;
    a.send(1, vec![(1, "secret data".into())]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rb.try_recv().is_err(), "nothing is delivered from an unauthenticated peer");
    assert!(b.stats().rejected_connections >= 1);
}

#[tokio::test]
async fn garbage_bytes_drop_the_connection_not_the_endpoint() {
    let (a, b, mut rb) = pair(b"k", b"k").await;
    let target = b.local_addr();
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        // Announces a frame far above the limit.
        vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
        // A well-framed body with the wrong version.
        vec![0, 0, 0, 3, WIRE_VERSION + 1, 0, 0],
        // Right version, garbage body.
        vec![0, 0, 0, 5, WIRE_VERSION, 0xff, 0xff, 0xff, 0xff],
        // A data frame before any hello.
        {
            let body = encode(&Frame::Data { from: 0, seq: 1, batch: vec![(1u32, "x".to_string())] });
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        },
    ];
    for bytes in cases {
        let mut s = TcpStream::connect(target).await.unwrap();
        let _ = s.write_all(&bytes).await;
        // The acceptor closes the connection: reads reach EOF after the challenge.
        let mut buf = vec![0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(6), async {
            use tokio::io::AsyncReadExt;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection dropped for {bytes:?}");
    }
    // The real peer still gets through.
    a.send(1, vec![(7, "ok".into())]);
    assert_eq!(recv(&mut rb).await.batch, vec![(7, "ok".to_string())]);
}

#[tokio::test]
async fn oversized_frames_are_refused() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let ca = NetConfig::new(0, a_addr, vec![(1, b_addr)]);
    let mut cb = NetConfig::new(1, b_addr, vec![]);
    cb.max_frame_bytes = 1024;
    let (a, _ra) = Endpoint::<Msg>::start(ca).await.unwrap();
    let (_b, mut rb) = Endpoint::<Msg>::start(cb).await.unwrap();
    a.send(1, vec![(1, "y".repeat(4096))]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rb.try_recv().is_err());
}

#[tokio::test]
async fn unacked_frames_survive_a_receiver_restart() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (a, _ra) = Endpoint::<Msg>::start(NetConfig::new(0, a_addr, vec![(1, b_addr)])).await.unwrap();
    let (b1, mut rb1) = Endpoint::<Msg>::start(NetConfig::new(1, b_addr, vec![])).await.unwrap();
    a.send(1, vec![(1, "one".into())]);
    a.send(1, vec![(2, "two".into())]);
    let first = recv(&mut rb1).await;
    b1.ack(first.from, first.seq); // "one" is processed, "two" is not
    let second = recv(&mut rb1).await;
    assert_eq!(second.batch[0].0, 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(b1); // crash before processing "two"
    drop(rb1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.send(1, vec![(3, "three".into())]);
    let (b2, mut rb2) = Endpoint::<Msg>::start(NetConfig::new(1, b_addr, vec![])).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = recv(&mut rb2).await;
        b2.ack(d.from, d.seq);
        got.extend(d.batch.into_iter().map(|m| m.0));
    }
    assert_eq!(got, vec![2, 3], "the unacked frame is retransmitted, the acked one is not");
    assert!(a.drain(Duration::from_secs(5)).await);
    assert!(a.stats().retransmitted_frames >= 1);
}

#[tokio::test]
async fn sending_to_self_delivers_locally() {
    let addr = free_addr();
    let (a, mut ra) = Endpoint::<Msg>::start(NetConfig::new(4, addr, vec![])).await.unwrap();
    assert!(a.send(4, vec![(1, "me".into())]));
    assert!(!a.send(9, vec![(1, "nobody".into())]));
    assert_eq!(recv(&mut ra).await.from, 4);
}

type Raw = (FramedRead<OwnedReadHalf, LengthDelimitedCodec>, FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>);

/// A hand-driven connection, for playing a peer (honest or not) frame by frame.
async fn raw(addr: SocketAddr) -> Raw {
    let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
    (FramedRead::new(r, framing(1 << 20)), FramedWrite::new(w, framing(1 << 20)))
}

async fn next_frame(raw: &mut Raw) -> Option<Frame<Msg>> {
    match tokio::time::timeout(Duration::from_secs(5), raw.0.next()).await.expect("no frame and no close") {
        Some(Ok(bytes)) => Some(decode(&bytes).unwrap()),
        _ => None,
    }
}

/// Reads the challenge and answers with a Hello from `from` computed for node `to` at `to_addr`;
/// returns what the acceptor answers (None: it closed the connection).
async fn raw_hello(raw: &mut Raw, secret: &Secret, from: u32, to: u32, to_addr: SocketAddr) -> Option<Frame<Msg>> {
    let Some(Frame::Challenge { nonce: challenge }) = next_frame(raw).await else { panic!("no challenge") };
    let (incarnation, nonce, first_seq) = (77, auth::random_nonce(), 1);
    let mac = secret.hello_mac(&HelloBinding {
        challenge,
        from,
        incarnation,
        nonce,
        first_seq,
        to,
        to_addr: to_addr.to_string(),
    });
    raw.1.send(encode(&Frame::<Msg>::Hello { from, incarnation, nonce, first_seq, mac })).await.unwrap();
    next_frame(raw).await
}

async fn send_raw(raw: &mut Raw, frame: &Frame<Msg>) {
    let _ = raw.1.send(encode(frame)).await;
}

/// True when the peer closes `s` within `within` (reads reach EOF or an error).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn endpoint_with_secret(
    me: u32,
    peers: Vec<(u32, SocketAddr)>,
) -> (Endpoint<Msg>, mpsc::UnboundedReceiver<Delivery<Msg>>) {
    let mut config = NetConfig::new(me, free_addr(), peers);
    config.secret = Secret::new(b"k");
    Endpoint::<Msg>::start(config).await.unwrap()
}

/// Finding 5 of issue 14: node B is down and a process without the secret holds its port. It
/// relays C's challenge to A's dial of "B" and A's Hello back to C, hoping to speak as A at C.
#[tokio::test]
async fn a_relay_without_the_secret_gets_nothing_accepted() {
    let b_addr = free_addr();
    let attacker = tokio::net::TcpListener::bind(b_addr).await.unwrap();
    let (c, mut rc) = endpoint_with_secret(2, vec![]).await;
    let c_addr = c.local_addr();
    let (a, _ra) = endpoint_with_secret(0, vec![(1, b_addr), (2, c_addr)]).await;
    let (report, mut reports) = mpsc::unbounded_channel::<&'static str>();
    let _relay = tokio::spawn(async move {
        loop {
            let Ok((victim, _)) = attacker.accept().await else { return };
            let report = report.clone();
            tokio::spawn(async move {
                let (vr, vw) = victim.into_split();
                let mut victim: Raw = (FramedRead::new(vr, framing(1 << 20)), FramedWrite::new(vw, framing(1 << 20)));
                let mut target = raw(c_addr).await;
                let Some(Ok(challenge)) = target.0.next().await else { return };
                let _ = victim.1.send(challenge.freeze()).await;
                let Some(Ok(hello)) = victim.0.next().await else { return };
                let _ = target.1.send(hello.freeze()).await;
                match target.0.next().await {
                    Some(Ok(welcome)) => {
                        report.send("welcomed").unwrap();
                        // Speak as A, ahead of A's real numbering, then let A believe it reached B.
                        let forged = Frame::Data { from: 0, seq: 3, batch: vec![(666, "forged".to_string())] };
                        send_raw(&mut target, &forged).await;
                        let _ = victim.1.send(welcome.freeze()).await;
                        while let Some(Ok(data)) = victim.0.next().await {
                            let _ = target.1.send(data.freeze()).await;
                        }
                    }
                    _ => {
                        // Refused: try the forged frame anyway, on the refused connection.
                        send_raw(&mut target, &Frame::Data { from: 0, seq: 3, batch: vec![(666, "forged".into())] })
                            .await;
                        report.send("refused").unwrap();
                    }
                }
            });
        }
    });
    assert!(a.send(1, vec![(666, "meant for B".into())]));
    // Several relay attempts (A redials with backoff), every one refused.
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), reports.recv()).await.expect("no relay attempt");
        assert_eq!(r, Some("refused"));
    }
    // A's real frames to C all arrive: none was taken for a duplicate of a forged one.
    for i in 1..=3 {
        a.send(2, vec![(i, format!("real{i}"))]);
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let d = recv(&mut rc).await;
        assert_eq!(d.from, 0);
        c.ack(d.from, d.seq);
        got.extend(d.batch.into_iter().map(|m| m.0));
    }
    assert_eq!(got, vec![1, 2, 3]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rc.try_recv().is_err(), "nothing else reaches C");
    assert!(c.stats().rejected_connections >= 3);
    assert!(!a.drain(Duration::from_millis(100)).await, "the frame for B is still unacknowledged");
    assert!(!a.shared.connected.borrow().contains(&1), "A never believed it reached B");
}

#[tokio::test]
async fn a_hello_computed_for_one_node_is_refused_at_another() {
    let (c, _rc) = endpoint_with_secret(2, vec![]).await;
    let (c_addr, b_addr) = (c.local_addr(), free_addr());
    let secret = Secret::new(b"k");
    // For node 1 (at its address), for node 1 at C's address, for C at node 1's address.
    for (to, to_addr) in [(1, b_addr), (1, c_addr), (2, b_addr)] {
        let mut conn = raw(c_addr).await;
        assert_eq!(raw_hello(&mut conn, &secret, 0, to, to_addr).await, None, "hello for {to} at {to_addr}");
    }
    assert_eq!(c.stats().rejected_connections, 3);
    // The control: the same secret, for C at C's address, is welcomed.
    let mut conn = raw(c_addr).await;
    assert!(matches!(raw_hello(&mut conn, &secret, 0, 2, c_addr).await, Some(Frame::Welcome { resume_from: 0, .. })));
}

#[tokio::test]
async fn data_skipping_ahead_drops_the_connection_and_leaves_the_filter_alone() {
    let (c, mut rc) = endpoint_with_secret(2, vec![]).await;
    let (c_addr, secret) = (c.local_addr(), Secret::new(b"k"));
    let mut conn = raw(c_addr).await;
    assert!(raw_hello(&mut conn, &secret, 0, 2, c_addr).await.is_some());
    send_raw(&mut conn, &Frame::Data { from: 0, seq: 5, batch: vec![(5, "ahead".into())] }).await;
    assert_eq!(next_frame(&mut conn).await, None, "dropped");
    // The same dialler's frame 1 on a new connection is delivered, not taken for a duplicate.
    let mut conn = raw(c_addr).await;
    assert!(raw_hello(&mut conn, &secret, 0, 2, c_addr).await.is_some());
    send_raw(&mut conn, &Frame::Data { from: 0, seq: 1, batch: vec![(1, "first".into())] }).await;
    let d = recv(&mut rc).await;
    assert_eq!((d.seq, d.batch), (1, vec![(1, "first".to_string())]));
}

#[tokio::test]
async fn frames_are_small_until_authenticated() {
    let (c, mut rc) = endpoint_with_secret(2, vec![]).await;
    let (c_addr, secret) = (c.local_addr(), Secret::new(b"k"));
    assert_eq!(c.shared.max_frame_bytes, DEFAULT_MAX_FRAME_BYTES);
    // A length just over the pre-authentication limit closes the connection at once, long
    // before the handshake timeout, without waiting for (or reserving) the body.
    let mut s = TcpStream::connect(c_addr).await.unwrap();
    s.write_all(&(HANDSHAKE_MAX_FRAME_BYTES as u32 + 1).to_be_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut s, ACCEPT_HANDSHAKE_TIMEOUT / 2).await);
    assert!(started.elapsed() < ACCEPT_HANDSHAKE_TIMEOUT / 2);
    // After the Welcome the configured limit applies: a 100 kB frame is delivered.
    let mut conn = raw(c_addr).await;
    assert!(raw_hello(&mut conn, &secret, 0, 2, c_addr).await.is_some());
    send_raw(&mut conn, &Frame::Data { from: 0, seq: 1, batch: vec![(1, "x".repeat(100_000))] }).await;
    assert_eq!(recv(&mut rc).await.batch[0].1.len(), 100_000);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let (c, _rc) = endpoint_with_secret(2, vec![]).await;
    let mut s = TcpStream::connect(c.local_addr()).await.unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut s, ACCEPT_HANDSHAKE_TIMEOUT + Duration::from_secs(2)).await);
    assert!(started.elapsed() >= ACCEPT_HANDSHAKE_TIMEOUT - Duration::from_millis(100));
}

#[tokio::test]
async fn excess_pending_handshakes_are_closed_at_once() {
    let (c, mut rc) = endpoint_with_secret(2, vec![]).await;
    let c_addr = c.local_addr();
    let mut pending = Vec::new();
    for _ in 0..MAX_PENDING_HANDSHAKES {
        let mut conn = raw(c_addr).await;
        // A challenge means the connection holds a handshake slot.
        assert!(matches!(next_frame(&mut conn).await, Some(Frame::Challenge { .. })));
        pending.push(conn);
    }
    let mut excess = raw(c_addr).await;
    let started = std::time::Instant::now();
    assert_eq!(next_frame(&mut excess).await, None, "closed without a challenge");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(c.stats().rejected_connections, 1);
    // The slots come back when the connections go: an honest peer gets through.
    drop(pending);
    let (a, _ra) = endpoint_with_secret(0, vec![(2, c_addr)]).await;
    a.send(2, vec![(9, "after".into())]);
    assert_eq!(recv(&mut rc).await.batch, vec![(9, "after".to_string())]);
}

fn data(from: u32, seq: u64, text: &str) -> OutFrame {
    OutFrame { seq, bytes: encode(&Frame::Data { from, seq, batch: vec![(seq as u32, text.to_string())] }), msgs: 1 }
}

/// A durable sender killed after logging frames and before they all left comes back with the
/// same incarnation and its logged frames: the receiver gets each frame exactly once, the ones
/// it already had dropped by sequence number, and new frames continue the numbering.
#[tokio::test]
async fn a_durable_sender_resumes_with_its_logged_frames() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (b, mut rb) = Endpoint::<Msg>::start(NetConfig::new(1, b_addr, vec![])).await.unwrap();
    let mut ca = NetConfig::new(0, a_addr, vec![(1, b_addr)]);
    ca.incarnation = 42;
    let (a1, ra1) = Endpoint::<Msg>::start(ca.clone()).await.unwrap();
    let logged: Vec<OutFrame> = (1..=3).flat_map(|i| a1.prepare(1, vec![(i, format!("m{i}"))]).unwrap()).collect();
    assert_eq!(logged.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    a1.send_prepared(1, logged[..2].to_vec());
    let d1 = recv(&mut rb).await;
    let d2 = recv(&mut rb).await;
    assert_eq!((d1.seq, d2.seq, d1.incarnation), (1, 2, 42));
    b.ack(0, 1); // frame 1 processed, frame 2 delivered and not yet processed
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(a1); // killed before frame 3 left
    drop(ra1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ca.resume = Resume { inbound: Vec::new(), outbox: vec![(1, 4, logged.clone())] };
    let (a2, _ra2) = Endpoint::<Msg>::start(ca).await.unwrap();
    assert!(a2.send(1, vec![(4, "m4".into())]));
    let d3 = recv(&mut rb).await;
    let d4 = recv(&mut rb).await;
    assert_eq!((d3.seq, d3.batch[0].1.as_str(), d4.seq), (3, "m3", 4));
    b.ack(0, 4);
    assert!(a2.drain(Duration::from_secs(5)).await);
    assert_eq!(a2.acked(1), 4);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rb.try_recv().is_err(), "nothing twice");
    assert!(b.stats().duplicate_frames >= 1, "frame 2 came again and was dropped");
}

/// A durable receiver restarted with the marks of its logged ticks: retransmitted frames it
/// processed are dropped (and acknowledged at the handshake), the rest delivered.
#[tokio::test]
async fn a_durable_receiver_drops_what_its_logged_ticks_processed() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut ca = NetConfig::new(0, a_addr, vec![(1, b_addr)]);
    ca.incarnation = 5;
    let (a, _ra) = Endpoint::<Msg>::start(ca).await.unwrap();
    let (b1, mut rb1) = Endpoint::<Msg>::start(NetConfig::new(1, b_addr, vec![])).await.unwrap();
    for i in 1..=3 {
        a.send(1, vec![(i, format!("m{i}"))]);
    }
    for _ in 0..3 {
        recv(&mut rb1).await;
    }
    // Frames 1 and 2 processed by a logged tick; killed before acknowledging anything.
    drop(b1);
    drop(rb1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut cb = NetConfig::new(1, b_addr, vec![]);
    cb.resume = Resume { inbound: vec![(0, 5, 2)], outbox: Vec::new() };
    let (b2, mut rb2) = Endpoint::<Msg>::start(cb).await.unwrap();
    let d = recv(&mut rb2).await;
    assert_eq!((d.seq, d.batch[0].0), (3, 3));
    b2.ack(0, 3);
    assert!(a.drain(Duration::from_secs(5)).await);
    assert!(rb2.try_recv().is_err());
}

/// Batches to oneself are logged like any other: after a restart the ones above the processed
/// mark are delivered again, and the numbering goes on.
#[tokio::test]
async fn logged_batches_to_oneself_come_again_above_the_mark() {
    let addr = free_addr();
    let mut c = NetConfig::new(4, addr, vec![]);
    c.incarnation = 9;
    c.resume = Resume {
        inbound: vec![(4, 9, 2)],
        outbox: vec![(4, 4, vec![data(4, 1, "a"), data(4, 2, "b"), data(4, 3, "c")])],
    };
    let (e, mut rx) = Endpoint::<Msg>::start(c).await.unwrap();
    let d = recv(&mut rx).await;
    assert_eq!((d.from, d.seq, d.batch[0].1.as_str()), (4, 3, "c"));
    let frames = e.prepare(4, vec![(0, "d".into())]).unwrap();
    assert_eq!(frames[0].seq, 4);
    assert!(e.send_prepared(4, frames));
    let d = recv(&mut rx).await;
    assert_eq!((d.seq, d.batch[0].1.as_str()), (4, "d"));
}
