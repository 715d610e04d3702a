//! Networking between node processes: tokio TCP, length-delimited frames with a versioned postcard
//! codec ([`codec`]), an authenticated handshake ([`auth`]), and reliable delivery.
//!
//! Each endpoint listens on one socket and dials every peer it sends to. A dialed connection
//! carries data one way (dialer -> acceptor) and acks the other way. Every `Data` frame has a
//! per-direction sequence number; the dialer keeps a frame until it is acked, and the acceptor
//! acks only after the application says it processed the frame ([`Endpoint::ack`]). On reconnect
//! the acceptor announces the last frame it processed and the dialer retransmits the rest, so no
//! message is lost across a dropped connection or a restarted receiver; the acceptor drops
//! duplicates by sequence number (reset when the dialer's `incarnation` changes).
//!
//! A durable node keeps that state across restarts ([`Resume`]): its incarnation stays the same,
//! its frames get their sequence numbers before they leave ([`Endpoint::prepare`]) so that it can
//! log them with the tick that produced them, and a restarted endpoint starts with the frames it
//! logged and had not seen acknowledged (peers drop what they already processed) and with the last
//! frame it processed from each sender (retransmissions of those are dropped, not processed again).
//!
//! Malformed, oversized or wrong-version frames, and peers failing authentication, are logged and
//! their connection dropped; nothing a peer sends can crash the endpoint. Until a connection is
//! authenticated its frames are limited to [`HANDSHAKE_MAX_FRAME_BYTES`], the accepting side
//! gives it [`ACCEPT_HANDSHAKE_TIMEOUT`] for the whole handshake, and at most
//! [`MAX_PENDING_HANDSHAKES`] such connections exist at once (more are closed at once), so
//! unauthenticated peers cannot make an endpoint allocate much.

pub mod addr;
pub mod auth;
pub mod codec;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

pub use addr::HostPort;
pub use auth::Secret;
use auth::{HelloBinding, WelcomeBinding};
use codec::{decode, encode, Frame, Nonce};
pub use codec::{DEFAULT_MAX_FRAME_BYTES, HANDSHAKE_MAX_FRAME_BYTES, WIRE_VERSION};

/// A batch bigger than this is split into several frames, so that one tick's sends to a node
/// always fit under the receiver's frame limit.
const MAX_MESSAGES_PER_FRAME: usize = 2048;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The accepting side's limit on a whole handshake (challenge to welcome): an honest dialler
/// answers at once, so this only bounds how long an idle or slow connection holds a slot.
pub const ACCEPT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Unauthenticated connections an endpoint serves at once; more are closed on accept.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where an endpoint listens and whom it talks to.
#[derive(Clone)]
pub struct NetConfig {
    pub me: u32,
    /// The address to bind (port 0 means "any", and then the bound port is what counts).
    pub listen: SocketAddr,
    /// The address peers dial, as they name it (the handshake's MAC covers it). None: the bound
    /// address, which must then be a specific one, not 0.0.0.0.
    pub name: Option<HostPort>,
    pub peers: Vec<(u32, HostPort)>,
    pub secret: Secret,
    /// Frames longer than this are refused (the connection is dropped).
    pub max_frame_bytes: usize,
    /// Changes on every process start of a non-durable node; a durable node keeps its own
    /// (see the module docs).
    pub incarnation: u64,
    /// Where a restarted durable endpoint resumes (empty for a fresh one).
    pub resume: Resume,
}

/// One encoded `Data` frame: what [`Endpoint::prepare`] makes and a durable node logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFrame {
    pub seq: u64,
    /// The whole encoded frame (version byte, `Data { from, seq, batch }`).
    pub bytes: Bytes,
    /// Messages in the batch.
    pub msgs: u64,
}

/// The network state a durable endpoint restarts with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Per sender: (sender, its incarnation, the last frame of it processed). Retransmissions up
    /// to that frame are dropped as duplicates, and the sender is told to forget them.
    pub inbound: Vec<(u32, u64, u64)>,
    /// Per destination: (destination, the next sequence number, the frames sent and not known to
    /// be acknowledged, in order). They are sent again; the receiver drops what it processed.
    /// Frames to oneself are delivered again if they are above the processed mark of `inbound`.
    pub outbox: Vec<(u32, u64, Vec<OutFrame>)>,
}

