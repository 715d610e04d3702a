//! Mutual authentication with a shared cluster secret: each side MACs the other's random nonce
//! (HMAC-SHA256), so a peer that does not know the secret cannot join, and a replayed handshake
//! fails because nonces are fresh. Without a secret the MACs are all zeros and always match.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::codec::{Mac, Nonce};

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

    /// The dialer's proof: MAC over the acceptor's nonce and the dialer's identity.
    pub fn hello_mac(&self, challenge: &Nonce, from: u32, incarnation: u64, nonce: &Nonce) -> Mac {
        self.mac(&[b"compart-hello", challenge, &from.to_le_bytes(), &incarnation.to_le_bytes(), nonce])
    }

    /// The acceptor's proof: MAC over the dialer's nonce and the resume point it announces.
    pub fn welcome_mac(&self, nonce: &Nonce, resume_from: u64) -> Mac {
        self.mac(&[b"compart-welcome", nonce, &resume_from.to_le_bytes()])
    }

    /// Constant-time check (hmac's `verify_slice`).
    pub fn verify(&self, parts: &[&[u8]], mac: &Mac) -> bool {
        match &self.0 {
            None => true,
            Some(key) => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                for p in parts {
                    m.update(p);
                }
                m.verify_slice(mac).is_ok()
            }
        }
    }

    pub fn verify_hello(&self, challenge: &Nonce, from: u32, incarnation: u64, nonce: &Nonce, mac: &Mac) -> bool {
        self.verify(&[b"compart-hello", challenge, &from.to_le_bytes(), &incarnation.to_le_bytes(), nonce], mac)
    }

    pub fn verify_welcome(&self, nonce: &Nonce, resume_from: u64, mac: &Mac) -> bool {
        self.verify(&[b"compart-welcome", nonce, &resume_from.to_le_bytes()], mac)
    }

    fn mac(&self, parts: &[&[u8]]) -> Mac {
        match &self.0 {
            None => [0; 32],
            Some(key) => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                for p in parts {
                    m.update(p);
                }
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

    #[test]
    fn macs_verify_only_with_the_same_secret() {
        let a = Secret::new(b"s3cret");
        let b = Secret::new(b"other");
        let (c, n) = (random_nonce(), random_nonce());
        let mac = a.hello_mac(&c, 2, 7, &n);
        assert!(a.verify_hello(&c, 2, 7, &n, &mac));
        assert!(!b.verify_hello(&c, 2, 7, &n, &mac));
        assert!(!a.verify_hello(&c, 3, 7, &n, &mac), "identity is covered by the MAC");
        assert!(!a.verify_hello(&random_nonce(), 2, 7, &n, &mac), "a replay on a new challenge fails");
        assert!(Secret::none().verify_hello(&c, 2, 7, &n, &[0; 32]));
    }
}
