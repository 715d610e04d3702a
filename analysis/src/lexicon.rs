//! What each keyword, rule operator and built-in of the language means, in the words of
//! docs/language.md. The one place these texts live: the editor's hover and completion both read
//! them from here.

use crate::model::{AggregateFunc, Function, BUILTIN_RELATIONS};

/// A word of the language with its one-line signature and its meaning (Markdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub word: &'static str,
    /// What kind of word it is: "keyword", "rule operator", "aggregate", ...
    pub kind: &'static str,
    pub signature: &'static str,
    pub meaning: &'static str,
}

const fn e(word: &'static str, kind: &'static str, signature: &'static str, meaning: &'static str) -> Entry {
    Entry { word, kind, signature, meaning }
}

pub const KEYWORDS: &[Entry] = &[
    e("component", "keyword", "component NAME [partitioned by KEYS] { ... }", "A kind of node: its relations, rules and local invariants. A deployment runs one or more nodes of each component; the program never says how many."),
    e("partitioned", "keyword", "partitioned by KEYS", "Each logical node of the component runs as N instances (N from the deployment's `[partitions]`); every fact sent to it goes to the instance a hash of its key column picks, and facts of relations without a key column are replicated to every instance."),
    e("by", "keyword", "partitioned by KEYS", "`partitioned by col` keys every relation that has a column `col` by it; `partitioned by rel.col` keys relation `rel` by its column `col`."),
    e("key", "keyword", "key(c1, c2, ...)", "A functional dependency: two facts that agree on the key columns agree on every column. `key()` says the relation holds at most one fact."),
    e("invariant", "keyword", "invariant NAME[(ARGS)] :- BODY.", "A query that must stay empty. Inside a component it is checked on each node after each tick; at the top level, over the union of the facts of all nodes."),
    e("delete", "keyword", "delete rel(args) :- body.", "Removes the matching facts of a table of the rule's component from the next tick on; in the current tick they are still present. If a `:+` rule derives the same fact, the insertion wins."),
    e("input", "relation kind", "input name(column: type, ...)", "Facts injected from outside (clients, the load generator, the CLI); present in the tick they are injected. Only the outside world writes them."),
    e("output", "relation kind", "output name(column: type, ...)", "Facts emitted to the outside (e.g. replies to clients); present in the tick they are derived."),
    e("table", "relation kind", "table name(column: type, ...)", "Persistent facts: a fact stays until a `delete` rule removes it."),
    e("channel", "relation kind", "channel name(column: type, ...)", "Facts sent by nodes with `:~` (possibly this one); present in the tick they are delivered. Declared in the receiving component."),
    e("scratch", "relation kind", "scratch name(column: type, ...)", "Facts that hold within one tick. A relation derived but never declared is scratch, its column types inferred."),
    e("true", "literal", "true: bool", "The boolean true."),
    e("false", "literal", "false: bool", "The boolean false."),
    e("self", "built-in", "self: addr", "The address of this node. In a partitioned component, the logical node's address, so replies sent `@self` come back through the router."),
];

pub const OPERATORS: &[Entry] = &[
    e(":-", "rule operator", "head :- body.", "Same tick: the head holds in this tick whenever the body does; computed to fixpoint."),
    e(":+", "rule operator", "head :+ body.", "Next tick: the body is evaluated over the facts of the finished tick; the head holds from the next tick of the same node."),
    e(":~", "rule operator", "rel@dest(args) :~ body.", "Asynchronous: each fact of channel `rel` is sent to node `dest`, delivered exactly once after an unbounded but finite delay, possibly reordered."),
    e("@", "destination", "rel@dest(args) :~ body.", "The node a `:~` rule sends to: a variable of type `addr` bound by the body, or `self`."),
];

pub const AGGREGATES: &[Entry] = &[
    e("count", "aggregate", "count(x): int", "The number of distinct values of `x` in the group (the other head columns)."),
    e("sum", "aggregate", "sum(x: int): int", "The sum of the distinct values of `x` in the group."),
    e("min", "aggregate", "min(x): int | string", "In a head with one argument: the smallest value of `x` in the group."),
    e("max", "aggregate", "max(x): int | string", "In a head with one argument: the largest value of `x` in the group."),
    e("choose", "aggregate", "choose(x)", "One value of `x` from the group, chosen by the runtime (fixed by the seed in the simulator)."),
    e("rank", "aggregate", "rank(x): int", "The position of `x` among the distinct values of `x` in the group, from 1, in increasing order: one fact per value. `x` must also be a head argument."),
];