impl NetConfig {
    /// Peers at IP addresses.
    pub fn new(me: u32, listen: SocketAddr, peers: Vec<(u32, SocketAddr)>) -> Self {
        Self::with_peers(me, listen, peers.into_iter().map(|(id, p)| (id, p.into())).collect())
    }

    /// Peers at addresses as a deployment names them (DNS names resolved on every dial).
    pub fn with_peers(me: u32, listen: SocketAddr, peers: Vec<(u32, HostPort)>) -> Self {
        NetConfig {
            me,
            listen,
            name: None,
            peers,
            secret: Secret::none(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            incarnation: fresh_incarnation(),
            resume: Resume::default(),
        }
    }
}

/// A process-unique number: nanoseconds since the epoch, mixed with the pid.
pub fn fresh_incarnation() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 48)
}

/// One received `Data` frame; pass `from` and `seq` back to [`Endpoint::ack`] once processed.
#[derive(Debug)]
pub struct Delivery<M> {
    pub from: u32,
    /// The sender's incarnation (its sequence numbers count within it).
    pub incarnation: u64,
    pub seq: u64,
    pub batch: Vec<M>,
}

#[derive(Default)]
struct NetStats {
    msgs_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_sent: AtomicU64,
    msgs_recv: AtomicU64,
    bytes_recv: AtomicU64,
    frames_recv: AtomicU64,
    retransmitted_frames: AtomicU64,
    duplicate_frames: AtomicU64,
    reconnects: AtomicU64,
    rejected_connections: AtomicU64,
}

/// Counters of one endpoint since it started. Bytes include the 4-byte length prefixes;
/// messages are items of `Data` batches; retransmissions count again.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStatsSnapshot {
    pub msgs_sent: u64,
    pub bytes_sent: u64,
    pub frames_sent: u64,
    pub msgs_recv: u64,
    pub bytes_recv: u64,
    pub frames_recv: u64,
    pub retransmitted_frames: u64,
    pub duplicate_frames: u64,
    pub reconnects: u64,
    pub rejected_connections: u64,
}

