//! Mutual authentication with a shared cluster secret: each side MACs the other's random nonce
//! (HMAC-SHA256), so a peer that does not know the secret cannot join, and a replayed handshake
//! fails because nonces are fresh. Without a secret the MACs are all zeros and always match.
//!
//! Both MACs also name who is being talked to, as TLS binds the server's name: a Hello covers the
//! dialled node's id and the address the dialler dialled, a Welcome the acceptor's id. Otherwise a
//! Hello is valid at any node holding the secret, and a process that binds a down node's port can
//! relay another node's challenge to a dialler and its Hello back, and then speak as the dialler.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::codec::{Mac, Nonce};

/// Everything a Hello's MAC covers. The acceptor rebuilds it with its own id and listen address,
/// so a Hello computed for another node, or for this node at another address, fails.
#[derive(Clone, Debug)]
pub struct HelloBinding {
    /// The acceptor's challenge (freshness: no replays).
    pub challenge: Nonce,
    pub from: u32,
    pub incarnation: u64,
    /// The dialler's nonce, which the Welcome answers.
    pub nonce: Nonce,
    /// The first data sequence number the dialler may send on this connection (its oldest
    /// unacknowledged frame); the acceptor's duplicate filter starts no lower than this.
    pub first_seq: u64,
    /// The node being dialled and the address it was dialled at, as the deployment names it
    /// (`host:port`, from the dialler's peer table; `net::HostPort`'s text).
    pub to: u32,
    pub to_addr: String,
}

/// Everything a Welcome's MAC covers: the whole handshake and the resume point.
#[derive(Clone, Debug)]
pub struct WelcomeBinding {
    pub challenge: Nonce,
    /// The dialler's nonce from its Hello.
    pub nonce: Nonce,
    pub from: u32,
    /// The acceptor's id: a dialler only believes a Welcome from the node it dialled.
    pub to: u32,
    pub resume_from: u64,
}

/// Fixed-width fields, and the address last with its length, so no two bindings encode alike.
fn push_addr(out: &mut Vec<u8>, addr: &str) {
    out.extend_from_slice(&(addr.len() as u32).to_le_bytes());
    out.extend_from_slice(addr.as_bytes());
}

impl HelloBinding {
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(128);
        m.extend_from_slice(b"compart-hello/3");
        m.extend_from_slice(&self.challenge);
        m.extend_from_slice(&self.from.to_le_bytes());
        m.extend_from_slice(&self.incarnation.to_le_bytes());
        m.extend_from_slice(&self.nonce);
        m.extend_from_slice(&self.first_seq.to_le_bytes());
        m.extend_from_slice(&self.to.to_le_bytes());
        push_addr(&mut m, &self.to_addr);
        m
    }
}

impl WelcomeBinding {
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(96);
        m.extend_from_slice(b"compart-welcome/2");
        m.extend_from_slice(&self.challenge);
        m.extend_from_slice(&self.nonce);
        m.extend_from_slice(&self.from.to_le_bytes());
        m.extend_from_slice(&self.to.to_le_bytes());
        m.extend_from_slice(&self.resume_from.to_le_bytes());
        m
    }
}

#[derive(Clone)]
pub struct Secret(Option<std::sync::Arc<[u8]>>);

impl Secret {
    pub fn none() -> Self {
        Secret(None)
    }
    pub fn new(bytes: &[u8]) -> Self {
        Secret(if bytes.is_empty() { None } else { Some(bytes.into()) })
    }
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The dialler's proof.
    pub fn hello_mac(&self, b: &HelloBinding) -> Mac {
        self.mac(&b.message())
    }

    /// The acceptor's proof.
    pub fn welcome_mac(&self, b: &WelcomeBinding) -> Mac {
        self.mac(&b.message())
    }

    pub fn verify_hello(&self, b: &HelloBinding, mac: &Mac) -> bool {
        self.verify(&b.message(), mac)
    }

