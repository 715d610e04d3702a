//! Peer addresses as a deployment names them: an IP literal or a DNS name, and a port.
//!
//! A name is resolved when it is dialled, and again on every reconnect, so a peer that comes
//! back at another IP (a restarted Kubernetes pod) is found again. The text form is what the
//! handshake binds (see `auth.rs`): both sides take it from the same deployment file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// An IP literal (IPv6 without brackets) or a DNS name.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; `default_port` when none is given.
    /// A bare IPv6 literal (several colons, no brackets) is taken as a host without port.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<HostPort, String> {
        let text = text.trim();
        let no_port = || format!("`{text}` names no port and none is configured");
        let port_of =
            |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("`{text}`: `{p}` is not a port"));
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{text}`: `{v6}` is not an IPv6 address"));
            }
            match after {
                "" => (v6, default_port.ok_or_else(no_port)?),
                _ => match after.strip_prefix(':') {
                    Some(p) => (v6, port_of(p)?),
                    None => return Err(format!("`{text}`: expected `:port` after `]`")),
                },
            }
        } else if text.matches(':').count() > 1 {
            if text.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{text}` is not an address (write IPv6 as `[addr]:port`)"));
            }
            (text, default_port.ok_or_else(no_port)?)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, port_of(p)?),
                None => (text, default_port.ok_or_else(no_port)?),
            }
        };
        if host.is_empty() {
            return Err(format!("`{text}`: empty host"));
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
            return Err(format!("`{text}`: `{host}` is neither an IP address nor a DNS name"));
        }
        Ok(HostPort { host: host.to_string(), port })
    }

    /// The address when the host is an IP literal.
    pub fn socket(&self) -> Option<SocketAddr> {
        self.host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// 127.0.0.0/8, ::1, or the name `localhost`: what needs no cluster secret.
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(a: SocketAddr) -> HostPort {
        HostPort { host: a.ip().to_string(), port: a.port() }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_ipv6() {
        let p = |s: &str| HostPort::parse(s, Some(7000)).map(|h| h.to_string());
        assert_eq!(p("198.18.0.10").unwrap(), "198.18.0.10:7000");
        assert_eq!(p("198.18.0.11:7300").unwrap(), "198.18.0.11:7300");
        assert_eq!(p("[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(p("[fd00::2]").unwrap(), "[fd00::2]:7000");
        assert_eq!(p("fd00::2").unwrap(), "[fd00::2]:7000");
        assert_eq!(p("a-0.paxos.default.svc.cluster.local").unwrap(), "a-0.paxos.default.svc.cluster.local:7000");
        for bad in ["", "h:0", "h:70000", "h:x", "[::1", "[zz]:1", "[::1]x", "a b", "1:2:3:zz", ":7"] {
            assert!(HostPort::parse(bad, Some(1)).is_err(), "{bad}");
        }
        assert!(HostPort::parse("h", None).unwrap_err().contains("no port"));
        assert_eq!(HostPort::from("127.0.0.1:5".parse::<SocketAddr>().unwrap()), HostPort::new("127.0.0.1", 5));
    }

    #[test]
    fn loopback() {
        for (s, l) in [("127.0.0.1:1", true), ("127.9.9.9:1", true), ("[::1]:1", true), ("localhost:1", true)] {
            assert_eq!(HostPort::parse(s, None).unwrap().is_loopback(), l, "{s}");
        }
        for s in ["198.18.0.1:1", "0.0.0.0:1", "example.org:1", "[fd00::1]:1", "localhost.example:1"] {
            assert!(!HostPort::parse(s, None).unwrap().is_loopback(), "{s}");
        }
    }
}