impl NetStatsSnapshot {
    /// The counts since `earlier` (a snapshot of the same endpoint).
    pub fn since(&self, earlier: &NetStatsSnapshot) -> NetStatsSnapshot {
        NetStatsSnapshot {
            msgs_sent: self.msgs_sent.saturating_sub(earlier.msgs_sent),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            frames_sent: self.frames_sent.saturating_sub(earlier.frames_sent),
            msgs_recv: self.msgs_recv.saturating_sub(earlier.msgs_recv),
            bytes_recv: self.bytes_recv.saturating_sub(earlier.bytes_recv),
            frames_recv: self.frames_recv.saturating_sub(earlier.frames_recv),
            retransmitted_frames: self.retransmitted_frames.saturating_sub(earlier.retransmitted_frames),
            duplicate_frames: self.duplicate_frames.saturating_sub(earlier.duplicate_frames),
            reconnects: self.reconnects.saturating_sub(earlier.reconnects),
            rejected_connections: self.rejected_connections.saturating_sub(earlier.rejected_connections),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl NetStats {
    fn snapshot(&self) -> NetStatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStatsSnapshot {
            msgs_sent: g(&self.msgs_sent),
            bytes_sent: g(&self.bytes_sent),
            frames_sent: g(&self.frames_sent),
            msgs_recv: g(&self.msgs_recv),
            bytes_recv: g(&self.bytes_recv),
            frames_recv: g(&self.frames_recv),
            retransmitted_frames: g(&self.retransmitted_frames),
            duplicate_frames: g(&self.duplicate_frames),
            reconnects: g(&self.reconnects),
            rejected_connections: g(&self.rejected_connections),
        }
    }
}

/// What the acceptor remembers of one dialing peer (across its connections).
struct Inbound {
    incarnation: u64,
    last_delivered: u64,
    last_acked: u64,
    ack_tx: Option<mpsc::UnboundedSender<u64>>,
}

struct Shared<M> {
    me: u32,
    /// The address peers dial this endpoint at: they MAC it into their Hello.
    name: HostPort,
    secret: Secret,
    max_frame_bytes: usize,
    incarnation: u64,
    stats: NetStats,
    /// Frames queued or sent but not yet acknowledged, over every peer.
    unacked: Arc<AtomicU64>,
    inbound: Mutex<HashMap<u32, Inbound>>,
    deliver: mpsc::UnboundedSender<Delivery<M>>,
    /// Peers whose outgoing connection is up.
    connected: watch::Sender<Vec<u32>>,
    /// Accepted connections' tasks, aborted with the endpoint.
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
    /// One permit per connection between accept and authentication.
    handshakes: Arc<Semaphore>,
    /// Connections refused for want of a permit, logged at most once a second.
    refused_log: Mutex<RateLimitedLog>,
}

/// Counts events and says when to log them: the first at once, then at most once per interval
/// with the number seen since, so a flood of connections cannot flood the log.
struct RateLimitedLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RateLimitedLog {
    const INTERVAL: Duration = Duration::from_secs(1);

    /// Some(events since the last log line) when a line is due now.
    fn event(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self.last.is_some_and(|t| now.duration_since(t) < Self::INTERVAL) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The sending side towards one peer, as the application sees it.
struct PeerOut {
    tx: mpsc::UnboundedSender<Vec<OutFrame>>,
    /// The sequence number the next prepared frame gets.
    next_seq: AtomicU64,
    /// The highest sequence number the peer acknowledged.
    acked: Arc<AtomicU64>,
}

/// A node's (or the launcher's) network endpoint. Dropping it stops every task.
pub struct Endpoint<M> {
    shared: Arc<Shared<M>>,
    outgoing: HashMap<u32, PeerOut>,
    /// Sequence numbers of batches to oneself (delivered locally, never acknowledged).
    self_seq: AtomicU64,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl<M> Drop for Endpoint<M> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for c in self.shared.connections.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            c.abort();
        }
    }
}

macro_rules! log {
    ($me:expr, $($arg:tt)*) => {
        crate::log::line(crate::log::Level::Warn, &format!("[compart net {}] ", $me), &format!($($arg)*))
    };
}

fn framing(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(max).new_codec()
}

impl<M> Endpoint<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Bind the listener and start dialing every peer. Must be called inside a tokio runtime.
    pub async fn start(config: NetConfig) -> io::Result<(Endpoint<M>, mpsc::UnboundedReceiver<Delivery<M>>)> {
        if config.listen.ip().is_unspecified() && config.name.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listen address {}: give the address peers dial (the handshake names it)", config.listen),
            ));
        }
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let name = config.name.clone().unwrap_or_else(|| local_addr.into());
        if !local_addr.ip().is_loopback() || !name.is_loopback() {
            // See docs/security.md: the handshake authenticates a connection's start only.
            log!(
                config.me,
                "listening on {local_addr} as {name}, not loopback: traffic is neither encrypted nor authenticated frame by frame"
            );
        }
        let (deliver, rx) = mpsc::unbounded_channel();
        let Resume { inbound: resume_in, outbox: resume_out } = config.resume;
        let inbound = resume_in
            .iter()
            .filter(|r| r.0 != config.me)
            .map(|&(from, incarnation, seq)| {
                (from, Inbound { incarnation, last_delivered: seq, last_acked: seq, ack_tx: None })
            })
            .collect();
        let mut resume_out: HashMap<u32, (u64, Vec<OutFrame>)> =
            resume_out.into_iter().map(|(to, next, frames)| (to, (next, frames))).collect();
        let shared = Arc::new(Shared {
            me: config.me,
            name,
            secret: config.secret.clone(),
            max_frame_bytes: config.max_frame_bytes,
            incarnation: config.incarnation,
            stats: NetStats::default(),
            unacked: Arc::new(AtomicU64::new(0)),
            inbound: Mutex::new(inbound),
            deliver,
            connected: watch::channel(Vec::new()).0,
            connections: Mutex::new(Vec::new()),
            handshakes: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
            refused_log: Mutex::new(RateLimitedLog { last: None, unlogged: 0 }),
        });
        let mut tasks = vec![tokio::spawn(accept_loop(listener, shared.clone()))];
        // Batches to oneself that were sent before a restart and not processed: deliver again.
        let mut self_seq = 1;
        if let Some((next, frames)) = resume_out.remove(&config.me) {
            let processed = resume_in.iter().find(|r| r.0 == config.me).map_or(0, |r| r.2);
            self_seq = next;
            for f in frames.into_iter().filter(|f| f.seq > processed) {
                match decode::<M>(&f.bytes) {
                    Ok(Frame::Data { batch, .. }) => {
                        let _ = shared.deliver.send(Delivery {
                            from: config.me,
                            incarnation: config.incarnation,
                            seq: f.seq,
                            batch,
                        });
                    }
                    _ => log!(config.me, "dropping an undecodable logged frame {} to itself", f.seq),
                }
            }
        }
        let mut outgoing = HashMap::new();
        for (peer, addr) in config.peers {
            if peer == config.me {
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let (next, frames) = resume_out.remove(&peer).unwrap_or((1, Vec::new()));
            let acked = Arc::new(AtomicU64::new(0));
            let mut outbox = Outbox {
                next_seq: next,
                pending: shared.unacked.clone(),
                acked: acked.clone(),
                unacked: VecDeque::new(),
            };
            for f in frames {
                add(&shared.unacked, 1);
                outbox.push(f);
            }
            outbox.next_seq = outbox.next_seq.max(next);
            outgoing.insert(peer, PeerOut { tx, next_seq: AtomicU64::new(outbox.next_seq), acked });
            tasks.push(tokio::spawn(dial_loop(shared.clone(), peer, addr, rx, outbox)));
        }
        Ok((Endpoint { shared, outgoing, self_seq: AtomicU64::new(self_seq), local_addr, tasks }, rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn me(&self) -> u32 {
        self.shared.me
    }

    /// Queue one batch for `to` (sent as one frame, or a few if it is very large). Sending to
    /// oneself delivers locally. Returns false for an unknown peer.
    pub fn send(&self, to: u32, batch: Vec<M>) -> bool {
        if batch.is_empty() {
            return true;
        }
        if to == self.shared.me {
            let seq = self.self_seq.fetch_add(1, Ordering::Relaxed);
            let incarnation = self.shared.incarnation;
            return self.shared.deliver.send(Delivery { from: to, incarnation, seq, batch }).is_ok();
        }
        match self.outgoing.get(&to) {
            Some(peer) => {
                let frames = Self::frames(self.shared.me, &peer.next_seq, batch);
                add(&self.shared.unacked, frames.len() as u64);
                peer.tx.send(frames).is_ok()
            }
            None => false,
        }
    }

    /// Encodes `batch` for `to` as the frames [`Endpoint::send_prepared`] will send, numbering
    /// them now, so that a durable node can log them before they leave. Frames must be sent in
    /// the order they were prepared, each exactly once. None for an unknown peer.
    pub fn prepare(&self, to: u32, batch: Vec<M>) -> Option<Vec<OutFrame>> {
        if batch.is_empty() {
            return Some(Vec::new());
        }
        if to == self.shared.me {
            return Some(Self::frames(self.shared.me, &self.self_seq, batch));
        }
        self.outgoing.get(&to).map(|peer| Self::frames(self.shared.me, &peer.next_seq, batch))
    }

    /// Sends frames made by [`Endpoint::prepare`] for `to`.
    pub fn send_prepared(&self, to: u32, frames: Vec<OutFrame>) -> bool {
        if frames.is_empty() {
            return true;
        }
        if to == self.shared.me {
            for f in frames {
                let Ok(Frame::Data { batch, .. }) = decode::<M>(&f.bytes) else { return false };
                let delivery = Delivery { from: to, incarnation: self.shared.incarnation, seq: f.seq, batch };
                if self.shared.deliver.send(delivery).is_err() {
                    return false;
                }
            }
            return true;
        }
        match self.outgoing.get(&to) {
            Some(peer) => {
                add(&self.shared.unacked, frames.len() as u64);
                peer.tx.send(frames).is_ok()
            }
            None => false,
        }
    }

    /// The highest sequence number `to` acknowledged (0: none yet, or unknown).
    pub fn acked(&self, to: u32) -> u64 {
        self.outgoing.get(&to).map_or(0, |p| p.acked.load(Ordering::Relaxed))
    }

    /// The incarnation this endpoint announces.
    pub fn incarnation(&self) -> u64 {
        self.shared.incarnation
    }

    /// The frames of one batch, split at [`MAX_MESSAGES_PER_FRAME`], numbered from `next`.
    fn frames(me: u32, next: &AtomicU64, mut batch: Vec<M>) -> Vec<OutFrame> {
        let mut frames = Vec::with_capacity(batch.len().div_ceil(MAX_MESSAGES_PER_FRAME));
        while !batch.is_empty() {
            let rest =
                if batch.len() > MAX_MESSAGES_PER_FRAME { batch.split_off(MAX_MESSAGES_PER_FRAME) } else { Vec::new() };
            let seq = next.fetch_add(1, Ordering::Relaxed);
            let msgs = batch.len() as u64;
            frames.push(OutFrame { seq, bytes: encode(&Frame::Data { from: me, seq, batch }), msgs });
            batch = rest;
        }
        frames
    }

    /// The application processed every frame from `from` up to `seq`: acknowledge them.
    pub fn ack(&self, from: u32, seq: u64) {
        if from == self.shared.me || seq == 0 {
            return;
        }
        let mut inbound = self.shared.inbound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = inbound.get_mut(&from) {
            if seq > state.last_acked {
                state.last_acked = seq;
                if let Some(tx) = &state.ack_tx {
                    let _ = tx.send(seq);
                }
            }
        }
    }

    /// Wait until the outgoing connection to every peer is up.
    pub async fn wait_connected(&self) {
        let want = self.outgoing.len();
        let mut rx = self.shared.connected.subscribe();
        let _ = rx.wait_for(|c| c.len() >= want).await;
    }

    /// Wait until the outgoing connection to each of `peers` is up (oneself counts as connected).
    pub async fn wait_connected_to(&self, peers: &[u32]) {
        let me = self.shared.me;
        let mut rx = self.shared.connected.subscribe();
        let _ = rx.wait_for(|c| peers.iter().all(|p| *p == me || c.contains(p))).await;
    }

    /// Whether the outgoing connection to each of `peers` is up now, as a check another task
    /// can keep (a readiness probe).
    pub fn connected_check(&self, peers: Vec<u32>) -> impl Fn() -> bool + Send + Sync + 'static {
        let me = self.shared.me;
        let rx = self.shared.connected.subscribe();
        move || {
            let c = rx.borrow();
            peers.iter().all(|p| *p == me || c.contains(p))
        }
    }

    /// Wait until every frame sent so far is acknowledged, or `timeout` passes; true if all were.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.unacked.load(Ordering::Relaxed) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn stats(&self) -> NetStatsSnapshot {
        self.shared.stats.snapshot()
    }
}

