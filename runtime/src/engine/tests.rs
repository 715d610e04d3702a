use super::*;

fn compile(src: &str) -> (Arc<CompiledProgram>, Program) {
    let analysis = compart_analysis::analyze(src);
    let errors: Vec<_> =
        analysis.diagnostics.iter().filter(|d| d.severity == compart_analysis::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    (Arc::new(CompiledProgram::new(&analysis).unwrap()), analysis.program)
}

use compart_analysis::Program;

fn single(src: &str) -> (Node, Program) {
    let (p, program) = compile(src);
    let d = Arc::new(Deployment::local(&program, &[]));
    (Node::new(p, NodeAddr(0), d), program)
}

fn rel(program: &Program, name: &str) -> RelationId {
    program.relation_by_name(name).unwrap()
}

fn show(node: &Node, program: &Program, name: &str) -> String {
    node.facts(rel(program, name)).iter().map(|t| crate::value::format_fact(name, t)).collect::<Vec<_>>().join(" ")
}

#[test]
fn transitive_closure_is_a_view() {
    let (mut n, p) = single(
        "component c {
            table edge(a: int, b: int)
            edge(1, 2). edge(2, 3). edge(3, 4). edge(4, 2).
            path(a, b) :- edge(a, b).
            path(a, c) :- path(a, b), edge(b, c).
            input add(a: int, b: int)
            edge(a, b) :- add(a, b).
        }",
    );
    n.tick(vec![]);
    assert_eq!(n.facts(rel(&p, "path")).len(), 12);
    n.tick(vec![]);
    assert!(n.profile().strata_cached >= 1, "unchanged tables: the view is not recomputed");
    n.tick(vec![(rel(&p, "add"), vec![Value::Int(0), Value::Int(1)])]);
    assert_eq!(n.facts(rel(&p, "path")).len(), 16);
}

#[test]
fn deferred_rules_deletes_and_insertion_wins() {
    let (mut n, p) = single(
        "component c {
            input  set(v: int)
            output seen(v: int)
            table  cur(v: int) key()
            cur(0).
            delete cur(x) :- cur(x), set(_).
            cur(v) :+ set(v).
            seen(v) :- cur(v).
        }",
    );
    let out = n.tick(vec![]);
    assert_eq!(out.outputs, vec![(rel(&p, "seen"), vec![Value::Int(0)])]);
    let out = n.tick(vec![(rel(&p, "set"), vec![Value::Int(5)])]);
    assert_eq!(out.outputs, vec![(rel(&p, "seen"), vec![Value::Int(0)])], "delete and :+ apply next tick");
    assert_eq!(show(&n, &p, "cur"), "cur(5)");
    // Same value deleted and re-inserted: insertion wins.
    n.tick(vec![(rel(&p, "set"), vec![Value::Int(5)])]);
    assert_eq!(show(&n, &p, "cur"), "cur(5)");
    assert!(out.violations.is_empty());
}

#[test]
fn aggregates_negation_and_functions() {
    let (mut n, p) = single(
        r#"component c {
            input  x(k: string, v: int)
            output stats(k: string, n: int, s: int, lo: int, hi: int)
            output none(k: string)
            output f(h: int, s: string, m: int, a: int, d: int, r: int)
            output pick(k: string, v: int)
            stats(k, count(v), sum(v), min(v), max(v)) :- x(k, v).
            pick(k, choose(v)) :- x(k, v).
            none(k) :- x(k, _), !big(k).
            big(k) :- x(k, v), v > 10.
            f(h % 1000, str(v) ++ "!" ++ str(self), max(v, 3), abs(0 - v), 7 / v, 0 - 7 % 2) :- x("a", v), h = hash(v, "a").
        }"#,
    );
    let x = rel(&p, "x");
    let out = n.tick(vec![
        (x, vec![Value::str("a"), Value::Int(2)]),
        (x, vec![Value::str("a"), Value::Int(-4)]),
        (x, vec![Value::str("b"), Value::Int(20)]),
        (x, vec![Value::str("a"), Value::Int(0)]),
    ]);
    let mut shown: Vec<String> =
        out.outputs.iter().map(|(r, t)| crate::value::format_fact(&p.relation(*r).name, t)).collect();
    shown.sort();
    insta::assert_snapshot!(shown.join("\n"), @r#"
    f(45, "2!127.0.0.1:7000", 3, 2, 3, -1)
    f(867, "-4!127.0.0.1:7000", 3, 4, -1, -1)
    none("a")
    pick("a", -4)
    pick("b", 20)
    stats("a", 3, -2, -4, 2)
    stats("b", 1, 20, 20, 20)
    "#);
    assert_eq!(out.warnings.len(), 1, "7 / 0 is reported: {:?}", out.warnings);
}

