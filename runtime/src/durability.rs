//! Durable tables: an append-only log of table changes, one record per tick, fsync'd before the
//! tick's messages leave the node; on restart the node's tables are rebuilt from it.
//!
//! File format: a sequence of records `[len: u32 LE][crc32: u32 LE][payload: len bytes]`. A
//! payload is a sequence of changes `[op: u8 (0 insert, 1 delete)][relation: u32][n: u16][values]`,
//! each value `[tag: u8][...]`: 0 int (i64 LE), 1 string (u32 length + UTF-8), 2 bool (u8), 3 addr
//! (u32). Values are stored as values, not as interned ids, so a log outlives its process. A
//! truncated or corrupt tail (torn write during a crash) is detected by the length or checksum,
//! reported, and cut off so that new records follow the last good one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compart_analysis::model::RelationId;

use crate::value::{NodeAddr, Tuple, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Insert(RelationId, Tuple),
    Delete(RelationId, Tuple),
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub records: usize,
    pub changes: usize,
    /// Bytes cut from the end of the file (a torn or corrupt tail), with the reason.
    pub dropped_bytes: u64,
    pub dropped_reason: Option<String>,
}

pub struct DurableLog {
    file: File,
    path: PathBuf,
    /// fsync after each record (off only for tests and benchmarks of the log itself).
    pub sync: bool,
}

const MAX_RECORD: u32 = 1 << 30;

impl DurableLog {
    /// Opens (or creates) the log at `path`, reads every intact record, truncates a damaged tail
    /// and positions for appending.
    pub fn open(path: &Path) -> io::Result<(DurableLog, Vec<Change>, RecoveryReport)> {
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut report = RecoveryReport::default();
        let mut changes = Vec::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let fail = |why: &str| Some(why.to_string());
            let problem = if bytes.len() - pos < 8 {
                fail("truncated record header")
            } else {
                let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or([0; 4]));
                let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or([0; 4]));
                if len > MAX_RECORD || bytes.len() - pos - 8 < len as usize {
                    fail("truncated record")
                } else {
                    let payload = &bytes[pos + 8..pos + 8 + len as usize];
                    if crc32(payload) != crc {
                        fail("checksum mismatch")
                    } else {
                        match decode_changes(payload) {
                            Ok(mut c) => {
                                report.records += 1;
                                report.changes += c.len();
                                changes.append(&mut c);
                                pos += 8 + len as usize;
                                None
                            }
                            Err(e) => Some(format!("undecodable record: {e}")),
                        }
                    }
                }
            };
            if let Some(reason) = problem {
                report.dropped_bytes = (bytes.len() - pos) as u64;
                eprintln!(
                    "compart: durability log {}: dropping {} byte(s) at offset {pos}: {reason}",
                    path.display(),
                    report.dropped_bytes
                );
                report.dropped_reason = Some(reason);
                file.set_len(pos as u64)?;
                file.sync_all()?;
                break;
            }
        }
        file.seek(SeekFrom::Start(pos as u64))?;
        Ok((DurableLog { file, path: path.to_path_buf(), sync: true }, changes, report))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record holding `changes` and (when `sync`) waits until it is on disk.
    pub fn append(&mut self, changes: &[Change]) -> io::Result<()> {
        let payload = encode_changes(changes);
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.file.write_all(&record)?;
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

fn encode_changes(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
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
    out
}

fn decode_changes(mut b: &[u8]) -> Result<Vec<Change>, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("record ends inside a value".into());
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
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
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("compart-dur-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn crc_matches_reference() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn round_trip_and_truncated_tail() {
        let path = tmp("trunc");
        let r = RelationId(3);
        {
            let (mut log, changes, report) = DurableLog::open(&path).unwrap();
            assert!(changes.is_empty() && report.records == 0);
            log.append(&[Change::Insert(
                r,
                vec![Value::Int(-5), Value::str("a\"b"), Value::Bool(true), Value::Addr(NodeAddr(2))],
            )])
            .unwrap();
            log.append(&[Change::Delete(r, vec![Value::Int(1)]), Change::Insert(r, vec![Value::Int(2)])]).unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        // Every truncation point: recovery keeps exactly the complete records before it.
        for cut in 0..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (_, changes, report) = DurableLog::open(&path).unwrap();
            let first = 8 + encode_changes(&[Change::Insert(
                r,
                vec![Value::Int(-5), Value::str("a\"b"), Value::Bool(true), Value::Addr(NodeAddr(2))],
            )])
            .len();
            let expect = if cut < first { 0 } else { 1 };
            assert_eq!(report.records, expect, "cut at {cut}");
            assert_eq!(report.dropped_bytes as usize, cut - if expect == 1 { first } else { 0 });
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, cut - report.dropped_bytes as usize);
            assert_eq!(changes.len(), expect);
        }
        std::fs::write(&path, &full).unwrap();
        let (mut log, changes, report) = DurableLog::open(&path).unwrap();
        assert_eq!((report.records, changes.len(), report.dropped_bytes), (2, 3, 0));
        // Appending after recovery continues the log.
        log.append(&[Change::Insert(r, vec![Value::Int(9)])]).unwrap();
        drop(log);
        let (_, changes, _) = DurableLog::open(&path).unwrap();
        assert_eq!(changes.last(), Some(&Change::Insert(r, vec![Value::Int(9)])));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn corrupt_byte_is_detected() {
        let path = tmp("corrupt");
        {
            let (mut log, _, _) = DurableLog::open(&path).unwrap();
            log.append(&[Change::Insert(RelationId(0), vec![Value::Int(1)])]).unwrap();
            log.append(&[Change::Insert(RelationId(0), vec![Value::Int(2)])]).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, changes, report) = DurableLog::open(&path).unwrap();
        assert_eq!(changes, vec![Change::Insert(RelationId(0), vec![Value::Int(1)])]);
        assert_eq!(report.dropped_reason.as_deref(), Some("checksum mismatch"));
        let _ = std::fs::remove_file(&path);
    }
}
