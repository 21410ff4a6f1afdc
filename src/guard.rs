//! The address check made at connect time. The resolver's answer is what the connector dials, so
//! filtering it here leaves no window between check and use for DNS rebinding to slip through.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use crate::endpoint::is_public;

/// Marks the I/O error returned when every resolved address was refused, so the sender can tell
/// a policy refusal from a network failure.
#[derive(Debug)]
pub struct NoPublicAddress;

impl fmt::Display for NoPublicAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("endpoint resolves to no public address")
    }
}

impl std::error::Error for NoPublicAddress {}

/// Whether a `ureq` error is this guard's refusal.
pub fn is_refusal(error: &ureq::Error) -> bool {
    matches!(error, ureq::Error::Io(io_error)
        if io_error.get_ref().is_some_and(|inner| inner.is::<NoPublicAddress>()))
}

/// Moves the public addresses to the front, in their order, and returns how many there are.
fn move_public_to_front(addresses: &mut [SocketAddr]) -> usize {
    let mut kept = 0;
    for index in 0..addresses.len() {
        let address = addresses[index];
        if is_public(address.ip()) {
            addresses[kept] = address;
            kept += 1;
        }
    }
    kept
}

/// How long a name's addresses are reused. ureq resolves before it looks in its connection pool,
/// and its default resolver starts a thread per lookup, so without this every push would pay a
/// thread and a DNS query. The public-address check still runs on every use.
const RESOLVED_FOR: Duration = Duration::from_secs(60);
/// Names are chosen by whoever subscribes, so the memory of them is bounded.
const MAX_REMEMBERED_NAMES: usize = 1024;

/// Looks names up with `inner` and keeps only public addresses (all of them when insecure
/// endpoints are allowed).
#[derive(Debug)]
pub struct PublicAddressResolver {
    inner: Box<dyn Resolver>,
    allow_insecure: bool,
    remembered: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl PublicAddressResolver {
    pub fn new(allow_insecure: bool) -> Self {
        Self::with_inner(Box::new(DefaultResolver::default()), allow_insecure)
    }

    /// With another name lookup, for tests that make names resolve where they need.
    pub fn with_inner(inner: Box<dyn Resolver>, allow_insecure: bool) -> Self {
        Self {
            inner,
            allow_insecure,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    fn lookup(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let name = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => return self.inner.resolve(uri, config, timeout),
        };
        let now = Instant::now();
        {
            let remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, addresses)) = remembered.get(&name) {
                if now.duration_since(*at) < RESOLVED_FOR {
                    let mut copy = self.empty();
                    for address in addresses {
                        copy.push(*address);
                    }
                    return Ok(copy);
                }
            }
        }
        let addresses = self.inner.resolve(uri, config, timeout)?;
        let mut remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        if remembered.len() >= MAX_REMEMBERED_NAMES {
            remembered.retain(|_, (at, _)| now.duration_since(*at) < RESOLVED_FOR);
            if remembered.len() >= MAX_REMEMBERED_NAMES {
                remembered.clear();
            }
        }
        remembered.insert(name, (now, addresses.to_vec()));
        Ok(addresses)
    }
}

impl Resolver for PublicAddressResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addresses = self.lookup(uri, config, timeout)?;
        if self.allow_insecure {
            return Ok(addresses);
        }
        let kept = move_public_to_front(&mut addresses);
        if kept == 0 {
            return Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                NoPublicAddress,
            )));
        }
        addresses.truncate(kept);
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_public_addresses_in_order() {
        let parse = |a: &str| a.parse::<SocketAddr>().expect(a);
        let mut addresses = [
            parse("127.0.0.1:443"),
            parse("1.1.1.1:443"),
            parse("[fd00::1]:443"),
            parse("[2606:4700::1111]:443"),
            parse("10.0.0.1:443"),
        ];
        assert_eq!(move_public_to_front(&mut addresses), 2);
        assert_eq!(addresses[0], parse("1.1.1.1:443"));
        assert_eq!(addresses[1], parse("[2606:4700::1111]:443"));
        let mut private = [parse("192.168.0.1:443"), parse("[::1]:443")];
        assert_eq!(move_public_to_front(&mut private), 0);
    }
}
