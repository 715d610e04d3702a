//! The wire format: length-delimited frames, each `[version: u8][postcard body]`.
//!
//! A frame that is too large, has another version or does not decode is an error for the
//! connection (the caller logs it and drops the connection); decoding never panics.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Bumped whenever [`Frame`] or a payload type changes shape, or what a handshake MAC covers.
/// 2: Hello carries `first_seq`; both MACs name the node dialled (see `auth`).
pub const WIRE_VERSION: u8 = 2;

/// Default limit on one frame's length (after the 4-byte length prefix).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Limit on frames before authentication, both ways: handshake frames are under 100 bytes, and
/// the framing codec reserves a frame's announced length before it arrives, so an unauthenticated
/// peer must not get the full limit.
pub const HANDSHAKE_MAX_FRAME_BYTES: usize = 256;

pub type Nonce = [u8; 16];
pub type Mac = [u8; 32];

/// Everything that travels on a connection. Connections are one-way for data: the dialing peer
/// sends `Hello` and `Data`; the accepting peer sends `Challenge`, `Welcome` and `Ack`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Frame<M> {
    /// First frame from the acceptor: the dialer must MAC this nonce with the cluster secret.
    Challenge { nonce: Nonce },
    /// The dialer's identity. `incarnation` changes when the dialer's process restarts, which
    /// resets the receiver's duplicate filter for it; `first_seq` is its oldest unacknowledged
    /// frame. The MAC also covers the node dialled (`auth::HelloBinding`).
    Hello { from: u32, incarnation: u64, nonce: Nonce, first_seq: u64, mac: Mac },
    /// The acceptor processed every frame up to `resume_from`; the dialer retransmits the rest.
    Welcome { resume_from: u64, mac: Mac },
    /// One batch of messages (one per destination per tick), numbered per connection direction.
    Data { from: u32, seq: u64, batch: Vec<M> },
    /// Every `Data` frame up to `upto` was processed: the dialer may forget it.
    Ack { upto: u64 },
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    WrongVersion(u8),
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty frame"),
            DecodeError::WrongVersion(v) => write!(f, "wire version {v}, expected {WIRE_VERSION}"),
            DecodeError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encode a frame body (without the length prefix, which the framing codec adds).
pub fn encode<M: Serialize>(frame: &Frame<M>) -> Bytes {
    let mut buf = Vec::with_capacity(64);
    buf.push(WIRE_VERSION);
    // Serializing into a Vec cannot fail for our types (no maps with non-string keys etc.);
    // an error here would be a bug in a payload type, so report it as an empty body that the
    // receiver rejects rather than panicking.
    match postcard::to_extend(frame, buf) {
        Ok(v) => Bytes::from(v),
        Err(_) => Bytes::from_static(&[]),
    }
}

/// Decode a frame body; any byte string gives a value or an error, never a panic.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<Frame<M>, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != WIRE_VERSION {
        return Err(DecodeError::WrongVersion(version));
    }
    let (frame, rest) =
        postcard::take_from_bytes::<Frame<M>>(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Msg = (u32, Vec<String>);

    #[test]
    fn round_trip() {
        let f: Frame<Msg> = Frame::Data { from: 3, seq: 9, batch: vec![(1, vec!["a".into(), "bc".into()])] };
        let bytes = encode(&f);
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode::<Msg>(&bytes), Ok(f));
    }

    #[test]
    fn wrong_version_is_rejected() {
        let mut bytes = encode::<Msg>(&Frame::Ack { upto: 1 }).to_vec();
        bytes[0] = WIRE_VERSION + 1;
        assert_eq!(decode::<Msg>(&bytes), Err(DecodeError::WrongVersion(WIRE_VERSION + 1)));
        assert_eq!(decode::<Msg>(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator: garbage bodies of many lengths, with and without the
        // right version byte, must decode to an error or a value, never panic or allocate wildly.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in 0..2000usize {
            let mut bytes = Vec::with_capacity(len + 1);
            bytes.push(if len % 2 == 0 { WIRE_VERSION } else { (len % 256) as u8 });
            for _ in 0..len % 97 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            let _ = decode::<Msg>(&bytes);
        }
        // A huge announced vector length must not allocate it up front.
        let bytes = [WIRE_VERSION, 3, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<Msg>(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode::<Msg>(&Frame::Ack { upto: 1 }).to_vec();
        bytes.push(0);
        assert!(matches!(decode::<Msg>(&bytes), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn handshake_frames_fit_the_pre_authentication_limit() {
        let n = [0xff; 16];
        let frames: [Frame<Msg>; 3] = [
            Frame::Challenge { nonce: n },
            Frame::Hello { from: u32::MAX, incarnation: u64::MAX, nonce: n, first_seq: u64::MAX, mac: [0xff; 32] },
            Frame::Welcome { resume_from: u64::MAX, mac: [0xff; 32] },
        ];
        for f in &frames {
            assert!(encode(f).len() <= HANDSHAKE_MAX_FRAME_BYTES, "{f:?}");
        }
    }
}
