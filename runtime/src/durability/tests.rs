use super::*;

/// A fresh directory per test (tests run in parallel).
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("compart-dur-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn me() -> LogIdentity {
    LogIdentity { program: program_hash("component c {}"), component: "c".into(), node: "c/0".into() }
}

fn ins(i: i64) -> Change {
    Change::Insert(RelationId(3), vec![Value::Int(i), Value::str(&format!("s{i}"))])
}

/// A log of `n` records, record `i` (1-based) inserting `i`; returns its bytes.
fn write_log(path: &Path, n: i64) -> Vec<u8> {
    let (mut log, changes, report) = DurableLog::open(path, &me(), false).unwrap();
    assert!(changes.is_empty() && report.created);
    for i in 1..=n {
        log.append(&[ins(i)]).unwrap();
    }
    std::fs::read(path).unwrap()
}

/// Byte offset of record `k` (the header is record 0, record `i` inserts `i`).
fn offset_of(bytes: &[u8], k: usize) -> usize {
    let mut pos = FILE_HEADER;
    for _ in 0..k {
        pos = read_record(bytes, pos).ok().unwrap().1;
    }
    pos
}

fn asides(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect();
    v.sort();
    v
}

#[test]
fn crc_matches_reference() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

#[test]
fn round_trip_and_appending_after_recovery() {
    let d = dir("round");
    let path = d.join("n.log");
    let tuple = vec![Value::Int(-5), Value::str("a\"b"), Value::Bool(true), Value::Addr(NodeAddr(2))];
    {
        let (mut log, _, _) = DurableLog::open(&path, &me(), false).unwrap();
        log.append(&[Change::Insert(RelationId(3), tuple.clone())]).unwrap();
        log.append(&[Change::Delete(RelationId(3), vec![Value::Int(1)]), ins(2)]).unwrap();
    }
    let (mut log, changes, report) = DurableLog::open(&path, &me(), false).unwrap();
    assert_eq!((report.records, report.changes, report.dropped_bytes, report.created), (2, 3, 0, false));
    assert_eq!(changes[0], Change::Insert(RelationId(3), tuple));
    log.append(&[ins(9)]).unwrap();
    drop(log);
    let (_, changes, _) = DurableLog::open(&path, &me(), false).unwrap();
    assert_eq!(changes.last(), Some(&ins(9)));
    assert!(asides(&d).is_empty());
}

/// A crash while the last record was being written: every cut inside it is recovered without
/// being asked, the cut-off bytes kept aside; the log plus the aside file is the original.
#[test]
fn a_cut_short_last_record_is_set_aside_and_recovery_goes_on() {
    let d = dir("torn");
    let path = d.join("n.log");
    let full = write_log(&path, 3);
    let last = offset_of(&full, 3);
    for cut in last + 1..full.len() {
        for a in asides(&d) {
            std::fs::remove_file(a).unwrap();
        }
        std::fs::write(&path, &full[..cut]).unwrap();
        let (_, changes, report) = DurableLog::open(&path, &me(), false).unwrap();
        assert_eq!(changes, vec![ins(1), ins(2)], "cut at {cut}");
        assert_eq!(report.dropped_bytes as usize, cut - last);
        let aside = report.kept_aside.unwrap();
        assert_eq!(asides(&d), vec![aside.clone()]);
        let mut rejoined = std::fs::read(&path).unwrap();
        rejoined.extend(std::fs::read(&aside).unwrap());
        assert_eq!(rejoined, &full[..cut]);
    }
}

