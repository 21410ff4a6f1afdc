//! Push endpoints are chosen by whoever holds an account, so they are checked before they are
//! stored and again before every request: scheme, shape, host allow-list, port, and (here, for
//! literal addresses; in `guard` for resolved ones) whether the address is public. This is the
//! one owner of the policy: the Lua module asks `check_endpoint` at enable time, the sender
//! applies the same policy when it sends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use ureq::http::Uri;

pub const MAX_ENDPOINT_LEN: usize = 2048;

/// Which endpoints may be contacted.
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicy {
    /// Allows `http://` and loopback or private addresses: tests and private push services only.
    pub allow_insecure: bool,
    /// When set, the only host names allowed: exact names or `*.suffix` patterns, each
    /// optionally with `:port` (without one, port 443). Made from strings with `.into()`.
    pub hosts: Option<Vec<HostEntry>>,
}

/// Why an endpoint was refused, split the way the enable IQ answers: malformed input is a
/// `bad-request`, a well-formed URL that policy refuses is `not-acceptable`.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum EndpointError {
    #[error("endpoint is missing")]
    Missing,
    #[error("endpoint is longer than {MAX_ENDPOINT_LEN} bytes")]
    TooLong,
    #[error("endpoint is not an absolute URL")]
    NotAbsoluteUrl,
    #[error("endpoint must not contain user information")]
    HasUserInfo,
    #[error("endpoint must use https")]
    NotHttps,
    #[error("endpoint host is not a public address")]
    NotPublic,
    #[error("endpoint host is not in web_push_endpoint_hosts")]
    HostNotAllowed,
    #[error("endpoint port is not 443 and not named in web_push_endpoint_hosts")]
    PortNotAllowed,
}

impl EndpointError {
    /// The XMPP stanza error condition for this refusal.
    pub fn condition(&self) -> &'static str {
        match self {
            EndpointError::Missing
            | EndpointError::TooLong
            | EndpointError::NotAbsoluteUrl
            | EndpointError::HasUserInfo => "bad-request",
            EndpointError::NotHttps
            | EndpointError::NotPublic
            | EndpointError::HostNotAllowed
            | EndpointError::PortNotAllowed => "not-acceptable",
        }
    }
}

/// A parsed endpoint that passed the policy.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: Uri,
    /// `scheme://host[:port]`, the VAPID audience (RFC 8292 section 2: no path, no trailing slash).
    pub origin: String,
    pub host: String,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// The host as an address when it is an IP literal (`[v6]` or dotted v4).
fn literal_address(host: &str) -> Option<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse().ok()
}

/// The port every https endpoint may use.
const HTTPS_PORT: u16 = 443;

/// An entry of the host list, read once: a name or `*.suffix` (lower case, without a trailing
/// dot), and the port it allows (443 when none is named). `[v6]:port` keeps its brackets in the
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pattern: String,
    port: Option<u16>,
}

impl From<&str> for HostEntry {
    fn from(entry: &str) -> Self {
        let entry = entry.trim();
        let split = entry.rsplit_once(':').and_then(|(name, port)| {
            let bracketed_or_plain = !name.contains(':') || name.ends_with(']');
            let port = port.parse::<u16>().ok()?;
            (bracketed_or_plain && !name.is_empty()).then_some((name, Some(port)))
        });
        let (name, port) = split.unwrap_or((entry, None));
        Self {
            pattern: name.trim().trim_end_matches('.').to_ascii_lowercase(),
            port,
        }
    }
}

impl From<String> for HostEntry {
    fn from(entry: String) -> Self {
        Self::from(entry.as_str())
    }
}

impl HostEntry {
    /// Whether `host` (lower case, without a trailing dot) is this name or under this suffix.
    fn matches(&self, host: &str) -> bool {
        match self.pattern.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => host == self.pattern,
        }
    }

    fn allows(&self, port: u16) -> bool {
        self.port.unwrap_or(HTTPS_PORT) == port
    }
}