pub const FUNCTIONS: &[Entry] = &[
    e("hash", "function", "hash(x, ...): int", "A deterministic hash of one or more values of any types; never negative, and the same on every node and every run."),
    e("min", "function", "min(a: int, b: int): int", "The smaller of two ints."),
    e("max", "function", "max(a: int, b: int): int", "The larger of two ints."),
    e("abs", "function", "abs(a: int): int", "Absolute value."),
    e("str", "function", "str(x): string", "`x` as text: an int in decimal, `true`/`false`, a string unchanged, an address as `host:port`."),
];

pub const RELATIONS: &[Entry] = &[
    e("nodes", "built-in relation", "nodes(component: string, a: addr)", "The deployment: one fact per (logical) node, its component's name and its address. Readable from every component, in every tick."),
    e("instance", "built-in relation", "instance(index: int, count: int)", "This node is instance `index` (from 0) of the `count` instances of its logical node; `instance(0, 1)` when its component is not partitioned."),
    e("partner", "built-in relation", "partner(a: addr, b: addr)", "`b` is the node of its component at the position of `a` among the nodes of `a`'s component (modulo the number of nodes of `b`'s component)."),
];

pub const TYPES: &[Entry] = &[
    e("int", "type", "int", "64-bit signed integers; arithmetic wraps around on overflow."),
    e("string", "type", "string", "UTF-8 text; `++` concatenates, comparisons are byte-wise."),
    e("bool", "type", "bool", "`true` or `false`; `&&`, `||`."),
    e("addr", "type", "addr", "The address of a node; equality only."),
];

/// The entries for `word`: a keyword, operator, type or built-in relation has one; `min` and `max`
/// have two (the aggregate in a head with one argument, the function with two).
pub fn lookup(word: &str) -> Vec<&'static Entry> {
    [KEYWORDS, OPERATORS, AGGREGATES, FUNCTIONS, RELATIONS, TYPES]
        .into_iter()
        .flatten()
        .filter(|entry| entry.word == word)
        .collect()
}

/// `word` is built into the language (an aggregate, a function, a built-in relation or `self`):
/// nothing in a program declares it, so nothing can rename it.
pub fn is_builtin(word: &str) -> bool {
    AggregateFunc::from_name(word).is_some()
        || Function::from_name(word).is_some()
        || BUILTIN_RELATIONS.contains(&word)
        || word == "self"
}

/// Markdown for a hover: each entry's signature and meaning.
pub fn markdown(word: &str) -> Option<String> {
    let entries = lookup(word);
    (!entries.is_empty()).then(|| {
        entries
            .iter()
            .map(|e| format!("```compart\n{}\n```\n{}: {}", e.signature, e.kind, e.meaning))
            .collect::<Vec<_>>()
            .join("\n\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Type;

    #[test]
    fn every_word_of_the_language_is_described() {
        let mut words: Vec<&str> =
            ["component", "partitioned", "by", "key", "invariant", "delete", "true", "false", "self"]
                .into_iter()
                .chain(["input", "output", "table", "channel", "scratch"])
                .chain([":-", ":+", ":~", "@"])
                .chain(Function::NAMES)
                .chain(BUILTIN_RELATIONS)
                .chain(Type::NAMES)
                .collect();
        for name in ["count", "sum", "min", "max", "choose", "rank"] {
            assert!(AggregateFunc::from_name(name).is_some());
            words.push(name);
        }
        for word in words {
            assert!(markdown(word).is_some(), "no description of `{word}`");
        }
        assert_eq!(lookup("max").len(), 2);
        assert!(is_builtin("count") && is_builtin("nodes") && is_builtin("self") && !is_builtin("votes"));
    }

    #[test]
    fn aggregates_and_functions_are_the_models() {
        for e in AGGREGATES {
            assert!(AggregateFunc::from_name(e.word).is_some(), "{}", e.word);
        }
        let names: Vec<&str> = FUNCTIONS.iter().map(|e| e.word).collect();
        assert_eq!(names, Function::NAMES);
    }
}
