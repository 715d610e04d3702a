//! Small programs aimed at one precondition each: the scaling classes and reasons
//! (positive and negative), functional dependencies, and rewrite refusals.

use compart_analysis::{analyze, rewrite, scaling};

fn classes(src: &str) -> String {
    let analysis = analyze(src);
    let errors: Vec<_> =
        analysis.diagnostics.iter().filter(|d| d.severity == compart_analysis::Severity::Error).collect();
    assert!(errors.is_empty(), "fixture has errors: {errors:?}");
    scaling::render(&analysis.program, &scaling::classify(&analysis.program))
}

fn decouple(src: &str, component: &str, rules: &[&str], name: &str) -> String {
    let analysis = analyze(src);
    let selected = rewrite::select_rules(&analysis, component, rules).map_err(|r| r.reason);
    match selected.and_then(|rules| rewrite::decouple(&analysis, component, &rules, name).map_err(|r| r.reason)) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(reason) => format!("refused: {reason}"),
    }
}

fn component_class(src: &str, name: &str) -> String {
    let analysis = analyze(src);
    let report = scaling::classify(&analysis.program);
    let c = report.components.iter().find(|c| c.name == name).unwrap();
    c.verdict.class.label(&analysis.program)
}

#[test]
fn relay_is_parallel() {
    let src = "component relay {\n channel msg(id: int, body: string)\n out@d(id, body) :~ msg(id, body), nodes(\"sink\", d).\n}\ncomponent sink {\n channel out(id: int, body: string)\n}\n";
    assert_eq!(component_class(src, "relay"), "parallel");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn join_on_shared_key_is_partitioned() {
    let src = "component c {\n channel a(k: int, x: int)\n channel b(k: int, y: int)\n table sa(k: int, x: int)\n table sb(k: int, y: int)\n output both(k: int, x: int, y: int)\n sa(k, x) :- a(k, x).\n sb(k, y) :- b(k, y).\n both(k, x, y) :- sa(k, x), sb(k, y).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by k");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn join_on_different_keys_is_sequential() {
    let src = "component c {\n channel a(k: int, x: int)\n table sa(k: int, x: int)\n output pair(k: int, j: int)\n sa(k, x) :- a(k, x).\n pair(k, j) :- sa(k, x), sa(j, k).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn aggregate_grouped_by_key_is_partitioned() {
    let src = "component c {\n channel vote(id: int, voter: addr)\n table log(id: int, voter: addr)\n output tally(id: int, n: int)\n log(id, v) :- vote(id, v).\n tally(id, count(v)) :- log(id, v).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by id");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn rank_over_every_key_is_sequential_and_not_monotone() {
    // Each id is ranked against every other: no key splits it, and a new id renumbers those above it.
    let src =
        "component c {\n channel req(id: int)\n output slot(id: int, i: int)\n slot(id, rank(id)) :- req(id).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    let analysis = analyze(src);
    let report = scaling::classify(&analysis.program);
    let why: Vec<&str> = report.rules[0].nonmonotone.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(why, ["aggregates `rank` over `req`, which may still grow"]);
    insta::assert_snapshot!(classes(src));
}

#[test]
fn rank_within_a_key_is_partitioned_by_it() {
    // Ranked within each client: the group, not the ranked id, places it.
    let src = "component c {\n channel req(client: int, id: int)\n output order(client: int, id: int, i: int)\n order(c, id, rank(id)) :- req(c, id).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by client");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn global_aggregate_is_sequential() {
    let src = "component c {\n channel bid(ballot: int)\n output highest(b: int)\n highest(max(b)) :- bid(b).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn negation_on_key_is_partitioned() {
    let src = "component c {\n channel req(id: int)\n table seen(id: int)\n output first(id: int)\n first(id) :- req(id), !seen(id).\n seen(id) :+ req(id).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by id");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn negation_of_any_key_is_sequential() {
    let src = "component c {\n channel req(id: int)\n table busy(id: int)\n output start(id: int)\n start(id) :- req(id), !busy(_).\n busy(id) :+ req(id).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn keyed_deletion_is_partitioned() {
    let src = "component c {\n channel put(k: int, v: int)\n channel del(k: int)\n table store(k: int, v: int)\n store(k, v) :+ put(k, v).\n delete store(k, v) :- store(k, v), del(k).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by k");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn deletion_by_other_column_broadcasts_it() {
    let src = "component c {\n channel put(k: int, v: int)\n channel drop_value(v: int)\n channel get(k: int)\n table store(k: int, v: int)\n output got(k: int, v: int)\n store(k, v) :+ put(k, v).\n delete store(k, v) :- store(k, v), drop_value(v).\n got(k, v) :- get(k), store(k, v).\n}\n";
    // Valid: `drop_value` is broadcast, each instance deletes its own share.
    assert_eq!(component_class(src, "c"), "partitioned by k");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn declared_key_lets_group_by_determine_partition() {
    let src = "component c {\n channel item(id: int, v: int)\n channel name(id: int, label: string)\n table names(id: int, label: string) key(label)\n output per_label(label: string, n: int)\n names(id, l) :- name(id, l).\n per_label(l, count(v)) :- item(id, v), names(id, l).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by id");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn without_the_key_items_must_be_broadcast() {
    let src = "component c {\n channel item(id: int, v: int)\n channel name(id: int, label: string)\n table names(id: int, label: string)\n output per_label(label: string, n: int)\n names(id, l) :- name(id, l).\n per_label(l, count(v)) :- item(id, v), names(id, l).\n}\n";
    // Grouping by label no longer determines id: partition by label, broadcast every item.
    assert_eq!(component_class(src, "c"), "partitioned by label");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn computed_column_is_a_dependency() {
    let src = "component c {\n channel req(x: int)\n output routed(x: int, bucket: int)\n bucket_of(x, b) :- req(x), b = hash(x) % 8.\n routed(x, b) :- bucket_of(x, b).\n}\n";
    let out = classes(src);
    assert!(out.contains("dependency bucket_of: x determines b"), "{out}");
    assert!(out.contains("dependency routed: x determines bucket"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn static_count_of_nodes_is_replicated() {
    let src = "component c {\n channel ack(id: int, from: addr)\n table acks(id: int, from: addr)\n output done(id: int)\n n(count(a)) :- nodes(\"c\", a).\n acks(id, f) :- ack(id, f).\n got(id, count(f)) :- acks(id, f).\n done(id) :- got(id, k), n(k).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by id");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn growing_broadcast_input_is_replicated() {
    let src = "component c {\n input ban(user: string)\n channel post(id: int, user: string)\n table banned(user: string)\n output accepted(id: int)\n banned(u) :- ban(u).\n accepted(id) :- post(id, u), !banned(u).\n}\n";
    // Better than broadcasting `ban`: posts, bans and `banned` all partition by user.
    assert_eq!(component_class(src, "c"), "partitioned by user");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn deletable_ban_list_partitions_by_user() {
    let src = "component c {\n input ban(user: string)\n input unban(user: string)\n channel post(id: int, user: string)\n table banned(user: string)\n output accepted(id: int)\n banned(u) :- ban(u).\n delete banned(u) :- banned(u), unban(u).\n accepted(id) :- post(id, u), !banned(u).\n}\n";
    assert_eq!(component_class(src, "c"), "partitioned by user");
}

#[test]
fn replicated_relation_with_deletion_is_sequential() {
    // By user, `open` would have to be replicated; by id, `banned`: both are deleted from, so
    // replicas would need a coordinator to agree.
    let src = "component c {\n input ban(user: string)\n input unban(user: string)\n channel post(id: int, user: string)\n channel opened(id: int)\n channel closed(id: int)\n table banned(user: string)\n table open(id: int)\n output accepted(id: int)\n banned(u) :- ban(u).\n delete banned(u) :- banned(u), unban(u).\n open(id) :- opened(id).\n delete open(id) :- open(id), closed(id).\n accepted(id) :- post(id, u), !banned(u), open(id).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn key_moving_recursion_is_sequential() {
    let src = "component c {\n channel start(k: int)\n channel edge(k: int, k2: int)\n table step(k: int, k2: int)\n table reach(k: int)\n step(k, k2) :- edge(k, k2).\n reach(k) :- start(k).\n reach(k2) :+ reach(k), step(k, k2).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn per_fact_recursion_is_parallel() {
    let src = "component c {\n channel start(k: int)\n table reach(k: int)\n reach(k) :- start(k).\n reach(k2) :+ reach(k), k2 = k + 1, k < 10.\n}\n";
    assert_eq!(component_class(src, "c"), "parallel");
}

#[test]
fn singleton_counter_is_sequential() {
    let src = "component c {\n channel req(id: int)\n table next(n: int) key()\n output numbered(id: int, n: int)\n next(0).\n numbered(id, n) :- req(id), next(n).\n total(count(id)) :- req(id).\n next(n + c) :+ next(n), total(c).\n delete next(n) :- next(n), total(_).\n}\n";
    assert_eq!(component_class(src, "c"), "sequential");
    insta::assert_snapshot!(classes(src));
}

#[test]
fn nonmonotone_flows_through_messages() {
    let src = "component a {\n channel req(id: int)\n table done(id: int)\n fresh(id) :- req(id), !done(id).\n done(id) :+ req(id).\n note@d(id) :~ fresh(id), nodes(\"b\", d).\n}\ncomponent b {\n channel note(id: int)\n table notes(id: int)\n notes(id) :- note(id).\n}\n";
    let analysis = analyze(src);
    let report = scaling::classify(&analysis.program);
    let notes = report.relations.iter().find(|r| r.name == "notes").unwrap();
    let cause = notes.nonmonotone.as_ref().expect("fed by a negation upstream");
    assert_eq!(cause.kind, scaling::ReasonKind::Negation);
    // b itself stays parallel: each note is stored on its own.
    assert_eq!(component_class(src, "b"), "parallel");
}

const SPLIT: &str = "component c {\n channel req(id: int, v: int)\n channel vote(id: int, from: addr)\n table votes(id: int, from: addr)\n table log(id: int, v: int)\n output tally(id: int, n: int)\n\n // broadcast part\n ask@p(id, v, self) :~ req(id, v), nodes(\"p\", p).\n log(id, v) :- req(id, v).\n\n // collection part\n votes(id, f) :- vote(id, f).\n tally(id, count(f)) :- votes(id, f).\n}\ncomponent p {\n channel ask(id: int, v: int, from: addr)\n vote@from(id, self) :~ ask(id, _, from).\n}\n";

#[test]
fn decouple_mutually_independent() {
    insta::assert_snapshot!(decouple(SPLIT, "c", &["votes", "tally"], "collector"));
}

#[test]
fn decouple_by_index_matches_by_name() {
    assert_eq!(decouple(SPLIT, "c", &["1"], "bcast"), decouple(SPLIT, "c", &["ask"], "bcast"));
}

#[test]
fn decouple_refuses_dependent_rest() {
    let src = "component c {\n channel req(id: int)\n table seen(id: int)\n output echo(id: int)\n seen(id) :- req(id).\n echo(id) :- seen(id).\n}\n";
    insta::assert_snapshot!(decouple(src, "c", &["seen"], "d"));
}

#[test]
fn decouple_refuses_relation_derived_on_both_sides() {
    let src = "component c {\n channel a(id: int)\n channel b(id: int)\n output both(id: int)\n both(id) :- a(id).\n both(id) :- b(id).\n}\n";
    insta::assert_snapshot!(decouple(src, "c", &["1"], "d"));
}

#[test]
fn decouple_refuses_forwarding_a_table_with_deletions() {
    let src = "component c {\n channel req(id: int)\n channel done(id: int)\n table open(id: int)\n output report(id: int)\n open(id) :- req(id).\n delete open(id) :- open(id), done(id).\n report(id) :- open(id).\n}\n";
    insta::assert_snapshot!(decouple(src, "c", &["report"], "d"));
}

#[test]
fn decouple_monotonic_persists_a_growing_table() {
    // `known` is also read by a rule that stays, so it is forwarded and persisted in `d`; `hit`
    // joins it monotonically with `asked`, which moves along: it fires once both are in.
    let src = "component c {\n channel req(id: int)\n channel ask(id: int)\n table known(id: int)\n table asked(id: int)\n output hit(id: int)\n output total(n: int)\n known(id) :- req(id).\n total(count(id)) :- known(id).\n asked(id) :- ask(id).\n hit(id) :- asked(id), known(id).\n}\n";
    insta::assert_snapshot!(decouple(src, "c", &["hit"], "d"));
}

#[test]
fn decouple_refuses_a_race_between_an_arrival_and_a_forwarded_table() {
    // `ask` holds only in the tick it arrives; `known` may reach `d` after it although `c`
    // knew it when `ask` came: `hit` would be lost.
    let src = "component c {\n channel req(id: int)\n channel ask(id: int)\n table known(id: int)\n output hit(id: int)\n output total(n: int)\n known(id) :- req(id).\n total(count(id)) :- known(id).\n hit(id) :- ask(id), known(id).\n}\n";
    let out = decouple(src, "c", &["hit"], "d");
    assert!(
        out.starts_with("refused") && out.contains("race:") && out.contains("`ask` holds only in the tick it arrives"),
        "{out}"
    );
}

#[test]
fn decouple_refuses_when_both_parts_act_on_the_order_of_one_input() {
    // In the original `early` and `late` always count the same jobs; decoupled, the two counts
    // would follow two different arrival orders of `job`.
    let src = "component f {\n input job(id: int) key(id)\n output early(id: int, n: int)\n output late(id: int, n: int)\n table got(id: int)\n table got2(id: int)\n got(id) :- job(id).\n cnt(count(id)) :- got(id).\n early(id, n) :- job(id), cnt(n).\n got2(id) :- job(id).\n cnt2(count(id)) :- got2(id).\n late(id, n) :- job(id), cnt2(n).\n}\n";
    let out = decouple(src, "f", &["got2", "cnt2", "late"], "d");
    assert!(out.starts_with("refused") && out.contains("both parts act on the order in which `job` arrives"), "{out}");
    // Only one part depends on the order: a delay the original allows.
    let one = src
        .replace(" cnt(count(id)) :- got(id).\n", "")
        .replace("early(id, n) :- job(id), cnt(n).", "early(id, 0) :- job(id).");
    let out = decouple(&one, "f", &["got2", "cnt2", "late"], "d");
    assert!(!out.starts_with("refused"), "{out}");
}

#[test]
fn decouple_carries_a_table_derived_from_the_same_input_along() {
    // The SIGMOD'24-style optimizer finding: the answer must cover the job's own priority.
    // `seen` is read only by the moved rules and derived from `job` alone, so it moves along and
    // is derived in the new component from the same forwarded `job` message.
    let src = "component f {\n input job(id: int, prio: int) key(id)\n output prio_ok(id: int, top: int)\n table seen(p: int)\n seen(p) :- job(_, p).\n top(max(p)) :- seen(p).\n prio_ok(id, m) :- job(id, _), top(m).\n work@w(id, p) :~ job(id, p), nodes(\"w\", w).\n}\ncomponent w {\n channel work(id: int, p: int)\n output done(id: int)\n done(id) :- work(id, _).\n}\n";
    let out = decouple(src, "f", &["top", "prio_ok"], "answer");
    assert!(out.contains("seen(p) :- job_answer(_, p)."), "{out}");
    assert!(!out.contains("seen_answer"), "seen is not forwarded separately:\n{out}");
    // Read by a rule that stays, `seen` must be forwarded: that is the race, refused.
    let shared = src.replace("work@w(id, p) :~ job(id, p)", "work@w(id, p) :~ job(id, p), seen(p)");
    let out = decouple(&shared, "f", &["top", "prio_ok"], "answer");
    assert!(out.starts_with("refused") && out.contains("race:") && out.contains("`job` and `seen`"), "{out}");
}

#[test]
fn decouple_refuses_functional_join() {
    let src = "component c {\n channel a(id: int)\n channel b(id: int)\n output both(id: int)\n x(id) :- a(id).\n y(id) :- b(id).\n both(id) :- x(id), y(id).\n}\n";
    insta::assert_snapshot!(decouple(src, "c", &["both"], "d"));
}

#[test]
fn decouple_refuses_negation_of_what_stays() {
    let src = "component c {\n channel a(id: int)\n channel b(id: int)\n table seen(id: int)\n output fresh(id: int)\n seen(id) :- b(id).\n fresh(id) :- a(id), !seen(id).\n}\n";
    insta::assert_snapshot!(decouple(src, "c", &["fresh"], "d"));
}

#[test]
fn decouple_refuses_an_existing_name() {
    assert!(decouple(SPLIT, "c", &["ask"], "p").starts_with("refused: `p` is not a fresh component name"));
}

#[test]
fn partition_by_named_key_and_refusal() {
    let src = "component c {\n channel vote(id: int, voter: addr)\n table log(id: int, voter: addr)\n output tally(id: int, n: int)\n log(id, v) :- vote(id, v).\n tally(id, count(v)) :- log(id, v).\n}\n";
    let analysis = analyze(src);
    let ok = rewrite::partition(&analysis, "c", Some("id")).unwrap();
    assert!(ok.new_text.contains("component c partitioned by vote.id {"), "{}", ok.new_text);
    let refused = rewrite::partition(&analysis, "c", Some("voter")).unwrap_err();
    insta::assert_snapshot!(refused.reason);
}

#[test]
fn initial_fact_in_a_keyed_relation_is_not_partitioned() {
    // Every instance would start with `seen(0)` and count it; only the owner of 0 may.
    let src = "component c {\n channel req(id: int)\n table seen(id: int)\n output total(id: int, n: int)\n seen(0).\n seen(id) :- req(id).\n total(id, count(id)) :- seen(id).\n}\n";
    let out = classes(src);
    assert!(!out.starts_with("component c: partitioned by id"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn decouple_redirects_replies_that_only_moved_rules_read() {
    // `ask` carries `self` as the return address and `vote` comes back on it; both the request and
    // every reader of the reply move, so votes go straight to the new component.
    let out = decouple(SPLIT, "c", &["ask", "votes", "tally"], "round");
    assert!(out.contains("redirection: replies on `vote` now go straight to `round`"), "{out}");
    assert!(out.contains("ask@p(id, v, self)"), "self stays the return address:\n{out}");
    insta::assert_snapshot!(out);
}

/// `c` sends work to `w`, which answers on `done`; `c` keeps only the highest `level` it heard of
/// and moves the collection of answers out.
const NACK: &str = "component c {\n input req(id: int)\n channel done(w: addr, id: int, level: int)\n table heard(level: int)\n table got(id: int, w: addr)\n output finished(id: int)\n work@x(self, id) :~ req(id), nodes(\"w\", x).\n heard(l) :- done(_, _, l).\n got(id, w) :- done(w, id, _).\n finished(id) :- got(id, _).\n}\ncomponent w {\n channel work(from: addr, id: int)\n done@from(self, id, 7) :~ work(from, id).\n}\n";

#[test]
fn decouple_redirects_a_channel_the_rest_reads_through_a_projection() {
    let out = decouple(NACK, "c", &["got", "finished"], "collect");
    assert!(out.contains("nack redirection: `done` now goes straight to `collect`: its senders (`done@from(self, id, 7) :~ work(from, id)`)"), "{out}");
    // The sender addresses the new component, with the node it used to address as the last column.
    assert!(
        out.contains("done@dest(self, id, 7, from) :~ work(from, id), partner(from, dest), nodes(\"collect\", dest)."),
        "{out}"
    );
    // The rest reads only the projected column, on a new channel.
    assert!(out.contains("channel done_nack(level: int)"), "{out}");
    assert!(out.contains("heard(l) :- done_nack(l)."), "{out}");
    assert!(out.contains("done_nack@origin(level) :~ done(w, id, level, origin)."), "{out}");
    assert!(out.contains("got(id, w) :- done(w, id, _, _)."), "{out}");
    assert!(!out.contains("done_collect"), "done is no longer forwarded:\n{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn nack_redirection_is_refused_when_the_rest_aggregates_or_reads_the_whole_fact() {
    // An aggregate over the channel: fall back to forwarding, with the reason.
    let agg = NACK.replace("heard(l) :- done(_, _, l).", "heard(count(l)) :- done(_, _, l).");
    let out = decouple(&agg, "c", &["got", "finished"], "collect");
    assert!(
        out.contains("done_collect@dest(w, id, level) :~\n        done(w, id, level),\n        partner(self, dest),"),
        "{out}"
    );
    assert!(out.contains("aggregates over it (not monotone)"), "{out}");
    // Every column read: passing it back would cost as much as forwarding it.
    let whole = NACK.replace("heard(l) :- done(_, _, l).", "heard(l) :- done(w, id, l), id > 0, w != w.");
    let out = decouple(&whole, "c", &["got", "finished"], "collect");
    assert!(out.contains("read every column of `done`"), "{out}");
    // Negation of the channel.
    let neg = NACK.replace("heard(l) :- done(_, _, l).", "heard(l) :- req(l), !done(_, _, l).");
    let out = decouple(&neg, "c", &["got", "finished"], "collect");
    assert!(out.contains("negates it (not monotone)") && !out.contains("nack redirection"), "{out}");
    // What the moved part computes from the channel leads back to `c` through `w`: `c` could hear
    // of it before the nack, which the original never allows.
    let back = NACK
        .replace(
            "output finished(id: int)\n",
            "output finished(id: int)\n channel note(id: int)\n poke@w(id) :~ got(id, w).\n heard(id) :- note(id).\n",
        )
        .replace(
            "channel work(from: addr, id: int)\n",
            "channel work(from: addr, id: int)\n channel poke(id: int)\n note@x(id) :~ poke(id), nodes(\"c\", x).\n",
        );
    let out = decouple(&back, "c", &["got", "finished", "poke"], "collect");
    assert!(out.contains("`poke@w(id) :~ got(id, w)` sends what the moved rules compute from `done`"), "{out}");
    assert!(!out.contains("nack redirection"), "{out}");
}

fn sealed(src: &str, component: &str, key: Option<&str>) -> Result<String, String> {
    let analysis = analyze(src);
    rewrite::partition_sealed(&analysis, component, key).map(|r| r.new_text).map_err(|r| r.reason)
}

/// A log whose replies carry the highest slot it holds (max) and its size (count).
const SEALABLE_LOG: &str = "
component client {
    input write(id: int, slot: int)
    input probe(round: int)
    output size(round: int, log: addr, high: int, entries: int)
    output stored(id: int, high: int)
    channel status(log: addr, round: int, high: int, entries: int)
    channel ack(id: int, high: int)
    store@l(self, id, s) :~ write(id, s), nodes(\"log\", l).
    ask@l(self, r) :~ probe(r), nodes(\"log\", l).
    size(r, l, h, n) :- status(l, r, h, n).
    stored(id, 0) :- ack(id, _).
}
component log {
    channel store(from: addr, id: int, slot: int)
    channel ask(from: addr, round: int)
    table entries(slot: int, id: int) key(slot)
    entries(s, id) :+ store(_, id, s).
    slot_in(s) :- entries(s, _).
    slot_in(s) :- store(_, _, s).
    high(max(s)) :- slot_in(s).
    entry_count(count(s)) :- entries(s, _).
    status@f(self, r, h, n) :~ ask(f, r), high(h), entry_count(n).
    ack@f(id, h) :~ store(f, id, _), high(h).
}
";

#[test]
fn sealed_partition_recombines_max_and_count_at_the_receiver() {
    let text = sealed(SEALABLE_LOG, "log", Some("slot")).unwrap();
    assert!(text.contains("component log partitioned by store.slot"), "{text}");
    assert!(text.contains("status_part@f(self, r, h, n, part, parts) :~"), "{text}");
    assert!(text.contains("status_high(log, round, max(high))"), "{text}");
    assert!(text.contains("sum(entries_tagged)"), "{text}");
    let analysis = analyze(&text);
    assert!(!analysis.has_errors());
}

#[test]
fn sealed_partition_refusals_name_the_reason() {
    // Nothing aggregates over every fact: plain partitioning is the rewrite to use.
    let plain = "component c {\n channel a(k: int, v: int)\n table t(k: int, v: int)\n t(k, v) :+ a(k, v).\n}\n";
    assert!(sealed(plain, "c", None).unwrap_err().contains("nothing to seal"));
    // A count answered to a keyed message would be one instance's part of it.
    let keyed_count = SEALABLE_LOG
        .replace("ack@f(id, h) :~ store(f, id, _), high(h).", "ack@f(id, n) :~ store(f, id, _), entry_count(n).");
    let reason = sealed(&keyed_count, "log", Some("slot")).unwrap_err();
    assert!(reason.contains("not a bound of it"), "{reason}");
    // One instance's bound kept by the receiver, where later replies could be compared with it:
    // monotonic reads would break.
    let kept_bound = SEALABLE_LOG.replace("stored(id, 0) :- ack(id, _).", "stored(id, h) :- ack(id, h).");
    let reason = sealed(&kept_bound, "log", Some("slot")).unwrap_err();
    assert!(reason.contains("keeps it in `stored`") && reason.contains("monotonic reads"), "{reason}");
    // Compared with another fact's value in the same rule: refused too.
    let compared =
        SEALABLE_LOG.replace("stored(id, 0) :- ack(id, _).", "stored(id, 0) :- ack(id, h), size(_, _, m, _), h < m.");
    let reason = sealed(&compared, "log", Some("slot")).unwrap_err();
    assert!(reason.contains("compares it with other facts' values"), "{reason}");
    // An output cannot be recombined by clients.
    let output = SEALABLE_LOG
        .replace("component log {\n", "component log {\n    output top(high: int)\n    top(h) :- high(h).\n");
    let reason = sealed(&output, "log", Some("slot")).unwrap_err();
    assert!(reason.contains("clients cannot recombine"), "{reason}");
    // `choose` picks an arbitrary fact: no combination recovers it.
    let choose = SEALABLE_LOG.replace("high(max(s))", "high(choose(s))");
    assert!(sealed(&choose, "log", Some("slot")).unwrap_err().contains("choose"));
    // A column computed from a per-instance value cannot be recombined either.
    let computed = SEALABLE_LOG
        .replace("ack@f(id, h) :~ store(f, id, _), high(h).", "ack@f(id, h + 1) :~ store(f, id, _), high(h).");
    let reason = sealed(&computed, "log", Some("slot")).unwrap_err();
    assert!(reason.contains("computes a message column"), "{reason}");
}

/// The nack filter needs both a running maximum at the receiver and a guard that returns to the
/// node that fed it into that maximum; without either, every projection is passed back.
#[test]
fn nack_filter_needs_a_running_maximum_and_a_returning_guard() {
    let paxos = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/paxos.ded")).unwrap();
    let rules = ["proposals", "accepted_by", "accept_count", "commit", "committed", "reply"];
    let filtered = "max_ballot > ballot.";
    assert!(decouple(&paxos, "proposer", &rules, "commit_part").contains(filtered));
    // The maximum is not kept across ticks: a smaller nack could still matter later.
    let forgetful = paxos.replace("    seen(b) :- heard_max(b).\n", "");
    assert_ne!(forgetful, paxos);
    let out = decouple(&forgetful, "proposer", &rules, "commit_part");
    assert!(out.contains("p2b_nack@origin") && !out.contains(filtered), "{out}");
    // The acceptor answers with a ballot the proposer never fed into its maximum.
    let foreign = paxos.replace(
        "p2b@p(self, b, s, m) :~ p2a(p, b, s, _, _), promised(m).",
        "p2b@p(self, b + 1, s, m) :~ p2a(p, b, s, _, _), promised(m).",
    );
    assert_ne!(foreign, paxos);
    let out = decouple(&foreign, "proposer", &rules, "commit_part");
    assert!(out.contains("p2b_nack@origin") && !out.contains(filtered), "{out}");
}

/// A running maximum must only lose values below a new maximum it receives: a deletion compared
/// with anything else could lower it, and a smaller nack would then matter.
#[test]
fn nack_filter_needs_deletions_below_the_new_maximum() {
    let paxos = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/paxos.ded")).unwrap();
    let rules = ["proposals", "accepted_by", "accept_count", "commit", "committed", "reply"];
    let lowered = paxos.replace(
        "delete max_seen(b) :- max_seen(b), seen_max(m), b < m.",
        "delete max_seen(b) :- max_seen(b), proposer_rank(m), b < m.",
    );
    assert_ne!(lowered, paxos);
    let out = decouple(&lowered, "proposer", &rules, "commit_part");
    assert!(out.contains("p2b_nack@origin") && !out.contains("max_ballot > ballot."), "{out}");
}

/// A per-instance value that reaches an output through another relation is refused too.
#[test]
fn sealed_partition_follows_per_instance_values_through_relations() {
    let indirect = SEALABLE_LOG
        .replace("component log {\n", "component log {\n    output top(slot: int, high: int)\n    seen_high(s, h) :- store(_, _, s, _), high(h).\n    top(s, h) :- seen_high(s, h).\n");
    let reason = sealed(&indirect, "log", Some("slot")).unwrap_err();
    assert!(reason.contains("clients cannot recombine"), "{reason}");
}

/// A component that reads `instance` would see its own partitioning: plain partitioning refuses.
#[test]
fn partition_refuses_a_component_that_reads_its_instance() {
    let src = "component c {\n channel a(k: int, v: int)\n output o(k: int, i: int)\n o(k, i) :- a(k, _), instance(i, _).\n}\n";
    let analysis = analyze(src);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let reason = rewrite::partition(&analysis, "c", None).unwrap_err().reason;
    assert!(reason.contains("reads `instance`"), "{reason}");
}