impl EndpointPolicy {
    pub fn check(&self, text: &str) -> Result<Endpoint, EndpointError> {
        if text.trim().is_empty() {
            return Err(EndpointError::Missing);
        }
        if text.len() > MAX_ENDPOINT_LEN {
            return Err(EndpointError::TooLong);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EndpointError::NotAbsoluteUrl);
        }
        let uri: Uri = text.parse().map_err(|_| EndpointError::NotAbsoluteUrl)?;
        let scheme = uri
            .scheme_str()
            .ok_or(EndpointError::NotAbsoluteUrl)?
            .to_ascii_lowercase();
        let authority = uri.authority().ok_or(EndpointError::NotAbsoluteUrl)?;
        if authority.as_str().contains('@') {
            return Err(EndpointError::HasUserInfo);
        }
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(EndpointError::NotAbsoluteUrl);
        }
        match scheme.as_str() {
            "https" => {}
            "http" if self.allow_insecure => {}
            // An absolute URL of another scheme is well-formed, just not acceptable.
            _ => return Err(EndpointError::NotHttps),
        }
        if !self.allow_insecure {
            if let Some(address) = literal_address(&host) {
                if !is_public(address) {
                    return Err(EndpointError::NotPublic);
                }
            } else if host == "localhost" || host.ends_with(".localhost") {
                return Err(EndpointError::NotPublic);
            }
        }
        let port = authority.port_u16().unwrap_or(default_port(&scheme));
        if let Some(entries) = &self.hosts {
            let mut matching = entries
                .iter()
                .filter(|entry| entry.matches(&host))
                .peekable();
            if matching.peek().is_none() {
                return Err(EndpointError::HostNotAllowed);
            }
            if !self.allow_insecure && !matching.any(|entry| entry.allows(port)) {
                return Err(EndpointError::PortNotAllowed);
            }
        } else if !self.allow_insecure && port != HTTPS_PORT {
            return Err(EndpointError::PortNotAllowed);
        }
        let origin = if port == default_port(&scheme) {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        Ok(Endpoint { uri, origin, host })
    }
}

