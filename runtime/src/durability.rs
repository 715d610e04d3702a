//! Durable tables: an append-only log of table changes, one record per tick, fsync'd before the
//! tick's messages leave the node; on restart the node's tables are rebuilt from it.
//!
//! File format (version [`FORMAT_VERSION`]): the magic bytes [`MAGIC`], the format version (u32
//! LE), then records `[len: u32 LE][crc32(len bytes): u32 LE][crc32(payload): u32 LE][payload]`.
//! The length has its own checksum so that a damaged length is told apart from a write cut short
//! by a crash. A payload starts with its kind:
//! - 0, the header, always the first record: the program (SHA-256 of its text, hex), the component
//!   and the node that write the log, each `[u32 length][UTF-8]`, then the node's network
//!   incarnation (u64), which stays the same across its restarts. A log of another program,
//!   component or node is refused;
//! - 1, the table changes of one tick: `[op: u8 (0 insert, 1 delete)][relation: u32][n: u16]
//!   [values]`, each value `[tag: u8][...]`: 0 int (i64 LE), 1 string (u32 length + UTF-8), 2 bool
//!   (u8), 3 addr (u32). Values are stored as values, not as interned ids, so a log outlives its
//!   process;
//! - 2, a tick with what it sent ([`NetRecord`]): `[changes length: u32][changes as in 1]`, then
//!   `[n: u32]` inbound marks `[sender: u32][incarnation: u64][last processed seq: u64]`, `[n: u32]`
//!   next sequence numbers `[destination: u32][seq: u64]`, `[n: u32]` frames `[destination: u32]
//!   [seq: u64][messages: u64][length: u32][the encoded frame]`. A node logs its tick's outgoing
//!   frames before they leave, so a crash between the log write and the sends loses nothing: the
//!   restarted node sends them again (receivers drop the ones they processed, by sequence number)
//!   and drops the retransmitted inputs its logged ticks processed. A compacted log is the header
//!   and one such record holding every table fact, every mark and the unacknowledged frames
//!   ([`DurableLog::compact`]).
//!
//! Recovery never destroys data. It reads records up to the first bad one; then:
//! - a last record cut short (a crash during its write: its tick never completed, nothing it did
//!   was acknowledged or sent) is moved aside and recovery goes on;
//! - anything else (a checksum mismatch, a damaged length, an undecodable record, a damaged
//!   header, an empty file) is refused with the file, the record and the byte offset, and the
//!   file is left as it is, unless the caller accepts the loss: then the bytes from the bad
//!   record on are moved aside and the good prefix is kept.
//!
//! "Moved aside" means copied to `<log>.damaged-<unix seconds>` (fsync'd) before the log is cut
//! back, so the original file is always the log followed by that file. Files that are not compart
//! logs, or of another format version, are never touched.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compart_analysis::model::RelationId;
use sha2::{Digest, Sha256};

use crate::net::{OutFrame, Resume};
use crate::value::{NodeAddr, Tuple, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Insert(RelationId, Tuple),
    Delete(RelationId, Tuple),
}

/// The first bytes of every log (0x89 first, as in PNG: not text, so no text tool mistakes it).
pub const MAGIC: [u8; 8] = *b"\x89compart";
/// The format this build writes and reads; bump it on any change of the layout above.
pub const FORMAT_VERSION: u32 = 3;

const FILE_HEADER: usize = 12;
const RECORD_HEADER: usize = 12;
const MAX_RECORD: u32 = 1 << 30;
const KIND_HEADER: u8 = 0;
const KIND_CHANGES: u8 = 1;
const KIND_TICK: u8 = 2;

/// The network side of one logged tick (or, in a compacted log, of everything before it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetRecord {
    /// (sender, its incarnation, the last of its frames processed) for the senders whose mark
    /// moved since the last record.
    pub inbound: Vec<(u32, u64, u64)>,
    /// (destination, next sequence number): written by compaction, when the frames that would
    /// imply it were acknowledged and dropped.
    pub next_seq: Vec<(u32, u64)>,
    /// (destination, frame), in the order they are sent.
    pub frames: Vec<(u32, OutFrame)>,
}

