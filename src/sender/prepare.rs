//! The part of an attempt that needs no network: check the endpoint, make the notification's
//! JSON (a table's is tagged and fitted here, off Prosody's thread), encrypt, sign. Public for
//! the benchmark, which measures exactly the work a worker does per push.

use std::borrow::Cow;

use crate::conversation::ConversationHasher;
use crate::encrypt;
use crate::endpoint::EndpointPolicy;
use crate::http::Answer;
use crate::keys::VapidKey;
use crate::payload::PayloadError;
use crate::vapid::{VapidError, VapidSigner};

use super::job::JobData;

pub struct Preparer {
    policy: EndpointPolicy,
    vapid: VapidSigner,
    hasher: ConversationHasher,
}

pub struct Prepared {
    pub body: Vec<u8>,
    pub authorization: String,
    pub topic: String,
}

impl Preparer {
    pub fn new(key: &VapidKey, subject: &str, policy: EndpointPolicy) -> Result<Self, VapidError> {
        Ok(Self {
            policy,
            vapid: VapidSigner::new(key, subject)?,
            hasher: ConversationHasher::new(key),
        })
    }

    /// The endpoint is checked again here, against the policy the sender was started with:
    /// nothing leaves that the policy does not allow, whatever was stored earlier.
    pub fn prepare(&self, job: &JobData) -> Result<Prepared, Answer> {
        let endpoint = self.policy.check(&job.endpoint).map_err(Answer::not_sent)?;
        let payload = self.payload(job).map_err(Answer::not_sent)?;
        let body = encrypt::encrypt(&job.keys, &payload).map_err(Answer::not_sent)?;
        let authorization = self
            .vapid
            .header_for(&endpoint.origin)
            .map_err(Answer::not_sent)?;
        let topic = self
            .hasher
            .topic(&job.endpoint, job.conversation.as_deref());
        Ok(Prepared {
            body,
            authorization,
            topic,
        })
    }

    /// The notification JSON as it is sent: a table's tagged and fitted.
    pub fn payload<'a>(&self, job: &'a JobData) -> Result<Cow<'a, [u8]>, PayloadError> {
        job.payload
            .encode(|| self.hasher.tag(&job.endpoint, job.conversation.as_deref()))
    }
}