#[test]
fn incremental_count_follows_deletes() {
    let (mut n, p) = single(
        "component c {
            input  add(k: int, v: int)
            input  del(k: int)
            table  t(k: int, v: int)
            t(k, v) :- add(k, v).
            delete t(k, v) :- t(k, v), del(k).
            cnt(k, count(v)) :- t(k, v).
            total(count(k)) :- t(k, _).
            hi(k, max(v)) :- t(k, v).
            output report(k: int, n: int, m: int, all: int)
            report(k, c, m, a) :- cnt(k, c), hi(k, m), total(a).
        }",
    );
    let add = rel(&p, "add");
    let del = rel(&p, "del");
    let i = |a: i64, b: i64| vec![Value::Int(a), Value::Int(b)];
    n.tick(vec![(add, i(1, 10)), (add, i(1, 11)), (add, i(2, 5))]);
    assert_eq!(show(&n, &p, "cnt"), "cnt(1, 2) cnt(2, 1)");
    n.tick(vec![(del, vec![Value::Int(1)]), (add, i(2, 7))]);
    let out = n.tick(vec![]);
    assert_eq!(show(&n, &p, "cnt"), "cnt(2, 2)");
    assert_eq!(show(&n, &p, "hi"), "hi(2, 7)");
    assert_eq!(
        out.outputs,
        vec![(rel(&p, "report"), vec![Value::Int(2), Value::Int(2), Value::Int(7), Value::Int(1)])]
    );
    n.tick(vec![(del, vec![Value::Int(2)])]);
    n.tick(vec![]);
    assert_eq!(show(&n, &p, "total"), "", "empty body: no fact, not 0");
}

#[test]
fn sends_nodes_and_self() {
    let (prog, p) = compile(
        "component a {
            input go(x: int)
            ping@b(x, self) :~ go(x), nodes(\"b\", b).
        }
        component b {
            channel ping(x: int, from: addr)
            table got(x: int, from: addr)
            got(x, f) :- ping(x, f).
        }",
    );
    let d = Arc::new(Deployment::local(&p, &[("a", 1), ("b", 2)]));
    let mut a = Node::new(prog.clone(), NodeAddr(0), d.clone());
    let out = a.tick(vec![(rel(&p, "go"), vec![Value::Int(7)])]);
    let ping = rel(&p, "ping");
    assert_eq!(
        out.sends,
        vec![
            (NodeAddr(1), ping, vec![Value::Int(7), Value::Addr(NodeAddr(0))]),
            (NodeAddr(2), ping, vec![Value::Int(7), Value::Addr(NodeAddr(0))])
        ]
    );
    let mut b = Node::new(prog, NodeAddr(1), d);
    let out = b.tick(vec![(ping, vec![Value::Int(7), Value::Addr(NodeAddr(0))]), (rel(&p, "go"), vec![Value::Int(1)])]);
    assert_eq!(out.warnings.len(), 1, "an input of another component is rejected");
    assert_eq!(b.facts(rel(&p, "got")).len(), 1);
}

#[test]
fn invariants_and_keys_are_checked() {
    let (mut n, p) = single(
        "component c {
            input put(k: int, v: int)
            table kv(k: int, v: int) key(k)
            kv(k, v) :- put(k, v).
            invariant small(k) :- kv(k, v), v > 100.
        }",
    );
    let put = rel(&p, "put");
    let out = n.tick(vec![(put, vec![Value::Int(1), Value::Int(1)]), (put, vec![Value::Int(1), Value::Int(2)])]);
    assert_eq!(out.violations.len(), 1);
    assert_eq!(out.violations[0].invariant, "key(kv)");
    let out = n.tick(vec![(put, vec![Value::Int(2), Value::Int(200)])]);
    assert!(
        out.violations.iter().any(|v| v.invariant == "small" && v.args == vec![Value::Int(2)]),
        "{:?}",
        out.violations
    );
}