async fn accept_loop<M>(listener: TcpListener, shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let Ok(permit) = shared.handshakes.clone().try_acquire_owned() else {
                    // Closing at once costs nothing; the slot holders time out within
                    // ACCEPT_HANDSHAKE_TIMEOUT, and honest diallers retry with backoff.
                    drop(stream);
                    add(&shared.stats.rejected_connections, 1);
                    let due = shared.refused_log.lock().unwrap_or_else(|e| e.into_inner()).event(Instant::now());
                    if let Some(n) = due {
                        log!(
                            shared.me,
                            "refusing connection from {addr}: {MAX_PENDING_HANDSHAKES} handshakes pending ({n} refused since the last report)"
                        );
                    }
                    continue;
                };
                let task_shared = shared.clone();
                let task = tokio::spawn(async move {
                    match serve_connection(stream, &task_shared, permit).await {
                        Ok(()) => {}
                        Err(e) if quiet_error(&e) => {}
                        Err(e) => log!(task_shared.me, "dropping connection from {addr}: {e}"),
                    }
                });
                let mut connections = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
                connections.retain(|c| !c.is_finished());
                connections.push(task.abort_handle());
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                log!(shared.me, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Errors of a peer going away (stopping or crashing): expected, not worth a log line.
fn quiet_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

async fn read_frame<M: DeserializeOwned>(
    read: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    stats: &NetStats,
) -> io::Result<Option<Frame<M>>> {
    match read.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(e),
        Some(Ok(bytes)) => {
            add(&stats.bytes_recv, bytes.len() as u64 + 4);
            decode(&bytes).map(Some).map_err(|e| err(e.to_string()))
        }
    }
}

/// Frames without a batch encode the same for every `M`; callers use `M = ()` for them so that
/// spawned writers need no bounds on the payload type.
async fn write_frame<M: Serialize>(
    write: &mut FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    frame: &Frame<M>,
) -> io::Result<()> {
    write.send(encode(frame)).await
}

/// The accepting side of one connection: handshake, then deliver data and send acks. `permit`
/// is this connection's handshake slot, given back once it is authenticated.
async fn serve_connection<M>(stream: TcpStream, shared: &Arc<Shared<M>>, permit: OwnedSemaphorePermit) -> io::Result<()>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut read = FramedRead::new(r, framing(HANDSHAKE_MAX_FRAME_BYTES));
    let mut write = FramedWrite::new(w, framing(shared.max_frame_bytes));
    let steps = async {
        let challenge = auth::random_nonce();
        write_frame::<M>(&mut write, &Frame::Challenge { nonce: challenge }).await?;
        let Some(Frame::Hello { from, incarnation, nonce, first_seq, mac }) =
            read_frame::<M>(&mut read, &shared.stats).await?
        else {
            return Err(err("expected a hello frame"));
        };
        let binding = HelloBinding {
            challenge,
            from,
            incarnation,
            nonce,
            first_seq,
            to: shared.me,
            to_addr: shared.name.to_string(),
        };
        if from == shared.me || !shared.secret.verify_hello(&binding, &mac) {
            add(&shared.stats.rejected_connections, 1);
            return Err(err(format!(
                "peer claiming to be {from} failed authentication (wrong secret, or its hello was for another node)"
            )));
        }
        Ok((challenge, from, incarnation, nonce, first_seq))
    };
    let (challenge, from, incarnation, nonce, first_seq) = tokio::time::timeout(ACCEPT_HANDSHAKE_TIMEOUT, steps)
        .await
        .map_err(|_| err("no authenticated hello within the handshake timeout"))??;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let resume_from = {
        let mut inbound = shared.inbound.lock().unwrap_or_else(|e| e.into_inner());
        let state =
            inbound.entry(from).or_insert(Inbound { incarnation, last_delivered: 0, last_acked: 0, ack_tx: None });
        if state.incarnation != incarnation {
            // The dialer restarted: its numbering starts over.
            *state = Inbound { incarnation, last_delivered: 0, last_acked: 0, ack_tx: None };
        }
        // Frames below `first_seq` were acknowledged by this node (before a restart of ours):
        // the dialler never sends them again, so the next frame expected is `first_seq`.
        state.last_delivered = state.last_delivered.max(first_seq.saturating_sub(1));
        // Replacing the sender ends the previous connection's ack writer.
        state.ack_tx = Some(ack_tx);
        state.last_acked
    };
    let mac = shared.secret.welcome_mac(&WelcomeBinding { challenge, nonce, from, to: shared.me, resume_from });
    tokio::time::timeout(ACCEPT_HANDSHAKE_TIMEOUT, write_frame::<M>(&mut write, &Frame::Welcome { resume_from, mac }))
        .await
        .map_err(|_| err("welcome not taken within the handshake timeout"))??;
    // Authenticated: the peer gets the configured frame limit, and its handshake slot is free.
    read.decoder_mut().set_max_frame_length(shared.max_frame_bytes);
    drop(permit);

    let ack_writer = tokio::spawn(async move {
        while let Some(mut upto) = ack_rx.recv().await {
            while let Ok(more) = ack_rx.try_recv() {
                upto = upto.max(more);
            }
            if write_frame::<()>(&mut write, &Frame::Ack { upto }).await.is_err() {
                break;
            }
        }
    });
    let result = async {
        loop {
            match read_frame::<M>(&mut read, &shared.stats).await? {
                None => return Ok(()),
                Some(Frame::Data { from: sender, seq, batch }) => {
                    if sender != from {
                        return Err(err(format!("data from {sender} on the connection of {from}")));
                    }
                    add(&shared.stats.frames_recv, 1);
                    add(&shared.stats.msgs_recv, batch.len() as u64);
                    let mut inbound = shared.inbound.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(state) = inbound.get_mut(&from) else { return Ok(()) };
                    if state.incarnation != incarnation {
                        return Ok(()); // a newer connection of a restarted dialer took over
                    }
                    if seq <= state.last_delivered {
                        add(&shared.stats.duplicate_frames, 1);
                        continue;
                    }
                    // Frames come in sequence from the authenticated base (Hello's `first_seq`):
                    // a frame skipping ahead would make the real ones it skips look like duplicates.
                    if seq != state.last_delivered + 1 {
                        return Err(err(format!(
                            "data frame {seq} from {from}, expected {}",
                            state.last_delivered + 1
                        )));
                    }
                    state.last_delivered = seq;
                    drop(inbound);
                    if shared.deliver.send(Delivery { from, incarnation, seq, batch }).is_err() {
                        return Ok(()); // the application is gone
                    }
                }
                Some(_) => return Err(err("unexpected frame after the handshake")),
            }
        }
    }
    .await;
    ack_writer.abort();
    result
}