impl NetRecord {
    pub fn is_empty(&self) -> bool {
        self.inbound.is_empty() && self.next_seq.is_empty() && self.frames.is_empty()
    }
}

/// Who writes a log: recovery refuses a log whose header names anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogIdentity {
    /// [`program_hash`] of the program's text.
    pub program: String,
    pub component: String,
    /// The node's name in the deployment (`acceptor/1`, `kv/0.1`).
    pub node: String,
}

/// SHA-256 of a program's text, in hex: what a log's header names the program by.
pub fn program_hash(text: &str) -> String {
    crate::hex(&Sha256::digest(text.as_bytes()))
}

/// Where the log of node `node` lives under the durability directory `dir`: one file per node,
/// the name escaped so that no two node names share a file (`kv/0.1` and `kv_0/1` used to).
pub fn log_path(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{}.log", escape_file_name(node)))
}

/// Keeps `[a-z0-9_-]`, writes every other byte as `%XX`: injective, and no two results differ
/// only by case (case-insensitive file systems would merge them).
fn escape_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records of table changes recovered (the header not counted).
    pub records: usize,
    pub changes: usize,
    /// The log did not exist and was created.
    pub created: bool,
    /// Bytes moved out of the log (a cut-short last record, or damage the caller accepted),
    /// with the reason and where they went.
    pub dropped_bytes: u64,
    pub dropped_reason: Option<String>,
    pub kept_aside: Option<PathBuf>,
    /// Damage was accepted (`accept_loss`): records may be missing, not only a torn last one.
    pub lost_records: bool,
    /// The node's network incarnation, from the header (a new log gets a fresh one).
    pub incarnation: u64,
    /// The network state the logged ticks leave: marks per sender, and per destination the next
    /// sequence number and every logged frame (the acknowledged ones included: the receivers
    /// tell which at the first handshake).
    pub net: Resume,
}

/// Why a log cannot be used. Every variant names the file; none has changed it.
#[derive(Debug)]
pub enum LogError {
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// An empty file where a log should be (a log always starts with its header).
    Empty {
        path: PathBuf,
    },
    /// Not a compart log.
    Foreign {
        path: PathBuf,
    },
    /// A compart log of another format version.
    Version {
        path: PathBuf,
        found: u32,
    },
    /// The header names another program, component or node.
    Mismatch {
        path: PathBuf,
        field: &'static str,
        expected: String,
        found: String,
    },
    /// A bad record (record 0 is the header) that is not a cut-short end.
    Damaged {
        path: PathBuf,
        record: usize,
        offset: u64,
        file_len: u64,
        reason: String,
        /// Intact records found after the damage (what accepting the loss would drop).
        intact_after: usize,
    },
    /// The log's changes do not fit the program (cannot happen for a log whose header matches,
    /// short of a bug).
    Restore {
        path: PathBuf,
        message: String,
    },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io { path, action, error } => {
                write!(f, "cannot {action} durability log {}: {error}", path.display())
            }
            LogError::Empty { path } => write!(
                f,
                "durability log {} is empty: a log always starts with a header, so it was truncated or \
                 replaced and the node's tables are lost; move it away, or pass --accept-log-loss to start \
                 with empty tables (the file is kept aside)",
                path.display()
            ),
            LogError::Foreign { path } => write!(
                f,
                "{} is not a compart durability log (format {FORMAT_VERSION} or later); refusing to touch it: \
                 move it away or use another --durable directory",
                path.display()
            ),
            LogError::Version { path, found } => write!(
                f,
                "durability log {} has format version {found}; this compart reads version {FORMAT_VERSION}: \
                 use the compart that wrote it, or another --durable directory",
                path.display()
            ),
            LogError::Mismatch { path, field, expected, found } => write!(
                f,
                "durability log {} belongs to {field} `{found}`, not `{expected}`: refusing to load another \
                 {field}'s tables; use another --durable directory, or move the file away",
                path.display()
            ),
            LogError::Damaged { path, record, offset, file_len, reason, intact_after } => {
                write!(
                    f,
                    "durability log {} is damaged at record {record} (byte offset {offset} of {file_len}): {reason}",
                    path.display()
                )?;
                if *intact_after > 0 {
                    write!(f, "; {intact_after} intact record(s) follow it")?;
                }
                write!(
                    f,
                    ". The file is left as it is. To start from the {} record(s) before the damage, pass \
                     --accept-log-loss: bytes {offset}.. are then moved to a `.damaged-<time>` file next to it",
                    record.saturating_sub(1)
                )
            }
            LogError::Restore { path, message } => write!(f, "durability log {}: {message}", path.display()),
        }
    }
}