#[test]
fn partitioned_routing_and_initial_facts() {
    let (prog, p) = compile(
        "component s partitioned by k {
            channel put(k: int, v: int)
            channel all(v: int)
            table kv(k: int, v: int)
            table cfg(v: int)
            kv(k, v) :- put(k, v).
            kv(1, 1). kv(2, 2). kv(3, 3). kv(4, 4).
            cfg(9).
            scratch sc(k: int)
            sc(1). sc(2). sc(3). sc(4). sc(5).
            output o(k: int)
            o(k) :- sc(k).
        }",
    );
    let d = Arc::new(Deployment::local_partitioned(&p, &[("s", 1, 3)]));
    let put = rel(&p, "put");
    let mut seen = std::collections::BTreeSet::new();
    for k in 0..50 {
        let r = route(&prog, &d, NodeAddr(0), put, &[Value::Int(k), Value::Int(0)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r, route(&prog, &d, NodeAddr(2), put, &[Value::Int(k), Value::Int(9)]), "same key, same instance");
        seen.insert(r[0]);
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(route(&prog, &d, NodeAddr(0), rel(&p, "all"), &[Value::Int(1)]).len(), 3);
    let (mut total, mut outputs) = (0, 0);
    for i in 0..3 {
        let mut n = Node::new(prog.clone(), NodeAddr(i), d.clone());
        let out = n.tick(vec![]);
        outputs += out.outputs.len();
        total += n.facts(rel(&p, "kv")).len();
        assert_eq!(n.facts(rel(&p, "cfg")).len(), 1, "replicated");
    }
    assert_eq!(total, 4, "each initial fact lives on one instance");
    assert_eq!(outputs, 5, "scratch facts are placed like table facts");
}

#[test]
fn durable_node_recovers_tables_after_a_torn_write() {
    let src = "component c {
        input put(k: int)
        table t(k: int)
        table boot()
        boot().
        delete boot() :- boot().
        output booted()
        booted() :- boot().
        t(k) :- put(k).
        delete t(k) :- t(k), put(k2), k2 == k + 100.
    }";
    let (prog, p) = compile(src);
    let d = Arc::new(Deployment::local(&p, &[]));
    let path = std::env::temp_dir().join(format!("compart-node-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let hash = crate::durability::program_hash(src);
    let put = rel(&p, "put");
    {
        let (mut n, report) = Node::open_durable(prog.clone(), NodeAddr(0), d.clone(), &path, &hash, false).unwrap();
        assert_eq!(report.records, 0);
        for k in [1, 2, 3, 101] {
            n.tick(vec![(put, vec![Value::Int(k)])]);
        }
        assert_eq!(show(&n, &p, "t"), "t(2) t(3) t(101)");
    }
    // A crash in the middle of the last record's write.
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let (mut n, report) = Node::open_durable(prog, NodeAddr(0), d, &path, &hash, false).unwrap();
    assert!(report.dropped_bytes > 0 && report.dropped_reason.is_some());
    assert_eq!(show(&n, &p, "t"), "t(1) t(2) t(3)", "the last tick (insert 101, delete 1) is lost whole");
    assert_eq!(show(&n, &p, "boot"), "");
    let out = n.tick(vec![]);
    assert!(out.outputs.is_empty(), "initial facts are not inserted again after recovery");
    let _ = std::fs::remove_file(&path);
    let _ = report.kept_aside.map(std::fs::remove_file);
}

const STRINGS: &str = "component c {
    input  put(k: string)
    output got(k: string)
    table  held(k: string)
    held(k) :- put(k).
    got(k) :+ put(k).
}";

#[test]
fn a_clone_is_independent_of_the_original() {
    let (mut a, p) = single(STRINGS);
    a.tick(vec![(rel(&p, "put"), vec![Value::str("x")])]);
    let mut b = a.clone();
    b.tick(vec![(rel(&p, "put"), vec![Value::str("y")])]);
    assert_eq!(show(&a, &p, "held"), r#"held("x")"#);
    assert_eq!(show(&b, &p, "held"), r#"held("x") held("y")"#);
    assert_ne!(a.fingerprint(), b.fingerprint());
}

#[test]
fn fingerprints_ignore_interning_order_but_not_pending_facts() {
    let (mut a, p) = single(STRINGS);
    let (mut b, _) = single(STRINGS);
    let put = |s: &str| vec![(rel(&p, "put"), vec![Value::str(s)])];
    a.tick(put("x"));
    a.tick(put("y"));
    b.tick(put("y"));
    b.tick(put("x"));
    // Different strings interned first, and different `got` facts pending for the next tick.
    assert_ne!(a.fingerprint(), b.fingerprint());
    a.tick(vec![]);
    b.tick(vec![]);
    assert_eq!(show(&a, &p, "held"), show(&b, &p, "held"));
    assert_eq!(a.fingerprint(), b.fingerprint());
}

#[test]
fn a_restarted_node_keeps_its_tables_and_loses_pending_facts() {
    let (mut a, p) = single(STRINGS);
    a.tick(vec![(rel(&p, "put"), vec![Value::str("x")])]);
    let mut r = a.restarted();
    assert_eq!(show(&r, &p, "held"), r#"held("x")"#);
    assert!(r.wants_tick(), "recovered tables may fire rules");
    let out = r.tick(vec![]);
    assert!(out.outputs.is_empty(), "the pending got(\"x\") died with the process");
    let out = a.tick(vec![]);
    assert_eq!(out.outputs, vec![(rel(&p, "got"), vec![Value::str("x")])]);
}

#[test]
fn routing_spreads_keys_a_program_already_sharded_by_hash() {
    // `front` shards keys over 4 `shard` nodes by `hash(k) % 4` (shard i gets the keys with
    // `hash(k) % 4 == i - 1`); each shard runs as 4 instances partitioned by `k`. Routing with the
    // language's own hash would put every key of shard i on one instance.
    let (prog, p) = compile(
        r#"component front {
            input req(k: int)
            shard_rank(a, count(b)) :- nodes("shard", a), nodes("shard", b), str(b) <= str(a).
            put@a(k) :~ req(k), shard_rank(a, i), i - 1 == hash(k) % 4.
        }
        component shard partitioned by k {
            channel put(k: int)
            table stored(k: int)
            stored(k) :- put(k).
        }"#,
    );
    let d = Arc::new(Deployment::local_partitioned(&p, &[("front", 1, 1), ("shard", 4, 4)]));
    let front = d.logical_nodes().find(|n| p.component(n.component).name == "front").unwrap().addr;
    let mut node = Node::new(prog.clone(), front, d.clone());
    let req = rel(&p, "req");
    let out = node.tick((0..4000).map(|k| (req, vec![Value::Int(k)])).collect());
    assert_eq!(out.sends.len(), 4000);
    let mut per_instance: std::collections::BTreeMap<NodeAddr, usize> = Default::default();
    for (dest, r, tuple) in &out.sends {
        for to in route(&prog, &d, *dest, *r, tuple) {
            *per_instance.entry(to).or_default() += 1;
        }
    }
    for shard in d.logical_nodes().filter(|n| p.component(n.component).name == "shard") {
        let counts: Vec<usize> =
            d.instances(shard.addr).iter().map(|i| per_instance.get(&i.addr).copied().unwrap_or(0)).collect();
        let total: usize = counts.iter().sum();
        assert!(total > 600, "shard {:?} got {total} of 4000 keys", shard.addr);
        assert!(counts.iter().all(|&c| c * 10 >= total), "shard {:?}: {counts:?}", shard.addr);
    }
}

#[test]
fn rank_numbers_each_group_in_order() {
    let (mut n, p) = single(
        r#"component c {
            input req(id: int, who: string)
            table by_id(id: int, r: int)
            table per_who(who: string, id: int, r: int)
            table names(who: string, r: int)
            by_id(id, rank(id)) :- req(id, _).
            per_who(who, id, rank(id)) :- req(id, who).
            names(w, rank(w)) :- req(_, w).
            output o(id: int, slot: int)
            table next(n: int) key()
            next(10).
            o(id, s) :- by_id(id, i), next(n), s = n + i - 1.
        }"#,
    );
    let req = rel(&p, "req");
    let input = [(30, "b"), (-5, "a"), (7, "b"), (100, "a"), (7, "b")];
    n.tick(input.iter().map(|&(i, w)| (req, vec![Value::Int(i), Value::str(w)])).collect());
    assert_eq!(show(&n, &p, "by_id"), "by_id(-5, 1) by_id(7, 2) by_id(30, 3) by_id(100, 4)");
    assert_eq!(
        show(&n, &p, "per_who"),
        r#"per_who("a", -5, 1) per_who("a", 100, 2) per_who("b", 7, 1) per_who("b", 30, 2)"#
    );
    // Strings rank byte-wise, duplicates once.
    assert_eq!(show(&n, &p, "names"), r#"names("a", 1) names("b", 2)"#);
}

#[test]
fn rank_of_a_large_batch_is_a_sort_not_a_self_join() {
    let (mut n, p) = single(
        "component c {
            input req(id: int)
            by_id(id, rank(id)) :- req(id).
            output o(id: int, r: int)
            o(id, r) :- by_id(id, r).
        }",
    );
    let req = rel(&p, "req");
    // 50k facts: a sort per tick; the self-join `rank` replaces would be 1.25e9 pairs.
    let batch = 50_000i64;
    let out = n.tick((0..batch).rev().map(|i| (req, vec![Value::Int(i * 3)])).collect());
    assert_eq!(out.outputs.len(), batch as usize);
    assert!(out.outputs.iter().all(|(_, t)| t[1] == Value::Int(t[0].as_int().unwrap() / 3 + 1)));
}
