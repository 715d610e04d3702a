//! Parse + full analysis of a generated 5,000-line program, and re-analysis after a one-character
//! edit (incremental re-parse + analysis), as the editor does on each keystroke.
//! `cargo bench -p compart-analysis` prints medians and p95s.

use std::time::Duration;

use compart_analysis::{analyze, Analyzer, SyntaxTree, TextRange};

/// A program of `components` components, each a small replicated log (about 50 lines each).
pub fn generate(lines_wanted: usize) -> String {
    let mut text = String::from("// generated benchmark program\n");
    let mut i = 0;
    while text.lines().count() < lines_wanted {
        text.push_str(&format!(
            "component node{i} {{
    input request{i}(id: int, key: int, payload: string) key(id)
    output reply{i}(id: int, slot: int)
    channel ack{i}(from: addr, slot: int, ballot: int)
    table log{i}(slot: int, id: int, payload: string) key(slot)
    table next_slot{i}(slot: int) key()
    table acks{i}(from: addr, slot: int, ballot: int)
    next_slot{i}(0).

    // assign slots in request order
    ranked{i}(id, key, payload) :- request{i}(id, key, payload), !done{i}(id).
    batch{i}(count(id)) :- ranked{i}(id, _, _).
    slotted{i}(s + id % 1000, id, payload) :- ranked{i}(id, _, payload), next_slot{i}(s).
    log{i}(s, id, payload) :- slotted{i}(s, id, payload).
    next_slot{i}(s + n) :+ next_slot{i}(s), batch{i}(n).
    delete next_slot{i}(s) :- next_slot{i}(s), batch{i}(_).
    table done{i}(id: int)
    done{i}(id) :+ log{i}(_, id, _).

    // broadcast and collect acknowledgements
    store{i}@a(self, s, id, payload) :~ slotted{i}(s, id, payload), nodes(\"node{i}\", a).
    acks{i}(from, s, b) :- ack{i}(from, s, b).
    ack_count{i}(s, count(from)) :- acks{i}(from, s, _).
    quorum{i}(n / 2 + 1) :- members{i}(n).
    members{i}(count(a)) :- nodes(\"node{i}\", a).
    committed{i}(s) :- ack_count{i}(s, c), quorum{i}(q), c >= q.
    reply{i}(id, s) :- committed{i}(s), log{i}(s, id, _).
    channel store{i}(from: addr, slot: int, id: int, payload: string)
    ack{i}@from(self, s, 1) :~ store{i}(from, s, _, _).
    stored{i}(s, id, p) :- store{i}(_, s, id, p).
    table archive{i}(slot: int, id: int, payload: string)
    archive{i}(s, id, p) :- stored{i}(s, id, p).
    recent{i}(max(s)) :- archive{i}(s, _, _).
    old{i}(s) :- archive{i}(s, _, _), recent{i}(m), s + 100 < m.
    delete archive{i}(s, id, p) :- archive{i}(s, id, p), old{i}(s).
    hashed{i}(h, id) :- request{i}(id, key, _), h = hash(key) % 16.
    spread{i}(h, count(id)) :- hashed{i}(h, id).
    hot{i}(h) :- spread{i}(h, n), n > 10.
    cold{i}(h) :- hashed{i}(h, _), !hot{i}(h).
    label{i}(id, \"p\" ++ str(h)) :- hashed{i}(h, id), cold{i}(h).
    shown{i}(id, l) :- label{i}(id, l), l != \"\".
    invariant unique_slot{i}(s) :- log{i}(s, a, _), log{i}(s, b, _), a != b.
    total{i}(sum(id)) :- shown{i}(id, _).
    largest{i}(max(t)) :- total{i}(t).
    report{i}(t) :- largest{i}(t), t > 0.
    gauge{i}(t) :- report{i}(t).
    final{i}(t) :- gauge{i}(t), t >= 0.
    sink{i}(t) :- final{i}(t).
    drained{i}(t) :- sink{i}(t).
    reply{i}(t, t) :- drained{i}(t).
}}

"
        ));
        i += 1;
    }
    text
}

/// Thread CPU time: the machine may be shared (CI, parallel builds); wall-clock time would then
/// measure the neighbours. This clock only advances while this thread runs.
#[derive(Clone, Copy)]
struct Instant(Duration);

impl Instant {
    fn now() -> Self {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we pass and reads nothing else.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Instant(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    fn elapsed(self) -> Duration {
        Instant::now().0.saturating_sub(self.0)
    }
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 95 / 100])
}

fn main() {
    // `cargo test --benches` runs benches in test mode: keep that fast.
    let quick = std::env::args().any(|a| a == "--test");
    let runs = if quick { 3 } else { 60 };
    let text = generate(5_000);
    let lines = text.lines().count();
    if let Some(path) = std::env::var_os("COMPART_BENCH_DUMP") {
        std::fs::write(path, &text).expect("write the generated program");
    }
    let clean = analyze(&text);
    assert!(!clean.has_errors(), "the generated program must be valid: {:?}", clean.diagnostics.first());

    let full: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let analysis = analyze(&text);
            std::hint::black_box(&analysis.diagnostics);
            start.elapsed()
        })
        .collect();

    let syntax_once = SyntaxTree::parse(text.clone());
    let mut lower_times = Vec::new();
    let mut check_times = Vec::new();
    for _ in 0..runs {
        let mut diagnostics = Vec::new();
        let start = Instant::now();
        let mut program = compart_analysis::lower::lower(&syntax_once, &mut diagnostics);
        lower_times.push(start.elapsed());
        let start = Instant::now();
        compart_analysis::check::check(&mut program, &mut diagnostics);
        check_times.push(start.elapsed());
    }
    let parse_only: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(SyntaxTree::parse(text.clone()));
            start.elapsed()
        })
        .collect();

    // One-character edits in the middle of the file, each re-parsed incrementally from the last tree.
    let mut syntax = SyntaxTree::parse(text.clone());
    let at = text.find("s + 100 < m").unwrap() + text.len() / 2;
    let at = text[at..].find("s + 100 < m").map(|i| i + at).unwrap_or(at) + "s + 10".len();
    let mut analyzer = Analyzer::default();
    analyzer.analyze(syntax.clone());
    let mut edits = Vec::new();
    let mut reparse = Vec::new();
    for i in 0..runs {
        let digit = if i % 2 == 0 { "1" } else { "0" };
        let start = Instant::now();
        let next = syntax.edit(TextRange::new(at, at + 1), digit);
        let parsed = start.elapsed();
        let analysis = analyzer.analyze(next.clone());
        std::hint::black_box(&analysis.diagnostics);
        edits.push(start.elapsed());
        reparse.push(parsed);
        syntax = next;
    }
    let (full_median, full_p95) = stats(full);
    let (edit_median, edit_p95) = stats(edits);
    let (parse_median, _) = stats(reparse);
    let (fresh_parse_median, _) = stats(parse_only);
    println!("program: {lines} lines, {} rules (times are thread CPU time)", clean.program.rules.len());
    println!("parse + full analysis:               median {full_median:?}  p95 {full_p95:?}");
    println!("  of which parsing from scratch:     median {fresh_parse_median:?}");
    println!("  of which lowering:                 median {:?}", stats(lower_times).0);
    println!("  of which checks:                   median {:?}", stats(check_times).0);
    println!("one-character edit, re-analysis:     median {edit_median:?}  p95 {edit_p95:?}");
    println!("  of which incremental re-parse:     median {parse_median:?}");
}
