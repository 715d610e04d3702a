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
