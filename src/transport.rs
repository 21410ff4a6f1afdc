//! TCP under TLS, with the request's deadline on every read and write. TLS libraries re-arm a
//! socket timeout for each read, so a peer that trickles one byte at a time (a TLS record header
//! announcing 16 KiB, then a byte every second) could hold a request for hours if the deadline
//! were kept above TLS. Here, below it, each read and write may wait only for the time left
//! until the deadline of the request this thread is making, and none is made once it is past.
//!
//! The deadline is per thread rather than per connection: pooled connections outlive the
//! request that opened them, and a worker makes one request at a time.

use std::cell::Cell;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};
use ureq::Timeout;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline of the request this thread is making, until dropped.
#[must_use]
pub struct DeadlineGuard(Option<Instant>);

pub fn set_deadline(at: Instant) -> DeadlineGuard {
    DeadlineGuard(DEADLINE.with(|deadline| deadline.replace(Some(at))))
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|deadline| deadline.set(self.0));
    }
}

/// How long the next read or write may wait: the least of ureq's own timeout and the time left
/// until this thread's deadline. An error once either is spent.
fn wait_limit(timeout: NextTimeout) -> Result<Option<Duration>, ureq::Error> {
    let ours = DEADLINE
        .with(Cell::get)
        .map(|at| at.saturating_duration_since(Instant::now()));
    let theirs = (!timeout.after.is_not_happening()).then(|| *timeout.after);
    let limit = match (ours, theirs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match limit {
        Some(left) if left.is_zero() => Err(ureq::Error::Timeout(timeout.reason)),
        other => Ok(other),
    }
}

fn io_error(error: io::Error, reason: Timeout) -> ureq::Error {
    match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ureq::Error::Timeout(reason),
        _ => ureq::Error::Io(error),
    }
}

/// Opens the TCP connection (first in the chain, before TLS).
#[derive(Debug, Default)]
pub struct DeadlineTcpConnector;

impl Connector<()> for DeadlineTcpConnector {
    type Out = DeadlineTcp;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let addresses: Vec<SocketAddr> = details.addrs.iter().copied().collect();
        let mut last_error = None;
        for (index, address) in addresses.iter().enumerate() {
            // The time left is shared among the addresses still to try.
            let connected = match wait_limit(details.timeout)? {
                Some(left) => {
                    let share = left / (addresses.len() - index) as u32;
                    TcpStream::connect_timeout(address, share.max(Duration::from_millis(10)))
                }
                None => TcpStream::connect(address),
            };
            match connected {
                Ok(stream) => {
                    if details.config.no_delay() {
                        stream.set_nodelay(true)?;
                    }
                    let buffers = LazyBuffers::new(
                        details.config.input_buffer_size(),
                        details.config.output_buffer_size(),
                    );
                    return Ok(Some(DeadlineTcp::new(stream, buffers)));
                }
                Err(error) => last_error = Some(io_error(error, Timeout::Connect)),
            }
        }
        Err(last_error.unwrap_or(ureq::Error::ConnectionFailed))
    }
}

/// A TCP connection whose every read and write ends by the current deadline.
pub struct DeadlineTcp {
    stream: TcpStream,
    buffers: LazyBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl DeadlineTcp {
    fn new(stream: TcpStream, buffers: LazyBuffers) -> Self {
        Self {
            stream,
            buffers,
            read_timeout: None,
            write_timeout: None,
        }
    }
}

impl fmt::Debug for DeadlineTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineTcp").finish_non_exhaustive()
    }
}

/// Sets a socket timeout only when it changed (a system call each time otherwise).
fn arm(
    stream: &TcpStream,
    current: &mut Option<Duration>,
    wanted: Option<Duration>,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    if *current != wanted {
        set(stream, wanted)?;
        *current = wanted;
    }
    Ok(())
}

impl Transport for DeadlineTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let mut sent = 0;
        while sent < amount {
            let limit = wait_limit(timeout)?;
            arm(
                &self.stream,
                &mut self.write_timeout,
                limit,
                TcpStream::set_write_timeout,
            )?;
            let output = &self.buffers.output()[sent..amount];
            match self.stream.write(output) {
                Ok(0) => return Err(ureq::Error::Io(ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error(error, timeout.reason)),
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        loop {
            let limit = wait_limit(timeout)?;
            arm(
                &self.stream,
                &mut self.read_timeout,
                limit,
                TcpStream::set_read_timeout,
            )?;
            let input = self.buffers.input_append_buf();
            match self.stream.read(input) {
                Ok(amount) => {
                    self.buffers.input_appended(amount);
                    return Ok(amount > 0);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error(error, timeout.reason)),
            }
        }
    }

    fn is_open(&mut self) -> bool {
        // An idle pooled connection has nothing to read; anything else (data, end of stream,
        // an error) means it cannot carry another request.
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let idle =
            matches!(self.stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time::Duration as UreqDuration;

    fn no_timeout() -> NextTimeout {
        NextTimeout {
            after: UreqDuration::NotHappening,
            reason: Timeout::Global,
        }
    }

    #[test]
    fn the_deadline_bounds_every_wait_and_is_restored() {
        assert_eq!(wait_limit(no_timeout()).expect("no limit"), None);
        {
            let _outer = set_deadline(Instant::now() + Duration::from_secs(5));
            let left = wait_limit(no_timeout())
                .expect("time left")
                .expect("a limit");
            assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
            {
                let _inner = set_deadline(Instant::now());
                assert!(matches!(
                    wait_limit(no_timeout()),
                    Err(ureq::Error::Timeout(Timeout::Global))
                ));
            }
            assert!(wait_limit(no_timeout()).is_ok());
            let shorter = NextTimeout {
                after: UreqDuration::Exact(Duration::from_millis(10)),
                reason: Timeout::RecvBody,
            };
            assert_eq!(
                wait_limit(shorter).expect("left"),
                Some(Duration::from_millis(10))
            );
        }
        assert_eq!(wait_limit(no_timeout()).expect("no limit"), None);
    }
}