impl std::error::Error for LogError {}

pub struct DurableLog {
    file: File,
    path: PathBuf,
    /// Length of the intact log: a failed append is cut back to it, so a later record never
    /// follows a partial one (which recovery would take for damage).
    len: u64,
    identity: LogIdentity,
    incarnation: u64,
    /// fsync after each record (off only for tests and benchmarks of the log itself).
    pub sync: bool,
}

/// A record that could not be read: cut short by the end of the file (a torn write) or damaged.
enum Bad {
    Torn(String),
    Damaged(String),
}

/// Reads the record at `pos`: its payload and the offset after it.
fn read_record(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), Bad> {
    let rest = &bytes[pos..];
    if rest.len() < RECORD_HEADER {
        return Err(Bad::Torn(format!(
            "the file ends inside a record header ({} of {RECORD_HEADER} bytes)",
            rest.len()
        )));
    }
    let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let (len, len_check, crc) = (word(0), word(4), word(8));
    if crc32(&rest[..4]) != len_check {
        return Err(Bad::Damaged("the record's length is damaged (its checksum does not match)".into()));
    }
    if len > MAX_RECORD {
        return Err(Bad::Damaged(format!("record length {len} is out of range")));
    }
    let end = RECORD_HEADER + len as usize;
    if rest.len() < end {
        return Err(Bad::Torn(format!(
            "the file ends inside a record ({} of {len} bytes)",
            rest.len() - RECORD_HEADER
        )));
    }
    let payload = &rest[RECORD_HEADER..end];
    if crc32(payload) != crc {
        return Err(Bad::Damaged("checksum mismatch".into()));
    }
    Ok((payload, pos + end))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut record = Vec::with_capacity(payload.len() + RECORD_HEADER);
    record.extend_from_slice(&len);
    record.extend_from_slice(&crc32(&len).to_le_bytes());
    record.extend_from_slice(&crc32(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn encode_header(id: &LogIdentity, incarnation: u64) -> Vec<u8> {
    let mut out = vec![KIND_HEADER];
    for s in [&id.program, &id.component, &id.node] {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&incarnation.to_le_bytes());
    out
}

fn decode_header(payload: &[u8]) -> Result<(LogIdentity, u64), String> {
    let Some((&KIND_HEADER, mut b)) = payload.split_first() else {
        return Err("the first record is not a header".into());
    };
    let mut field = || -> Result<String, String> {
        let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().map_err(|_| "short")?) as usize;
        Ok(std::str::from_utf8(take(&mut b, len)?).map_err(|_| "invalid UTF-8 in the header")?.to_string())
    };
    let id = LogIdentity { program: field()?, component: field()?, node: field()? };
    let incarnation = u64::from_le_bytes(take(&mut b, 8)?.try_into().map_err(|_| "short")?);
    if !b.is_empty() {
        return Err("trailing bytes in the header".into());
    }
    Ok((id, incarnation))
}

/// Counts the intact records after a damaged one at `pos`: the first offset where an intact
/// record starts (the length checksum makes false starts rare and cheap to reject), then the
/// records that follow it in a row.
fn intact_after(bytes: &[u8], pos: usize) -> usize {
    let mut start = None;
    for q in pos + 1..bytes.len().saturating_sub(RECORD_HEADER - 1) {
        if let Ok((payload, next)) = read_record(bytes, q) {
            if decode_record(payload).is_ok() {
                start = Some(next);
                break;
            }
        }
    }
    let Some(mut at) = start else { return 0 };
    let mut n = 1;
    while let Ok((_, next)) = read_record(bytes, at) {
        at = next;
        n += 1;
    }
    n
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Copies `tail` to a new `<log>.damaged-<unix seconds>[-n]` file next to the log, on disk
/// before this returns.
fn keep_aside(path: &Path, tail: &[u8]) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "log".into());
    for n in 0u32.. {
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        let aside = path.with_file_name(format!("{name}.damaged-{secs}{suffix}"));
        match OpenOptions::new().write(true).create_new(true).open(&aside) {
            Ok(mut f) => {
                f.write_all(tail)?;
                f.sync_all()?;
                sync_dir(&aside)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free name for the damaged part"))
}

impl DurableLog {
    /// Opens the log at `path` for the writer `identity` (creating it, with its header, when
    /// missing), reads every intact record and positions for appending. See the module
    /// documentation for what happens to a bad record; `accept_loss` lets recovery keep the good
    /// prefix of a damaged log (and start an empty file afresh) instead of refusing.
    pub fn open(
        path: &Path,
        identity: &LogIdentity,
        accept_loss: bool,
    ) -> Result<(DurableLog, Vec<Change>, RecoveryReport), LogError> {
        let io_err =
            |action: &'static str| move |error: io::Error| LogError::Io { path: path.to_path_buf(), action, error };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let log = Self::create(path, identity).map_err(io_err("create"))?;
                let incarnation = log.incarnation;
                return Ok((log, Vec::new(), RecoveryReport { created: true, incarnation, ..Default::default() }));
            }
            Err(e) => return Err(io_err("read")(e)),
        };
        let mut report = RecoveryReport::default();
        if bytes.is_empty() {
            if !accept_loss {
                return Err(LogError::Empty { path: path.to_path_buf() });
            }
            report.kept_aside = Some(keep_aside(path, &[]).map_err(io_err("keep aside"))?);
            report.dropped_reason = Some("empty file".into());
            let log = Self::create(path, identity).map_err(io_err("create"))?;
            let incarnation = log.incarnation;
            return Ok((log, Vec::new(), RecoveryReport { created: true, lost_records: true, incarnation, ..report }));
        }
        if bytes.len() < FILE_HEADER || bytes[..MAGIC.len()] != MAGIC {
            return Err(LogError::Foreign { path: path.to_path_buf() });
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != FORMAT_VERSION {
            return Err(LogError::Version { path: path.to_path_buf(), found: version });
        }
        let damaged = |record: usize, pos: usize, reason: String| LogError::Damaged {
            path: path.to_path_buf(),
            record,
            offset: pos as u64,
            file_len: bytes.len() as u64,
            reason,
            intact_after: intact_after(&bytes, pos),
        };
        // The header: damage here is never a torn write (logs are created whole, by rename).
        let header = match read_record(&bytes, FILE_HEADER) {
            Ok((payload, next)) => decode_header(payload).map(|h| (h, next)),
            Err(Bad::Torn(why) | Bad::Damaged(why)) => Err(why),
        };
        let mut pos = match header {
            Ok(((found, incarnation), next)) => {
                report.incarnation = incarnation;
                for (field, e, f) in [
                    ("program", &identity.program, &found.program),
                    ("component", &identity.component, &found.component),
                    ("node", &identity.node, &found.node),
                ] {
                    if e != f {
                        return Err(LogError::Mismatch {
                            path: path.to_path_buf(),
                            field,
                            expected: e.clone(),
                            found: f.clone(),
                        });
                    }
                }
                next
            }
            Err(why) if !accept_loss => return Err(damaged(0, FILE_HEADER, format!("bad header: {why}"))),
            Err(why) => {
                // Nothing of the log can be trusted: keep the whole file aside and start afresh.
                report.kept_aside = Some(keep_aside(path, &bytes).map_err(io_err("keep aside"))?);
                report.dropped_bytes = bytes.len() as u64;
                report.dropped_reason = Some(format!("bad header: {why}"));
                let log = Self::create(path, identity).map_err(io_err("create"))?;
                let incarnation = log.incarnation;
                return Ok((
                    log,
                    Vec::new(),
                    RecoveryReport { created: true, lost_records: true, incarnation, ..report },
                ));
            }
        };
        let mut changes = Vec::new();
        let mut net = NetFold::default();
        while pos < bytes.len() {
            let record = report.records + 1;
            let bad = match read_record(&bytes, pos) {
                Ok((payload, next)) => match decode_record(payload) {
                    Ok((mut c, n)) => {
                        report.records += 1;
                        report.changes += c.len();
                        changes.append(&mut c);
                        if let Some(n) = n {
                            net.add(n);
                        }
                        pos = next;
                        continue;
                    }
                    Err(e) => Bad::Damaged(e),
                },
                Err(bad) => bad,
            };
            let reason = match bad {
                Bad::Torn(why) => why,
                Bad::Damaged(why) if !accept_loss => return Err(damaged(record, pos, why)),
                Bad::Damaged(why) => {
                    report.lost_records = true;
                    why
                }
            };
            // Keep everything from the bad record on aside, then cut the log back to its good prefix.
            let aside = keep_aside(path, &bytes[pos..]).map_err(io_err("keep aside"))?;
            let file = OpenOptions::new().write(true).open(path).map_err(io_err("open"))?;
            file.set_len(pos as u64).and_then(|_| file.sync_all()).map_err(io_err("cut back"))?;
            eprintln!(
                "compart: durability log {}: record {record} at byte offset {pos}: {reason}; kept {} byte(s) from \
                 there in {} and recovered the {} record(s) before it",
                path.display(),
                bytes.len() - pos,
                aside.display(),
                report.records
            );
            report.dropped_bytes = (bytes.len() - pos) as u64;
            report.dropped_reason = Some(reason);
            report.kept_aside = Some(aside);
            break;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io_err("open"))?;
        file.seek(SeekFrom::Start(pos as u64)).map_err(io_err("seek in"))?;
        report.net = net.finish();
        let log = DurableLog {
            file,
            path: path.to_path_buf(),
            len: pos as u64,
            identity: identity.clone(),
            incarnation: report.incarnation,
            sync: true,
        };
        Ok((log, changes, report))
    }

    /// Writes a new log holding only its header, whole or not at all: a temporary file, fsync'd,
    /// renamed into place (so an empty or headerless log is never compart's own doing).
    fn create(path: &Path, identity: &LogIdentity) -> io::Result<DurableLog> {
        let incarnation = crate::net::fresh_incarnation();
        let len = Self::write_whole(path, identity, incarnation, None)?;
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        file.seek(SeekFrom::Start(len))?;
        Ok(DurableLog { file, path: path.to_path_buf(), len, identity: identity.clone(), incarnation, sync: true })
    }

    /// Writes a log of the header and (optionally) one record, whole or not at all: a temporary
    /// file, fsync'd, renamed over `path`. Returns its length.
    fn write_whole(path: &Path, identity: &LogIdentity, incarnation: u64, record: Option<&[u8]>) -> io::Result<u64> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "log".into());
        let tmp = path.with_file_name(format!("{name}.tmp"));
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&frame(&encode_header(identity, incarnation)));
        if let Some(r) = record {
            bytes.extend_from_slice(r);
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok(bytes.len() as u64)
    }

    /// The network incarnation the log's header holds.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replaces the log by its header (with `incarnation`) and one record holding `tables` (every
    /// table fact, as insertions) and `net` (every mark, the next sequence numbers, the frames
    /// not acknowledged), atomically (a temporary file renamed over the log), so the log's length
    /// follows the node's state rather than its history.
    pub fn compact(&mut self, tables: &[Change], net: &NetRecord, incarnation: u64) -> io::Result<()> {
        let record = frame(&encode_tick(tables, net));
        let len = Self::write_whole(&self.path, &self.identity, incarnation, Some(&record))?;
        let mut file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        file.seek(SeekFrom::Start(len))?;
        self.file = file;
        self.len = len;
        self.incarnation = incarnation;
        Ok(())
    }

    /// Appends one record of a tick's table changes and what it sent, and (when `sync`) waits
    /// until it is on disk.
    pub fn append_tick(&mut self, changes: &[Change], net: &NetRecord) -> io::Result<()> {
        let payload = encode_tick(changes, net);
        self.write_record(&payload)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record holding `changes` and (when `sync`) waits until it is on disk.
    pub fn append(&mut self, changes: &[Change]) -> io::Result<()> {
        let mut payload = vec![KIND_CHANGES];
        encode_changes(changes, &mut payload);
        self.write_record(&payload)
    }

    fn write_record(&mut self, payload: &[u8]) -> io::Result<()> {
        let record = frame(payload);
        let written = self.file.write_all(&record).and_then(|_| if self.sync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Best effort: drop the partial record so the next one follows intact data.
            let _ = self.file.set_len(self.len).and_then(|_| self.file.seek(SeekFrom::Start(self.len)));
            return Err(e);
        }
        self.len += record.len() as u64;
        Ok(())
    }
}

fn encode_tick(changes: &[Change], net: &NetRecord) -> Vec<u8> {
    let mut out = vec![KIND_TICK, 0, 0, 0, 0];
    encode_changes(changes, &mut out);
    let len = (out.len() - 5) as u32;
    out[1..5].copy_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(net.inbound.len() as u32).to_le_bytes());
    for &(from, inc, seq) in &net.inbound {
        out.extend_from_slice(&from.to_le_bytes());
        out.extend_from_slice(&inc.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out.extend_from_slice(&(net.next_seq.len() as u32).to_le_bytes());
    for &(to, seq) in &net.next_seq {
        out.extend_from_slice(&to.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out.extend_from_slice(&(net.frames.len() as u32).to_le_bytes());
    for (to, f) in &net.frames {
        out.extend_from_slice(&to.to_le_bytes());
        out.extend_from_slice(&f.seq.to_le_bytes());
        out.extend_from_slice(&f.msgs.to_le_bytes());
        out.extend_from_slice(&(f.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&f.bytes);
    }
    out
}

/// A record's table changes, and its network part for a tick record.
fn decode_record(payload: &[u8]) -> Result<(Vec<Change>, Option<NetRecord>), String> {
    let undecodable = |e: String| format!("undecodable record: {e}");
    match payload.split_first() {
        Some((&KIND_CHANGES, body)) => Ok((decode_changes(body).map_err(undecodable)?, None)),
        Some((&KIND_TICK, body)) => decode_tick(body).map(|(c, n)| (c, Some(n))).map_err(undecodable),
        _ => Err("unknown record kind".into()),
    }
}

fn decode_tick(mut b: &[u8]) -> Result<(Vec<Change>, NetRecord), String> {
    fn u32_of(b: &mut &[u8]) -> Result<u32, String> {
        Ok(u32::from_le_bytes(take(b, 4)?.try_into().map_err(|_| "short")?))
    }
    fn u64_of(b: &mut &[u8]) -> Result<u64, String> {
        Ok(u64::from_le_bytes(take(b, 8)?.try_into().map_err(|_| "short")?))
    }
    let len = u32_of(&mut b)? as usize;
    let changes = decode_changes(take(&mut b, len)?)?;
    let mut net = NetRecord::default();
    for _ in 0..u32_of(&mut b)? {
        net.inbound.push((u32_of(&mut b)?, u64_of(&mut b)?, u64_of(&mut b)?));
    }
    for _ in 0..u32_of(&mut b)? {
        net.next_seq.push((u32_of(&mut b)?, u64_of(&mut b)?));
    }
    for _ in 0..u32_of(&mut b)? {
        let (to, seq, msgs) = (u32_of(&mut b)?, u64_of(&mut b)?, u64_of(&mut b)?);
        let len = u32_of(&mut b)? as usize;
        let bytes = bytes::Bytes::copy_from_slice(take(&mut b, len)?);
        net.frames.push((to, OutFrame { seq, bytes, msgs }));
    }
    if !b.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok((changes, net))
}

/// The network state of a log, record by record.
#[derive(Default)]
struct NetFold {
    inbound: std::collections::BTreeMap<u32, (u64, u64)>,
    outbox: std::collections::BTreeMap<u32, (u64, Vec<OutFrame>)>,
}

impl NetFold {
    fn add(&mut self, net: NetRecord) {
        for (from, inc, seq) in net.inbound {
            self.inbound.insert(from, (inc, seq));
        }
        for (to, next) in net.next_seq {
            let e = self.outbox.entry(to).or_insert((1, Vec::new()));
            e.0 = e.0.max(next);
        }
        for (to, f) in net.frames {
            let e = self.outbox.entry(to).or_insert((1, Vec::new()));
            e.0 = e.0.max(f.seq + 1);
            e.1.push(f);
        }
    }

    fn finish(self) -> Resume {
        Resume {
            inbound: self.inbound.into_iter().map(|(from, (inc, seq))| (from, inc, seq)).collect(),
            outbox: self.outbox.into_iter().map(|(to, (next, frames))| (to, next, frames)).collect(),
        }
    }
}

fn encode_changes(changes: &[Change], out: &mut Vec<u8>) {
    for c in changes {
        let (op, rel, tuple) = match c {
            Change::Insert(r, t) => (0u8, r, t),
            Change::Delete(r, t) => (1u8, r, t),
        };
        out.push(op);
        out.extend_from_slice(&rel.0.to_le_bytes());
        out.extend_from_slice(&(tuple.len() as u16).to_le_bytes());
        for v in tuple {
            match v {
                Value::Int(i) => {
                    out.push(0);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Value::Str(s) => {
                    out.push(1);
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                Value::Bool(b) => out.extend_from_slice(&[2, *b as u8]),
                Value::Addr(a) => {
                    out.push(3);
                    out.extend_from_slice(&a.0.to_le_bytes());
                }
            }
        }
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err("record ends inside a value".into());
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn decode_changes(mut b: &[u8]) -> Result<Vec<Change>, String> {
    fn u32_of(b: &mut &[u8]) -> Result<u32, String> {
        Ok(u32::from_le_bytes(take(b, 4)?.try_into().map_err(|_| "short")?))
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let op = take(&mut b, 1)?[0];
        let rel = RelationId(u32_of(&mut b)?);
        let n = u16::from_le_bytes(take(&mut b, 2)?.try_into().map_err(|_| "short")?);
        let mut tuple = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let tag = take(&mut b, 1)?[0];
            tuple.push(match tag {
                0 => Value::Int(i64::from_le_bytes(take(&mut b, 8)?.try_into().map_err(|_| "short")?)),
                1 => {
                    let len = u32_of(&mut b)? as usize;
                    let s = std::str::from_utf8(take(&mut b, len)?).map_err(|_| "invalid UTF-8")?;
                    Value::Str(Arc::from(s))
                }
                2 => Value::Bool(take(&mut b, 1)?[0] != 0),
                3 => Value::Addr(NodeAddr(u32_of(&mut b)?)),
                t => return Err(format!("unknown value tag {t}")),
            });
        }
        out.push(match op {
            0 => Change::Insert(rel, tuple),
            1 => Change::Delete(rel, tuple),
            o => return Err(format!("unknown change kind {o}")),
        });
    }
    Ok(out)
}

/// CRC-32 (IEEE), bitwise table built once.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests;