/// Whether an address is public unicast: everything that is not loopback, private, link-local,
/// shared (CGNAT), multicast, unspecified, documentation, benchmarking, reserved, or an IPv6 form
/// that embeds or translates to IPv4 (mapped, compatible, 6to4, NAT64, Teredo).
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let refused = a == 0                                   // "this network"
        || a == 10                                         // private
        || (a == 100 && (64..128).contains(&b))            // shared address space (CGNAT)
        || a == 127                                        // loopback
        || (a == 169 && b == 254)                          // link-local
        || (a == 172 && (16..32).contains(&b))             // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                // 6to4 relay anycast
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (b == 18 || b == 19))              // benchmarking
        || (a == 198 && b == 51 && c == 100)               // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    // Only global unicast (2000::/3) can be public at all.
    if segments[0] & 0xe000 != 0x2000 {
        return false;
    }
    let refused = match segments[0] {
        // 2001::/23 (Teredo, ORCHID and other protocol assignments) and 2001:db8::/32
        // (documentation).
        0x2001 => segments[1] < 0x0200 || segments[1] == 0x0db8,
        // 6to4, which embeds an IPv4 address of any kind.
        0x2002 => true,
        // 3fff::/20, documentation.
        first => first & 0xfff0 == 0x3ff0,
    };
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> EndpointPolicy {
        EndpointPolicy::default()
    }

    #[test]
    fn origin_is_the_vapid_audience() {
        let check = |url: &str| strict().check(url).expect(url).origin;
        assert_eq!(
            check("https://fcm.googleapis.com/fcm/send/abc"),
            "https://fcm.googleapis.com"
        );
        assert_eq!(
            check("https://Push.Example.NET:443/x"),
            "https://push.example.net"
        );
        let insecure = EndpointPolicy {
            allow_insecure: true,
            hosts: None,
        };
        assert_eq!(
            insecure
                .check("https://push.example.net:8443/x?y=1")
                .expect("any port when insecure")
                .origin,
            "https://push.example.net:8443"
        );
        assert_eq!(
            check("https://push.example.net./x"),
            "https://push.example.net"
        );
    }

    #[test]
    fn refuses_what_is_not_an_https_url() {
        let err = |url: &str| strict().check(url).unwrap_err();
        assert_eq!(err(""), EndpointError::Missing);
        assert_eq!(err("/relative/path"), EndpointError::NotAbsoluteUrl);
        assert_eq!(err("push.example.net/x"), EndpointError::NotAbsoluteUrl);
        assert_eq!(err("ftp://push.example.net/x"), EndpointError::NotHttps);
        assert_eq!(err("wss://push.example.net/x"), EndpointError::NotHttps);
        assert_eq!(
            err("https://push.example.net/a b"),
            EndpointError::NotAbsoluteUrl
        );
        assert_eq!(err("http://push.example.net/x"), EndpointError::NotHttps);
        assert_eq!(
            err("https://user:pw@push.example.net/x"),
            EndpointError::HasUserInfo
        );
        assert_eq!(
            err(&format!("https://push.example.net/{}", "a".repeat(3000))),
            EndpointError::TooLong
        );
        assert_eq!(
            err("http://push.example.net/x").condition(),
            "not-acceptable"
        );
        assert_eq!(err("nonsense").condition(), "bad-request");
    }

    #[test]
    fn refuses_literal_addresses_that_are_not_public() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/x",
            "https://localhost/x",
            "https://a.localhost/x",
            "https://0.0.0.0/x",
        ] {
            assert_eq!(
                strict().check(url).unwrap_err(),
                EndpointError::NotPublic,
                "{url}"
            );
        }
        assert!(strict().check("https://8.8.8.8/x").is_ok());
        assert!(strict().check("https://[2a00:1450:4001::1]/x").is_ok());
    }

    #[test]
    fn insecure_mode_allows_loopback_http() {
        let policy = EndpointPolicy {
            allow_insecure: true,
            hosts: None,
        };
        assert_eq!(
            policy
                .check("http://127.0.0.1:8080/push/1")
                .expect("ok")
                .origin,
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn host_allow_list() {
        let policy = EndpointPolicy {
            allow_insecure: false,
            hosts: Some(vec!["fcm.googleapis.com".into(), "*.push.apple.com".into()]),
        };
        assert!(policy
            .check("https://fcm.googleapis.com/fcm/send/x")
            .is_ok());
        assert!(policy.check("https://web.push.apple.com/x").is_ok());
        assert!(policy.check("https://a.b.push.apple.com/x").is_ok());
        for url in [
            "https://push.apple.com/x",
            "https://evilpush.apple.com/x",
            "https://fcm.googleapis.com.evil.net/x",
        ] {
            assert_eq!(
                policy.check(url).unwrap_err(),
                EndpointError::HostNotAllowed,
                "{url}"
            );
        }
    }

    #[test]
    fn only_port_443_unless_an_entry_names_another() {
        let strict = strict();
        let listed = EndpointPolicy {
            allow_insecure: false,
            hosts: Some(vec![
                "push.example.net:8443".into(),
                "*.push.example.org:4443".into(),
                "fcm.googleapis.com".into(),
                "[2001:4860::1]:8443".into(),
            ]),
        };
        let insecure = EndpointPolicy {
            allow_insecure: true,
            hosts: Some(vec!["localhost".into()]),
        };
        let port = Some(EndpointError::PortNotAllowed);
        let host = Some(EndpointError::HostNotAllowed);
        for (policy, url, refusal) in [
            (&strict, "https://push.example.net:443/x", None),
            (&strict, "https://push.example.net:25/x", port),
            (&strict, "https://push.example.net:8443/x", port),
            (&listed, "https://push.example.net:8443/x", None),
            (&listed, "https://push.example.net/x", port),
            (&listed, "https://push.example.net:8444/x", port),
            (&listed, "https://a.push.example.org:4443/x", None),
            (&listed, "https://a.push.example.org/x", port),
            (&listed, "https://fcm.googleapis.com/x", None),
            (&listed, "https://fcm.googleapis.com:8443/x", port),
            (&listed, "https://[2001:4860::1]:8443/x", None),
            (&listed, "https://other.example.net:8443/x", host),
            (&insecure, "https://localhost:38123/x", None),
            (&insecure, "http://localhost:8080/x", None),
        ] {
            assert_eq!(policy.check(url).err(), refusal, "{url}");
        }
        assert_eq!(EndpointError::PortNotAllowed.condition(), "not-acceptable");
    }

    #[test]
    fn host_entries_split_into_name_and_port() {
        let entry = |pattern: &str, port: Option<u16>| HostEntry {
            pattern: pattern.into(),
            port,
        };
        for (text, read) in [
            ("a.example:8443", entry("a.example", Some(8443))),
            (" *.example:443 ", entry("*.example", Some(443))),
            ("a.example", entry("a.example", None)),
            ("a.example:http", entry("a.example:http", None)),
            ("[::1]:8443", entry("[::1]", Some(8443))),
            ("::1", entry("::1", None)),
            (":443", entry(":443", None)),
            ("Push.Example.NET.", entry("push.example.net", None)),
        ] {
            assert_eq!(HostEntry::from(text), read, "{text}");
        }
    }

    #[test]
    fn classifies_addresses() {
        let public = [
            "1.1.1.1",
            "8.8.4.4",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "2606:4700::1111",
        ];
        let private = [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:808:808::1",
            "3fff::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ];
        for a in public {
            assert!(is_public(a.parse().expect(a)), "{a} should be public");
        }
        for a in private {
            assert!(!is_public(a.parse().expect(a)), "{a} should not be public");
        }
    }
}
