//! Makes the whole-request deadline a real deadline. `ureq` gives each read the time left until
//! the deadline, but once none is left it allows one more second per read, so a push service that
//! trickles a byte every few hundred milliseconds could hold a worker for ever. This transport
//! refuses to read or write once the time left is zero.

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

#[derive(Debug, Default)]
pub struct DeadlineConnector;

impl Connector<Box<dyn Transport>> for DeadlineConnector {
    type Out = DeadlineTransport;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(DeadlineTransport))
    }
}

#[derive(Debug)]
pub struct DeadlineTransport(Box<dyn Transport>);

fn check(timeout: &NextTimeout) -> Result<(), ureq::Error> {
    if !timeout.after.is_not_happening() && timeout.after.is_zero() {
        Err(ureq::Error::Timeout(timeout.reason))
    } else {
        Ok(())
    }
}

impl Transport for DeadlineTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        check(&timeout)?;
        self.0.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        check(&timeout)?;
        self.0.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}