    pub fn verify_welcome(&self, b: &WelcomeBinding, mac: &Mac) -> bool {
        self.verify(&b.message(), mac)
    }

    /// Constant-time check (hmac's `verify_slice`).
    fn verify(&self, message: &[u8], mac: &Mac) -> bool {
        match &self.0 {
            None => true,
            Some(key) => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                m.update(message);
                m.verify_slice(mac).is_ok()
            }
        }
    }

    fn mac(&self, message: &[u8]) -> Mac {
        match &self.0 {
            None => [0; 32],
            Some(key) => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                m.update(message);
                m.finalize().into_bytes().into()
            }
        }
    }
}

pub fn random_nonce() -> Nonce {
    let mut n = [0u8; 16];
    // getrandom only fails when the OS has no entropy source; a time-derived nonce still differs
    // between handshakes, which is all the challenge needs to stop replays.
    if getrandom::fill(&mut n).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        n[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(to: u32, to_addr: &str) -> HelloBinding {
        HelloBinding {
            challenge: random_nonce(),
            from: 2,
            incarnation: 7,
            nonce: random_nonce(),
            first_seq: 1,
            to,
            to_addr: to_addr.parse().unwrap(),
        }
    }

    #[test]
    fn macs_verify_only_with_the_same_secret() {
        let a = Secret::new(b"s3cret");
        let b = Secret::new(b"other");
        let h = hello(1, "127.0.0.1:7000");
        let mac = a.hello_mac(&h);
        assert!(a.verify_hello(&h, &mac));
        assert!(!b.verify_hello(&h, &mac));
        assert!(!a.verify_hello(&HelloBinding { from: 3, ..h.clone() }, &mac), "identity is covered by the MAC");
        assert!(!a.verify_hello(&HelloBinding { incarnation: 8, ..h.clone() }, &mac));
        assert!(!a.verify_hello(&HelloBinding { first_seq: 9, ..h.clone() }, &mac), "so is the sequence base");
        assert!(
            !a.verify_hello(&HelloBinding { challenge: random_nonce(), ..h.clone() }, &mac),
            "a replay on a new challenge fails"
        );
        assert!(Secret::none().verify_hello(&h, &[0; 32]));
    }

    #[test]
    fn a_hello_for_one_node_is_refused_at_another() {
        let s = Secret::new(b"s3cret");
        let for_b = hello(1, "127.0.0.1:7001");
        let mac = s.hello_mac(&for_b);
        // Node 2 verifies with its own id and listen address.
        assert!(
            !s.verify_hello(&HelloBinding { to: 2, to_addr: "127.0.0.1:7002".parse().unwrap(), ..for_b.clone() }, &mac)
        );
        // Right id, but dialled at another address (someone else's port).
        assert!(!s.verify_hello(&HelloBinding { to_addr: "127.0.0.1:7002".parse().unwrap(), ..for_b.clone() }, &mac));
        assert!(!s.verify_hello(&HelloBinding { to_addr: "[::1]:7001".parse().unwrap(), ..for_b.clone() }, &mac));
        assert!(!s.verify_hello(&HelloBinding { to: 2, ..for_b.clone() }, &mac));
    }

    #[test]
    fn a_welcome_names_the_acceptor() {
        let s = Secret::new(b"s3cret");
        let w = WelcomeBinding { challenge: random_nonce(), nonce: random_nonce(), from: 0, to: 1, resume_from: 4 };
        let mac = s.welcome_mac(&w);
        assert!(s.verify_welcome(&w, &mac));
        assert!(!s.verify_welcome(&WelcomeBinding { to: 2, ..w.clone() }, &mac));
        assert!(!s.verify_welcome(&WelcomeBinding { resume_from: 5, ..w.clone() }, &mac));
        assert!(!s.verify_welcome(&WelcomeBinding { nonce: random_nonce(), ..w.clone() }, &mac));
    }
}
