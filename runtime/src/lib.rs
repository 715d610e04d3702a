//! compart runtime (see README.md).

pub mod cluster;
pub mod deploy;
pub mod durability;
pub mod engine;
pub mod explore;
pub mod k8s;
pub mod loadgen;
pub mod log;
pub mod net;
pub mod options;
pub mod report;
pub mod sim;
pub mod value;

/// Bytes as lower-case hex: cluster secrets handed to child processes, program and config hashes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use deploy::{Deployment, NodeSpec};
pub use engine::{route, CompiledProgram, Node, TickOutput};
pub use value::{NodeAddr, Tuple, Value};