/// One flipped bit in the middle of a log: refused, with the record and offset, the file left
/// byte for byte; with the loss accepted, the records before it recovered and the rest kept aside.
#[test]
fn mid_file_damage_is_refused_and_the_file_kept_unless_the_loss_is_accepted() {
    let d = dir("flip");
    let path = d.join("n.log");
    let full = write_log(&path, 100);
    for (what, byte) in [("payload", offset_of(&full, 50) + RECORD_HEADER + 3), ("length", offset_of(&full, 50) + 1)] {
        for a in asides(&d) {
            std::fs::remove_file(a).unwrap();
        }
        let mut bad = full.clone();
        bad[byte] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let Err(err) = DurableLog::open(&path, &me(), false) else { panic!("{what}: damaged log accepted") };
        let LogError::Damaged { record, offset, intact_after, .. } = &err else { panic!("{what}: {err}") };
        assert_eq!((*record, *offset as usize, *intact_after), (50, offset_of(&full, 50), 50), "{what}");
        let msg = err.to_string();
        assert!(msg.contains("n.log") && msg.contains("record 50") && msg.contains("--accept-log-loss"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), bad, "{what}: the refused file is untouched");
        assert!(asides(&d).is_empty());

        let (mut log, changes, report) = DurableLog::open(&path, &me(), true).unwrap();
        assert_eq!(changes, (1..50).map(ins).collect::<Vec<_>>(), "{what}");
        assert_eq!(report.records, 49);
        let aside = report.kept_aside.clone().unwrap();
        let mut rejoined = std::fs::read(&path).unwrap();
        rejoined.extend(std::fs::read(&aside).unwrap());
        assert_eq!(rejoined, bad, "{what}: nothing is lost: log + aside = the damaged file");
        log.append(&[ins(1000)]).unwrap();
        drop(log);
        let (_, changes, report) = DurableLog::open(&path, &me(), false).unwrap();
        assert_eq!((changes.len(), changes.last()), (50, Some(&ins(1000))));
        assert!(report.kept_aside.is_none());
    }
}

