//! One POST to a push service (RFC 8030 section 5) and the reading of its answer.

use std::io::Read;
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::{Connector, NativeTlsConnector};
use ureq::{Agent, Body};

use crate::clock::unix_now;
use crate::guard::{self, PublicAddressResolver};
use crate::limits::Urgency;
use crate::outcome::Attempt;
use crate::retry_after::parse_retry_after;
use crate::transport::{set_deadline, DeadlineTcpConnector};

/// Push services answer with a few bytes of JSON at most; anything longer is not read.
const MAX_ANSWER_BYTES: u64 = 4096;
const MAX_REASON_CHARS: usize = 120;

/// What one request needs besides the encrypted body.
pub struct PushHeaders<'a> {
    pub authorization: &'a str,
    /// Seconds the push service may keep the message: what is left of the push's TTL.
    pub ttl: u64,
    pub urgency: Option<Urgency>,
    /// RFC 8030 section 5.4: 32 of `[0-9a-f]`, the conversation's keyed hash.
    pub topic: &'a str,
}

/// The push service's answer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub attempt: Attempt,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// A short text for the log: never the URL, a key or the payload.
    pub reason: String,
}

impl Answer {
    /// Not sent, for `reason` (a refusal's error, as its message says it).
    pub fn not_sent(reason: impl std::fmt::Display) -> Self {
        Self {
            attempt: Attempt::NotSent,
            status: None,
            retry_after: None,
            reason: reason.to_string(),
        }
    }
}

pub struct HttpClient {
    agent: Agent,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(timeout: Duration, allow_insecure: bool) -> Self {
        Self::with_resolver(timeout, PublicAddressResolver::new(allow_insecure))
    }

    pub fn with_resolver(timeout: Duration, resolver: impl Resolver) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // An environment proxy would connect on our behalf, past the address check.
            .proxy(None)
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .timeout_resolve(Some(timeout))
            .max_idle_connections_per_host(4)
            .max_idle_age(Duration::from_secs(60))
            .user_agent(concat!("mod_web_push/", env!("CARGO_PKG_VERSION")))
            .build();
        // TCP with the deadline below, TLS above: see `transport`.
        let connector = DeadlineTcpConnector.chain(NativeTlsConnector::default());
        Self {
            agent: Agent::with_parts(config, connector, resolver),
            timeout,
        }
    }

    /// Sends and classifies. Returns by the timeout, whatever the push service does.
    pub fn post(&self, endpoint: &str, headers: &PushHeaders<'_>, body: &[u8]) -> Answer {
        let _deadline = set_deadline(Instant::now() + self.timeout);
        let mut request = self
            .agent
            .post(endpoint)
            .header("TTL", headers.ttl.to_string())
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", headers.authorization);
        if let Some(urgency) = headers.urgency {
            request = request.header("Urgency", urgency.as_str());
        }
        request = request.header("Topic", headers.topic);
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, unix_now()))
                    .map(Duration::from_secs);
                let attempt = Attempt::from_status(status);
                let reason = if attempt == Attempt::Delivered {
                    String::new()
                } else {
                    read_reason(response.body_mut())
                };
                Answer {
                    attempt,
                    status: Some(status),
                    retry_after,
                    reason,
                }
            }
            Err(error) => failure(&error),
        }
    }
}

/// The start of an error answer, as printable text, for the log.
fn read_reason(body: &mut Body) -> String {
    let mut bytes = Vec::new();
    let reader = body.with_config().limit(MAX_ANSWER_BYTES).reader();
    // A truncated or broken answer body still leaves the status to act on.
    let _ = reader.take(MAX_ANSWER_BYTES).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_REASON_CHARS)
        .collect()
}

/// A request that got no answer. The reason names the kind of failure, never the URL.
fn failure(error: &ureq::Error) -> Answer {
    if guard::is_refusal(error) {
        return Answer::not_sent("endpoint resolves to no public address");
    }
    if matches!(error, ureq::Error::BadUri(_)) {
        return Answer::not_sent("bad endpoint URL");
    }
    let reason = match error {
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Io(io_error) => format!("connection error ({:?})", io_error.kind()),
        ureq::Error::Tls(_) => "TLS failure".to_owned(),
        ureq::Error::NativeTls(_) => "TLS failure".to_owned(),
        ureq::Error::Protocol(_) => "malformed HTTP answer".to_owned(),
        _ => "request failed".to_owned(),
    };
    Answer {
        attempt: Attempt::Network {
            timed_out: matches!(error, ureq::Error::Timeout(_)),
        },
        status: None,
        retry_after: None,
        reason,
    }
}
