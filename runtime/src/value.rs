//! Values and tuples as the outside world (network, simulator, tests) sees them.
//!
//! The engine stores values in an interned, column-typed form internally; these types are the
//! stable exchange format. `Tuple` is a plain `Vec<Value>` (cheap to build, serde-friendly).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A logical node of the deployment: an index into [`crate::deploy::Deployment::nodes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct NodeAddr(pub u32);

impl NodeAddr {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Str(Arc<str>),
    Bool(bool),
    Addr(NodeAddr),
}

/// One fact's arguments, one value per column.
pub type Tuple = Vec<Value>;

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_addr(&self) -> Option<NodeAddr> {
        match self {
            Value::Addr(a) => Some(*a),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Arc::from(s))
    }
}

impl From<NodeAddr> for Value {
    fn from(a: NodeAddr) -> Value {
        Value::Addr(a)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Formats a fact as `rel(a, b, c)`.
pub fn format_fact(relation: &str, tuple: &[Value]) -> String {
    let args: Vec<String> = tuple.iter().map(|v| v.to_string()).collect();
    format!("{relation}({})", args.join(", "))
}

/// The language's `hash`: deterministic across processes, runs and platforms (FNV-1a over a
/// canonical encoding, then a final mix), never negative. Routing does not use it (see
/// [`route_index`]).
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn int(&mut self, i: i64) {
        self.bytes(&[0]);
        self.bytes(&i.to_le_bytes());
    }
    pub fn string(&mut self, s: &str) {
        self.bytes(&[1]);
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
    }
    pub fn bool(&mut self, b: bool) {
        self.bytes(&[2, b as u8]);
    }
    pub fn addr(&mut self, a: NodeAddr) {
        self.bytes(&[3]);
        self.bytes(&a.0.to_le_bytes());
    }
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Int(i) => self.int(*i),
            Value::Str(s) => self.string(s),
            Value::Bool(b) => self.bool(*b),
            Value::Addr(a) => self.addr(*a),
        }
    }
    pub fn finish(&self) -> i64 {
        // splitmix64 finaliser: FNV alone mixes the high bits poorly, and `hash % n` uses the low ones.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 1) as i64
    }
}

/// `hash(values...)` as the language defines it.
pub fn stable_hash(values: &[Value]) -> i64 {
    let mut h = StableHasher::default();
    for v in values {
        h.value(v);
    }
    h.finish()
}

/// Which of `n` instances of a partitioned node holds the facts whose partition key is `key`.
///
/// Independent of the language's `hash`: a program that shards by `hash(k) % n` itself and is
/// then partitioned by `k` would otherwise send every key of its shard `j` to instance `j` (all
/// keys a node sees agree on `hash(k) % n`), leaving the other instances idle. So: another seed,
/// another mixing (word-wise murmur3 finalisers, not byte-wise FNV), and the range reduction
/// takes the high bits (`h * n >> 64`) where `hash(k) % n` takes the low ones. Every node, the
/// load generator, the simulator and the explorer must agree, so it is fixed arithmetic over
/// the canonical encoding of the values, the same on every platform.
pub fn route_index(key: &[Value], n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h = RouteHasher(0x243f_6a88_85a3_08d3);
    for v in key {
        h.value(v);
    }
    ((h.finish() as u128 * n as u128) >> 64) as usize
}

struct RouteHasher(u64);

fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

impl RouteHasher {
    fn word(&mut self, w: u64) {
        // The added odd constant keeps a zero state from absorbing zero words unchanged.
        self.0 = fmix64((self.0 ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15));
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Int(i) => {
                self.word(0);
                self.word(*i as u64);
            }
            Value::Str(s) => {
                self.word(1);
                self.word(s.len() as u64);
                for chunk in s.as_bytes().chunks(8) {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    self.word(u64::from_le_bytes(w));
                }
            }
            Value::Bool(b) => {
                self.word(2);
                self.word(*b as u64);
            }
            Value::Addr(a) => {
                self.word(3);
                self.word(a.0 as u64);
            }
        }
    }
    fn finish(&self) -> u64 {
        fmix64(self.0 ^ 0x1319_8a2e_0370_7344)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fixed_and_non_negative() {
        // Pinned values: a change here changes routing of every partitioned deployment.
        let h = stable_hash(&[Value::Int(1)]);
        assert_eq!(h, stable_hash(&[Value::Int(1)]));
        assert_ne!(h, stable_hash(&[Value::Int(2)]));
        assert_ne!(stable_hash(&[Value::str("1")]), h);
        for i in 0..1000 {
            assert!(stable_hash(&[Value::Int(i), Value::str("x")]) >= 0);
        }
        insta::assert_snapshot!(format!("{h} {}", stable_hash(&[Value::str("abc"), Value::Bool(true)])), @"3681113839565913640 4067286735201759826");
    }

    #[test]
    fn hash_spreads_low_bits() {
        let mut buckets = [0u32; 4];
        for i in 0..4000 {
            buckets[(stable_hash(&[Value::Int(i)]) % 4) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 800), "{buckets:?}");
    }

    #[test]
    fn routing_is_fixed_and_spreads_keys() {
        // Pinned: a change here moves every key of every partitioned deployment.
        let pinned: Vec<usize> = (0..12).map(|i| route_index(&[Value::Int(i)], 8)).collect();
        insta::assert_snapshot!(format!("{pinned:?} {}", route_index(&[Value::str("abc")], 1000)), @"[2, 3, 7, 0, 4, 5, 2, 6, 6, 1, 0, 1] 383");
        for n in [2usize, 3, 4, 7, 16] {
            let mut buckets = vec![0u32; n];
            for i in 0..8000 {
                buckets[route_index(&[Value::Int(i)], n)] += 1;
            }
            let expect = 8000 / n as u32;
            assert!(buckets.iter().all(|&b| b > expect * 8 / 10 && b < expect * 12 / 10), "{n}: {buckets:?}");
        }
    }

    #[test]
    fn routing_is_independent_of_the_language_hash() {
        // Keys a program sharded to its shard j by `hash(k) % 4`: routing still spreads them
        // evenly over 4 instances, for int and string keys.
        for j in 0..4 {
            let mut buckets = [0u32; 4];
            let keys = (0..40_000i64).map(Value::Int).chain((0..40_000).map(|i| Value::str(&format!("user{i}"))));
            for k in keys.filter(|k| stable_hash(std::slice::from_ref(k)) % 4 == j) {
                buckets[route_index(std::slice::from_ref(&k), 4)] += 1;
            }
            let total: u32 = buckets.iter().sum();
            assert!(buckets.iter().all(|&b| b * 5 > total), "shard {j}: {buckets:?}");
        }
    }
}