struct Outbox {
    /// One past the last frame taken in (frames come numbered, in order, from the endpoint).
    next_seq: u64,
    /// Frames counted by the endpoint when queued, not yet acknowledged.
    pending: Arc<AtomicU64>,
    /// The highest acknowledged sequence number, for the application ([`Endpoint::acked`]).
    acked: Arc<AtomicU64>,
    /// Frames sent (or to send) and not yet acknowledged, in sequence order.
    unacked: VecDeque<OutFrame>,
}

impl Outbox {
    /// Takes in one numbered frame; its index in `unacked`.
    fn push(&mut self, frame: OutFrame) -> usize {
        self.next_seq = self.next_seq.max(frame.seq + 1);
        self.unacked.push_back(frame);
        self.unacked.len() - 1
    }

    fn acked(&mut self, upto: u64) {
        self.acked.fetch_max(upto, Ordering::Relaxed);
        while self.unacked.front().is_some_and(|f| f.seq <= upto) {
            self.unacked.pop_front();
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The dialing side towards one peer: connect with exponential backoff, retransmit what was not
/// acknowledged, then stream new batches and consume acks until the connection fails.
async fn dial_loop<M>(
    shared: Arc<Shared<M>>,
    peer: u32,
    addr: HostPort,
    mut rx: mpsc::UnboundedReceiver<Vec<OutFrame>>,
    mut outbox: Outbox,
) where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut backoff = BACKOFF_START;
    let mut ever_connected = false;
    loop {
        let first_seq = outbox.unacked.front().map_or(outbox.next_seq, |f| f.seq);
        match handshake(&shared, peer, &addr, first_seq).await {
            Ok((mut read, mut write, resume_from)) => {
                backoff = BACKOFF_START;
                if ever_connected {
                    add(&shared.stats.reconnects, 1);
                }
                ever_connected = true;
                outbox.acked(resume_from);
                shared.connected.send_modify(|c| c.push(peer));
                let error = stream_to_peer(&shared, &mut outbox, &mut rx, &mut read, &mut write).await;
                shared.connected.send_modify(|c| c.retain(|&p| p != peer));
                match error {
                    None => return, // the endpoint was dropped
                    // A peer that stops or crashes closes its connections: expected, and the
                    // reconnect loop below handles it quietly.
                    Some(e) if quiet_error(&e) => {}
                    Some(e) => log!(shared.me, "connection to {peer} ({addr}) lost: {e}; reconnecting"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                log!(shared.me, "peer {peer} ({addr}) refused: {e}");
            }
            // Peers that are not up yet refuse connections: retry quietly.
            Err(_) => {}
        }
        // Keep accepting batches while disconnected so the application never blocks.
        let wake = tokio::time::sleep(backoff);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => break,
                batch = rx.recv() => match batch {
                    None => return,
                    Some(frames) => for f in frames { outbox.push(f); },
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

type Halves = (FramedRead<OwnedReadHalf, LengthDelimitedCodec>, FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>, u64);

/// Dial `peer` at `addr` (the address in our peer table, which the Hello's MAC names; a name is
/// resolved again on every dial) and authenticate both ways; returns the connection and the
/// acceptor's resume point.
async fn handshake<M>(shared: &Shared<M>, peer: u32, addr: &HostPort, first_seq: u64) -> io::Result<Halves>
where
    M: Serialize + DeserializeOwned,
{
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect((addr.host.as_str(), addr.port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    // Whoever holds the port is unauthenticated until its Welcome verifies.
    let mut read = FramedRead::new(r, framing(HANDSHAKE_MAX_FRAME_BYTES));
    // Our own frames are bounded by MAX_MESSAGES_PER_FRAME; the receiver enforces its limit.
    let mut write = FramedWrite::new(w, framing(usize::MAX));
    let steps = async {
        let Some(Frame::Challenge { nonce: challenge }) = read_frame::<M>(&mut read, &shared.stats).await? else {
            return Err(err("expected a challenge"));
        };
        let nonce: Nonce = auth::random_nonce();
        let (from, incarnation) = (shared.me, shared.incarnation);
        let mac = shared.secret.hello_mac(&HelloBinding {
            challenge,
            from,
            incarnation,
            nonce,
            first_seq,
            to: peer,
            to_addr: addr.to_string(),
        });
        write_frame::<M>(&mut write, &Frame::Hello { from, incarnation, nonce, first_seq, mac }).await?;
        match read_frame::<M>(&mut read, &shared.stats).await? {
            Some(Frame::Welcome { resume_from, mac }) => {
                let binding = WelcomeBinding { challenge, nonce, from, to: peer, resume_from };
                if !shared.secret.verify_welcome(&binding, &mac) {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, "peer failed authentication"));
                }
                Ok(resume_from)
            }
            // The acceptor closes without a welcome when our MAC was wrong.
            None => Err(io::Error::new(io::ErrorKind::PermissionDenied, "closed during the handshake (wrong secret?)")),
            Some(_) => Err(err("expected a welcome")),
        }
    };
    let resume_from = tokio::time::timeout(HANDSHAKE_TIMEOUT, steps)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    read.decoder_mut().set_max_frame_length(shared.max_frame_bytes);
    Ok((read, write, resume_from))
}

/// Queue one encoded frame of `msgs` messages on the connection, counting it (4 bytes of length prefix).
async fn feed_frame(
    write: &mut FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    stats: &NetStats,
    bytes: &Bytes,
    msgs: u64,
) -> io::Result<()> {
    add(&stats.frames_sent, 1);
    add(&stats.msgs_sent, msgs);
    add(&stats.bytes_sent, bytes.len() as u64 + 4);
    write.feed(bytes.clone()).await
}

/// Returns None when the application dropped its sender (clean stop), or the connection error.
async fn stream_to_peer<M>(
    shared: &Shared<M>,
    outbox: &mut Outbox,
    rx: &mut mpsc::UnboundedReceiver<Vec<OutFrame>>,
    read: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    write: &mut FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
) -> Option<io::Error>
where
    M: Serialize + DeserializeOwned,
{
    let stats = &shared.stats;
    // Retransmit everything not yet acknowledged, in order.
    for f in &outbox.unacked {
        add(&stats.retransmitted_frames, 1);
        if let Err(e) = feed_frame(write, stats, &f.bytes, f.msgs).await {
            return Some(e);
        }
    }
    if let Err(e) = SinkExt::<Bytes>::flush(write).await {
        return Some(e);
    }
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else {
                    // Clean stop: flush what is queued, then report it.
                    let _ = SinkExt::<Bytes>::flush(write).await;
                    return None;
                };
                let mut batches = vec![batch];
                while let Ok(b) = rx.try_recv() {
                    batches.push(b);
                }
                for frames in batches {
                    for f in frames {
                        let i = outbox.push(f);
                        let f = &outbox.unacked[i];
                        if let Err(e) = feed_frame(write, stats, &f.bytes, f.msgs).await {
                            return Some(e);
                        }
                    }
                }
                if let Err(e) = SinkExt::<Bytes>::flush(write).await {
                    return Some(e);
                }
            }
            frame = read_frame::<M>(read, stats) => match frame {
                Ok(Some(Frame::Ack { upto })) => outbox.acked(upto),
                Ok(Some(_)) => return Some(err("unexpected frame from the acceptor")),
                Ok(None) => return Some(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by peer")),
                Err(e) => return Some(e),
            },
        }
    }
}

#[cfg(test)]
mod tests;
