//! Batching (`rewrite::batch`): the rewritten Paxos and a minimal sequencer, and each refusal
//! with the line it points at.

mod common;
use common::{example, line};
use compart_analysis::{analyze, rewrite};

fn batch(text: &str, component: &str, size: usize) -> String {
    batch_delivered(text, component, size, rewrite::Delivery::Every)
}

fn batch_delivered(text: &str, component: &str, size: usize, delivery: rewrite::Delivery) -> String {
    let analysis = analyze(text);
    match rewrite::batch(&analysis, component, size, delivery) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

/// A sequencer: each tick's requests get consecutive log positions, by rank of their id.
const SEQUENCER: &str = "component server {
    input req(id: int, payload: string) key(id)
    output resp(id: int, slot: int, payload: string)
    table next(n: int) key()
    table log(slot: int, id: int, payload: string) key(slot)
    next(0).
    order(id, rank(id)) :- req(id, _).
    many(count(id)) :- req(id, _).
    entry(s, id, p) :- req(id, p), order(id, i), next(n), s = n + i - 1.
    log(s, id, p) :- entry(s, id, p).
    resp(id, s, p) :- entry(s, id, p).
    next(n + k) :+ next(n), many(k).
    delete next(n) :- next(n), many(_).
}
";

fn sequencer_with(extra: &str) -> String {
    SEQUENCER.replace("    next(0).\n", &format!("    next(0).\n    {extra}\n"))
}

#[test]
fn paxos_batch_proposer() {
    insta::assert_snapshot!(batch(&example("paxos.ded"), "proposer", 8));
}

/// Mencius' clients send each request to one leader (`send_to = "round-robin"`): each batch
/// goes to one leader too, chosen by batch id. Sent to every leader, each would propose it.
#[test]
fn batches_reach_one_node_when_requests_did() {
    let out = batch_delivered(&example("mencius.ded"), "leader", 8, rewrite::Delivery::One);
    let text = out.split("\n---\n").nth(1).expect(&out);
    let send = text.split("request_batch@p").nth(1).expect(text);
    let send = &send[..send.find('.').unwrap()];
    for part in ["batch_target_rank(p, r)", "batch_targets(m)", "r = batch % m + 1"] {
        assert!(send.contains(part), "{part} not in {send}");
    }
    assert!(!text.contains("nodes(\"leader\", p).\n"), "{text}");
    let rewritten = analyze(text);
    assert!(!rewritten.has_errors(), "{:?}", rewritten.diagnostics);
    insta::assert_snapshot!(out);
    // The same program with requests delivered to every leader keeps the broadcast.
    let every = batch(&example("mencius.ded"), "leader", 8);
    assert!(every.contains(", nodes(\"leader\", p).\n"), "{every}");
}

#[test]
fn sequencer_batches() {
    insta::assert_snapshot!(batch(SEQUENCER, "server", 4));
}

#[test]
fn rewritten_sequencer_analyses_and_sends_batches() {
    // The batched program analyses, and the server now receives one request per batch.
    let out = batch(SEQUENCER, "server", 4);
    let text = out.split("\n---\n").nth(1).unwrap();
    let analysis = analyze(text);
    assert!(!analysis.has_errors());
    assert!(text.contains("channel req_batch(id: int, payload: string)"));
    assert!(text.contains("component server_batcher partitioned by req.id"));
    assert!(
        text.contains("resp(q0, d1 * 4 + pos - 1, q1) :- resp_batch(batch, d1, _), batch_held(batch, pos, q0, q1).")
    );
}

#[test]
fn refusals() {
    let cases: Vec<(&str, String, &str, usize)> = vec![
        ("acceptor has no requests", example("paxos.ded"), "acceptor", 8),
        ("kvs reads compare request ids", example("kvs.ded"), "leader", 8),
        ("2pc joins the op with refusals", example("two_phase_commit.ded"), "coordinator", 8),
        ("unknown component", SEQUENCER.to_string(), "nope", 8),
        ("batch of one", SEQUENCER.to_string(), "server", 1),
        ("no key", SEQUENCER.replace(") key(id)", ")"), "server", 4),
        ("partitioned", SEQUENCER.replace("component server {", "component server partitioned by id {"), "server", 4),
        ("payload in a condition", sequencer_with("urgent(id) :- req(id, p), p == \"now\"."), "server", 4),
        ("payload as a constant", sequencer_with("urgent(id) :- req(id, \"now\")."), "server", 4),
        ("max of ids", sequencer_with("top(max(id)) :- req(id, _)."), "server", 4),
        ("id computed with", sequencer_with("half(h) :- req(id, _), h = id / 2."), "server", 4),
        (
            "payload joined with a table",
            sequencer_with("table known(p: string)\n    known(\"x\").\n    vip(id) :- req(id, p), known(p)."),
            "server",
            4,
        ),
        ("payload absent elsewhere", sequencer_with("fresh(id) :- req(id, p), !log(_, _, p)."), "server", 4),
        (
            "output column that is no position",
            SEQUENCER.replace("resp(id, s, p) :- entry(s, id, p).", "resp(id, n, p) :- entry(_, id, p), next(n)."),
            "server",
            4,
        ),
        (
            "output next tick",
            SEQUENCER.replace("resp(id, s, p) :- entry(s, id, p).", "resp(id, s, p) :+ entry(s, id, p)."),
            "server",
            4,
        ),
    ];
    let mut out = String::new();
    for (what, text, component, size) in cases {
        out.push_str(&format!("{what}: {}\n", batch(&text, component, size)));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn bad_input_never_panics() {
    for text in ["", "component", "component c { input r(id: int) key(id) output o(id: int) o(i) :- r(i). }"] {
        let _ = batch(text, "c", 4);
    }
}