#[test]
fn a_damaged_last_record_of_full_length_is_damage_not_a_torn_write() {
    let d = dir("lastflip");
    let path = d.join("n.log");
    let mut bytes = write_log(&path, 2);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = DurableLog::open(&path, &me(), false).err().unwrap();
    assert!(matches!(err, LogError::Damaged { record: 2, intact_after: 0, .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn an_empty_file_is_refused_unless_the_loss_is_accepted() {
    let d = dir("empty");
    let path = d.join("n.log");
    std::fs::write(&path, b"").unwrap();
    let err = DurableLog::open(&path, &me(), false).err().unwrap();
    assert!(matches!(err, LogError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("is empty"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let (_, changes, report) = DurableLog::open(&path, &me(), true).unwrap();
    assert!(changes.is_empty() && report.created && report.kept_aside.is_some());
    assert_eq!(asides(&d).len(), 1);
    let (_, _, report) = DurableLog::open(&path, &me(), false).unwrap();
    assert!(!report.created, "a fresh log with its header was written");
}

#[test]
fn foreign_files_and_other_versions_are_refused_and_never_touched() {
    let d = dir("foreign");
    let path = d.join("n.log");
    // Plain text, a format-1 log (no magic: records straight away), a short file, another version.
    let mut v1 = vec![9, 0, 0, 0];
    v1.extend_from_slice(&crc32(b"xxxxxxxxx").to_le_bytes());
    v1.extend_from_slice(b"xxxxxxxxx");
    let mut v2 = MAGIC.to_vec();
    v2.extend_from_slice(&2u32.to_le_bytes());
    for content in [b"hello, world\n".to_vec(), v1, b"\x89comp".to_vec(), v2] {
        std::fs::write(&path, &content).unwrap();
        for accept in [false, true] {
            let err = DurableLog::open(&path, &me(), accept).err().unwrap();
            assert!(matches!(err, LogError::Foreign { .. } | LogError::Version { found: 2, .. }), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), content);
        }
    }
    assert!(asides(&d).is_empty());
}

#[test]
fn a_log_of_another_node_component_or_program_is_refused() {
    let d = dir("identity");
    let path = d.join("n.log");
    let full = write_log(&path, 3);
    let others = [
        ("node", LogIdentity { node: "c/1".into(), ..me() }),
        ("component", LogIdentity { component: "d".into(), ..me() }),
        ("program", LogIdentity { program: program_hash("component c { table t(x: int) }"), ..me() }),
    ];
    for (field, id) in others {
        for accept in [false, true] {
            let err = DurableLog::open(&path, &id, accept).err().unwrap();
            assert!(matches!(&err, LogError::Mismatch { field: f, .. } if *f == field), "{err}");
            assert!(err.to_string().contains(&format!("belongs to {field}")), "{err}");
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), full);
}

#[test]
fn a_damaged_header_is_refused() {
    let d = dir("header");
    let path = d.join("n.log");
    let mut bytes = write_log(&path, 2);
    bytes[FILE_HEADER + RECORD_HEADER + 2] ^= 4;
    std::fs::write(&path, &bytes).unwrap();
    let err = DurableLog::open(&path, &me(), false).err().unwrap();
    assert!(matches!(err, LogError::Damaged { record: 0, intact_after: 2, .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let (_, changes, report) = DurableLog::open(&path, &me(), true).unwrap();
    assert!(changes.is_empty() && report.created);
    assert_eq!(std::fs::read(report.kept_aside.unwrap()).unwrap(), bytes);
}

#[test]
fn node_names_never_share_a_file() {
    let d = Path::new("/logs");
    let names = ["kv/0.1", "kv_0/1", "kv/0_1", "kv/01", "kv/0%2E1", "KV/0.1", "kv.0/1", "a/b", "a_b", "a.b", "a%2Fb"];
    let paths: std::collections::HashSet<String> =
        names.iter().map(|n| log_path(d, n).to_string_lossy().to_lowercase()).collect();
    assert_eq!(paths.len(), names.len(), "{paths:?}");
    for n in names {
        let p = log_path(d, n);
        assert_eq!(p.parent(), Some(d), "{n} stays in the directory");
    }
    assert_eq!(log_path(d, "acceptor/1"), d.join("acceptor%2F1.log"));
}

/// A leader that numbers requests from a durable counter (as Paxos's `next_slot`): damage in the
/// middle of its log must not let it restart and hand out numbers it already used. By default it
/// does not restart at all; only an explicit acceptance of the loss goes back to the prefix.
#[test]
fn a_damaged_leader_log_never_resumes_with_used_sequence_numbers_by_default() {
    use crate::deploy::Deployment;
    use crate::engine::{CompiledProgram, Node};
    let src = "component leader {
        input request(id: int)
        output assigned(id: int, seq: int)
        table next_seq(n: int) key()
        next_seq(0).
        assigned(id, n) :- request(id), next_seq(n).
        next_seq(n + 1) :+ request(_), next_seq(n).
        delete next_seq(n) :- request(_), next_seq(n).
    }";
    let analysis = compart_analysis::analyze(src);
    let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
    let request = analysis.program.relation_by_name("request").unwrap();
    let deployment = Arc::new(Deployment::local(&analysis.program, &[]));
    let hash = program_hash(src);
    let d = dir("leader");
    let path = log_path(&d, &deployment.nodes[0].name);
    let open = |accept| Node::open_durable(program.clone(), NodeAddr(0), deployment.clone(), &path, &hash, accept);
    let mut used = Vec::new();
    {
        let (mut leader, _) = open(false).unwrap();
        for id in 0..40 {
            let out = leader.tick(vec![(request, vec![Value::Int(id)])]);
            used.extend(out.outputs.iter().map(|(_, t)| t[1].as_int().unwrap()));
        }
    }
    assert_eq!(used, (0..40).collect::<Vec<_>>());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = offset_of(&bytes, 20) + RECORD_HEADER + 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let err = open(false).err().expect("the damaged log must be refused");
    assert!(matches!(err, LogError::Damaged { record: 20, .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
    // Still refused on every later attempt: nothing was cut.
    assert!(open(false).is_err());

    // What accepting the loss means: the counter goes back to the prefix's value.
    let (mut leader, report) = open(true).unwrap();
    assert!(report.kept_aside.is_some());
    let out = leader.tick(vec![(request, vec![Value::Int(100)])]);
    let seq = out.outputs[0].1[1].as_int().unwrap();
    assert!(used.contains(&seq), "with the loss accepted, {seq} is handed out again");
}

fn out_frame(seq: u64, text: &str) -> OutFrame {
    OutFrame { seq, bytes: bytes::Bytes::copy_from_slice(text.as_bytes()), msgs: 1 }
}

/// A tick's record holds what it sent and the inputs it processed; reopening gives them back
/// with the incarnation of the header, which stays the node's across restarts.
#[test]
fn tick_records_keep_sends_marks_and_the_incarnation() {
    let d = dir("tick-net");
    let path = d.join("n.log");
    let (mut log, _, report) = DurableLog::open(&path, &me(), false).unwrap();
    let incarnation = report.incarnation;
    assert_eq!(log.incarnation(), incarnation);
    let first = NetRecord {
        inbound: vec![(7, 70, 3), (9, 90, 1)],
        next_seq: Vec::new(),
        frames: vec![(1, out_frame(1, "a")), (2, out_frame(1, "b")), (1, out_frame(2, "c"))],
    };
    log.append_tick(&[ins(1)], &first).unwrap();
    let second = NetRecord { inbound: vec![(7, 70, 5)], next_seq: Vec::new(), frames: vec![(1, out_frame(3, "d"))] };
    log.append_tick(&[], &second).unwrap();
    drop(log);
    let (_, changes, report) = DurableLog::open(&path, &me(), false).unwrap();
    assert_eq!(changes, vec![ins(1)]);
    assert_eq!(report.incarnation, incarnation, "the incarnation survives a restart");
    assert_eq!(report.net.inbound, vec![(7, 70, 5), (9, 90, 1)]);
    assert_eq!(
        report.net.outbox,
        vec![(1, 4, vec![out_frame(1, "a"), out_frame(2, "c"), out_frame(3, "d")]), (2, 2, vec![out_frame(1, "b")])]
    );
    // A torn tick record: that tick never happened (nothing of it was sent).
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let (_, _, report) = DurableLog::open(&path, &me(), false).unwrap();
    assert_eq!(report.net.inbound, vec![(7, 70, 3), (9, 90, 1)]);
    assert_eq!(report.net.outbox[0], (1, 3, vec![out_frame(1, "a"), out_frame(2, "c")]));
    assert!(!report.lost_records, "a torn end is not a loss");
}

/// Compaction replaces the history by the state: the tables, every mark, the next sequence
/// numbers (also of destinations whose frames were all acknowledged) and the frames still
/// unacknowledged; appending goes on after it, and the log's length follows the state.
#[test]
fn compaction_keeps_the_state_and_bounds_the_log() {
    let d = dir("compact");
    let path = d.join("n.log");
    let (mut log, _, report) = DurableLog::open(&path, &me(), false).unwrap();
    let incarnation = report.incarnation;
    log.sync = false;
    for i in 1..=1000u64 {
        let net = NetRecord {
            inbound: vec![(7, 70, i)],
            next_seq: Vec::new(),
            frames: vec![(1, out_frame(i, "some payload of a frame"))],
        };
        let Change::Insert(rel, old) = ins(i as i64 - 1) else { unreachable!() };
        log.append_tick(&[ins(i as i64), Change::Delete(rel, old)], &net).unwrap();
    }
    let long = log.len();
    let state = NetRecord {
        inbound: vec![(7, 70, 1000)],
        next_seq: vec![(1, 1001), (2, 5)],
        frames: vec![(1, out_frame(1000, "some payload of a frame"))],
    };
    log.compact(&[ins(1000)], &state, incarnation).unwrap();
    assert!(log.len() < long / 50, "{} of {long} bytes", log.len());
    log.append_tick(&[ins(1001)], &NetRecord { inbound: vec![(7, 70, 1001)], ..NetRecord::default() }).unwrap();
    drop(log);
    let (_, changes, report) = DurableLog::open(&path, &me(), false).unwrap();
    assert_eq!(changes, vec![ins(1000), ins(1001)]);
    assert_eq!(report.incarnation, incarnation);
    assert_eq!(report.net.inbound, vec![(7, 70, 1001)]);
    assert_eq!(
        report.net.outbox,
        vec![(1, 1001, vec![out_frame(1000, "some payload of a frame")]), (2, 5, Vec::new())]
    );
    assert!(asides(&d).is_empty());
}
