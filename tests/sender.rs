//! The sender against a push service on loopback that answers in every way a network can.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;
use web_push::clock::SystemClock;
use web_push::endpoint::EndpointPolicy;
use web_push::guard::PublicAddressResolver;
use web_push::http::HttpClient;
use web_push::limits::PAYLOAD;
use web_push::outcome::Outcome;
use web_push::payload::ELLIPSIS;
use web_push::sender::{FinalResult, NewJob, Payload, Sender, SenderError};

fn outcome_of(job: NewJob, timeout: Duration) -> FinalResult {
    let sender = Sender::start(config(1, timeout)).expect("sender");
    let id = sender.push(job).expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(10));
    assert_eq!(results.len(), 1, "no result");
    assert_eq!(results[0].id, id);
    results[0].clone()
}

#[test]
fn delivered_request_is_a_valid_web_push() {
    let service = PushService::start();
    let config = config(1, Duration::from_secs(5));
    let public = config.key.public_b64();
    let sender = Sender::start(config).expect("sender");
    sender.push(job(service.url("/ok"))).expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(5));
    assert_eq!(results[0].outcome, Outcome::Delivered);
    assert_eq!(results[0].status, Some(201));
    assert_eq!(results[0].attempts, 1);

    let requests = service.requests();
    let request = &requests[0];
    assert_eq!(request.headers["content-encoding"], "aes128gcm");
    assert_eq!(request.headers["content-type"], "application/octet-stream");
    let ttl: u64 = request.headers["ttl"].parse().expect("ttl");
    assert!((3598..=3600).contains(&ttl), "{ttl}");
    assert_eq!(request.headers["urgency"], "high");
    let topic = &request.headers["topic"];
    assert_eq!(topic.len(), 32);
    assert!(topic.bytes().all(|b| b.is_ascii_alphanumeric()));
    let authorization = &request.headers["authorization"];
    assert!(authorization.starts_with("vapid t="));
    assert!(authorization.ends_with(&format!(", k={public}")));
    let plaintext = String::from_utf8(decrypt(&request.body)).expect("utf8");
    assert_eq!(
        plaintext,
        r#"{"account":"juliet@capulet.lit","message-count":1}"#
    );
    assert_eq!(request.body.len(), 86 + 256 + 16);
}

#[test]
fn a_table_payload_is_tagged_and_fitted() {
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    let long = "é".repeat(2000);
    let table = |conversation: &str| NewJob {
        payload: Payload::Value(json!({
            "account": ACCOUNT, "last-message-body": long,
            "notification": {"title": conversation, "body": long},
        })),
        conversation: Some(conversation.into()),
        ..job(service.url("/ok"))
    };
    sender.push(table("romeo@montague.lit")).expect("push");
    sender.push(table("romeo@montague.lit")).expect("push");
    sender.push(table("tybalt@capulet.lit")).expect("push");
    let results = wait_for(&sender, 3, Duration::from_secs(5));
    assert!(results.iter().all(|r| r.outcome == Outcome::Delivered));
    let mut requests = service.requests();
    requests.sort_by_key(|r| r.at);
    let payloads: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            let plaintext = decrypt(&r.body);
            assert!(plaintext.len() <= PAYLOAD, "{}", plaintext.len());
            serde_json::from_slice(&plaintext).expect("json")
        })
        .collect();
    let body = payloads[0]["last-message-body"].as_str().expect("body");
    assert!(body.ends_with(ELLIPSIS) && body.len() < long.len());
    assert_eq!(payloads[0]["notification"]["body"], body);
    let tags: Vec<&str> = payloads
        .iter()
        .map(|p| p["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(payloads[0]["notification"]["tag"], tags[0]);
    let by_conversation = |conversation: &str| {
        payloads
            .iter()
            .zip(&requests)
            .filter(|(p, _)| p["notification"]["title"] == conversation)
            .map(|(p, r)| (p["tag"].clone(), r.headers["topic"].clone()))
            .collect::<Vec<_>>()
    };
    let romeo = by_conversation("romeo@montague.lit");
    let tybalt = by_conversation("tybalt@capulet.lit");
    assert_eq!(romeo.len(), 2);
    assert_eq!(romeo[0], romeo[1], "one conversation, one tag and Topic");
    assert_ne!(romeo[0].0, tybalt[0].0);
    assert_ne!(romeo[0].1, tybalt[0].1);
    assert_ne!(romeo[0].0.as_str().expect("tag"), romeo[0].1);
}

#[test]
fn payloads_that_cannot_fit_are_refused() {
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    // Text is refused at once.
    let text = NewJob {
        payload: Payload::Json(vec![b' '; PAYLOAD + 1]),
        ..job("http://127.0.0.1:9/x".into())
    };
    assert!(matches!(sender.push(text), Err(SenderError::Payload(_))));
    // A table is fitted by the worker; what cannot be cut makes it refused, unsent.
    let table = NewJob {
        payload: Payload::Value(json!({ "account": "a".repeat(PAYLOAD) })),
        ..job("http://127.0.0.1:9/x".into())
    };
    let id = sender.push(table).expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(5));
    assert_eq!((results[0].id, results[0].outcome), (id, Outcome::Refused));
    // (The size counts the tag, which is part of what would be sent.)
    assert!(
        results[0].reason.starts_with("payload too large ("),
        "{}",
        results[0].reason
    );
    assert_eq!(results[0].attempts, 0);
}

#[test]
fn each_final_outcome() {
    let service = PushService::start();
    let quick = Duration::from_secs(5);
    let cases = [
        ("/gone", Outcome::Gone, Some(410)),
        ("/notfound", Outcome::Gone, Some(404)),
        ("/toolarge", Outcome::Failed, Some(413)),
        ("/busy", Outcome::Failed, Some(429)),
        ("/error", Outcome::Failed, Some(500)),
        ("/redirect", Outcome::Failed, Some(302)),
        ("/huge", Outcome::Failed, Some(400)),
        ("/drop", Outcome::Failed, None),
    ];
    for (path, outcome, status) in cases {
        let result = outcome_of(one_shot(service.url(path)), quick);
        assert_eq!(result.outcome, outcome, "{path}: {result:?}");
        assert_eq!(result.status, status, "{path}");
        assert_eq!(result.attempts, 1, "{path}");
    }
    assert_eq!(
        outcome_of(one_shot(service.url("/toolarge")), quick).reason,
        "too big see docs"
    );
    assert!(
        outcome_of(one_shot(service.url("/huge")), quick)
            .reason
            .len()
            <= 120
    );
}

#[test]
fn redirects_are_not_followed() {
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    sender
        .push(one_shot(service.url("/redirect")))
        .expect("push");
    wait_for(&sender, 1, Duration::from_secs(5));
    let paths: Vec<String> = service.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/redirect".to_owned()]);
}

#[test]
fn a_hanging_or_trickling_service_is_cut_off_by_the_deadline() {
    let service = PushService::start();
    for path in ["/hang", "/trickle"] {
        let started = Instant::now();
        let result = outcome_of(one_shot(service.url(path)), Duration::from_millis(700));
        assert_eq!(result.outcome, Outcome::Failed, "{path}");
        assert_eq!(result.reason, "timed out", "{path}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
    }
}

#[test]
fn push_returns_at_once_while_the_service_hangs() {
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(2))).expect("sender");
    sender.push(job(service.url("/hang"))).expect("push");
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for _ in 0..10 {
        sender.push(job(service.url("/ok"))).expect("push");
    }
    // Blocking would take the 2 s timeout; queuing takes microseconds. The bound is loose on
    // purpose: this checks that push never waits for the network, not how fast it is.
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_full_queue_refuses_and_close_does_not_hang() {
    let service = PushService::start();
    let mut config = config(1, Duration::from_secs(2));
    config.queue_size = 2;
    let sender = Sender::start(config).expect("sender");
    sender.push(job(service.url("/hang"))).expect("push");
    thread::sleep(Duration::from_millis(100));
    sender.push(job(service.url("/ok"))).expect("queued");
    sender.push(job(service.url("/ok"))).expect("queued");
    assert_eq!(
        sender.push(job(service.url("/ok"))),
        Err(SenderError::QueueFull)
    );
    assert_eq!(sender.stats().refused, 1);
    let started = Instant::now();
    let still_busy = sender.close();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(
        still_busy >= 1,
        "the worker stuck on /hang finishes on its own"
    );
    assert_eq!(
        sender.push(job(service.url("/ok"))),
        Err(SenderError::Closed)
    );
    assert!(eventually(Duration::from_secs(5), || sender.live_workers() == 0));
}

#[test]
fn workers_share_the_load() {
    let service = PushService::start();
    let other = PushService::start();
    let sender = Sender::start(config(2, Duration::from_secs(10))).expect("sender");
    // A hung request holds one worker until the service gives up on it (3 s); the other keeps
    // delivering meanwhile.
    sender.push(job(other.url("/hang"))).expect("push");
    for _ in 0..5 {
        sender.push(job(service.url("/ok"))).expect("push");
    }
    let results = wait_for(&sender, 5, Duration::from_millis(2500));
    let delivered = results
        .iter()
        .filter(|r| r.outcome == Outcome::Delivered)
        .count();
    assert_eq!(delivered, 5);
}

#[test]
fn each_attempt_sends_the_ttl_that_is_left() {
    let service = PushService::start();
    let other = PushService::start();
    let sender = Sender::start(config(1, Duration::from_millis(1500))).expect("sender");
    // The only worker is busy for 1.5 s; the push waits in the queue meanwhile. (With one
    // worker the pool grows only once the request counts as stuck, so the wait is at least
    // that long.)
    sender.push(one_shot(other.url("/hang"))).expect("push");
    thread::sleep(Duration::from_millis(50));
    let pushed = Instant::now();
    let id = sender
        .push(NewJob {
            ttl: Duration::from_secs(100),
            ..job(service.url("/ok"))
        })
        .expect("push");
    let results = wait_for(&sender, 2, Duration::from_secs(10));
    assert!(results
        .iter()
        .any(|r| r.id == id && r.outcome == Outcome::Delivered));
    let request = &service.requests()[0];
    let waited = request.at.duration_since(pushed).as_secs();
    let ttl: u64 = request.headers["ttl"].parse().expect("ttl");
    assert!(
        ttl <= 100 - waited.max(1) && ttl >= 100 - waited - 2,
        "TTL {ttl} after {waited} s"
    );
}

#[test]
fn the_wakeup_fd_is_readable_only_while_results_wait() {
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(2))).expect("sender");
    let fd = sender.fd();
    assert!(!readable(fd));
    sender.push(job(service.url("/ok"))).expect("push");
    assert!(eventually(Duration::from_secs(5), || readable(fd)));
    assert_eq!(sender.drain().len(), 1);
    assert!(!readable(fd));
    assert_eq!(sender.fd(), fd);
}

/// Name lookup that answers what the test says (no answer at all for an empty list), standing
/// in for a DNS server an attacker runs, and counts how often it is asked.
#[derive(Debug, Default)]
struct FixedAnswers {
    answers: Vec<SocketAddr>,
    lookups: Arc<Mutex<usize>>,
}

impl Resolver for FixedAnswers {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        *self.lookups.lock().expect("lock") += 1;
        if self.answers.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        let mut out = DefaultResolver::default().empty();
        for address in &self.answers {
            out.push(*address);
        }
        Ok(out)
    }
}

fn sender_with_answers(
    answers: Vec<SocketAddr>,
    insecure: bool,
    lookups: Arc<Mutex<usize>>,
) -> Sender {
    let http = move || {
        HttpClient::with_resolver(
            Duration::from_secs(2),
            PublicAddressResolver::with_inner(
                Box::new(FixedAnswers {
                    answers: answers.clone(),
                    lookups: Arc::clone(&lookups),
                }),
                insecure,
            ),
        )
    };
    let mut config = config(1, Duration::from_secs(2));
    config.policy = EndpointPolicy {
        allow_insecure: insecure,
        hosts: None,
    };
    Sender::start_with(config, Arc::new(SystemClock), Arc::new(http)).expect("sender")
}

#[test]
fn names_resolving_to_non_public_addresses_are_never_contacted() {
    let service = PushService::start();
    let forbidden = [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "192.0.2.1",
        "::1",
        "::ffff:127.0.0.1",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "::",
    ];
    for address in forbidden {
        let ip: std::net::IpAddr = address.parse().expect(address);
        let sender = sender_with_answers(
            vec![SocketAddr::new(ip, service.address.port())],
            false,
            Arc::default(),
        );
        // The name passes the policy; only its resolution is hostile.
        sender
            .push(job("https://rebind.example.net/ok".into()))
            .expect("push");
        let results = wait_for(&sender, 1, Duration::from_secs(5));
        assert_eq!(results[0].outcome, Outcome::Refused, "{address}");
        assert_eq!(
            results[0].reason, "endpoint resolves to no public address",
            "{address}"
        );
        assert_eq!(results[0].attempts, 0, "{address}");
    }
    assert!(service.requests().is_empty());
}

#[test]
fn the_policy_refuses_hosts_schemes_and_ports() {
    let service = PushService::start();
    let mut config = config(1, Duration::from_secs(2));
    config.policy = EndpointPolicy {
        allow_insecure: false,
        hosts: Some(vec!["*.push.example.net".into()]),
    };
    let sender = Sender::start(config).expect("sender");
    let ids = [
        service.url("/ok"),
        "https://elsewhere.example.org/x".into(),
        "https://a.push.example.net:8443/x".into(),
    ]
    .map(|endpoint| sender.push(job(endpoint)).expect("push"));
    let mut reasons: Vec<(u64, String)> = wait_for(&sender, 3, Duration::from_secs(5))
        .into_iter()
        .map(|r| {
            assert_eq!(r.outcome, Outcome::Refused);
            (r.id, r.reason)
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (ids[0], "endpoint must use https".to_owned()),
            (
                ids[1],
                "endpoint host is not in web_push_endpoint_hosts".to_owned()
            ),
            (
                ids[2],
                "endpoint port is not 443 and not named in web_push_endpoint_hosts".to_owned()
            ),
        ]
    );
    assert!(service.requests().is_empty());
}

#[test]
fn tls_and_name_lookup_failures_are_network_failures() {
    // A plain-HTTP server behind an https endpoint: the TLS handshake fails.
    let service = PushService::start();
    let result = outcome_of(
        one_shot(format!("https://{}/ok", service.address)),
        Duration::from_secs(2),
    );
    assert_eq!(result.outcome, Outcome::Failed);
    assert_eq!(result.reason, "TLS failure");

    let sender = sender_with_answers(Vec::new(), false, Arc::default());
    sender
        .push(one_shot("https://no-such-name.example.net/x".into()))
        .expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(5));
    assert_eq!(results[0].outcome, Outcome::Failed);
    assert_eq!(results[0].reason, "host not found");
}

#[test]
fn a_name_is_looked_up_once_per_minute_not_once_per_push() {
    let service = PushService::start();
    let lookups = Arc::new(Mutex::new(0));
    let sender = sender_with_answers(vec![service.address], true, Arc::clone(&lookups));
    let endpoint = format!("http://push.example.net:{}/ok", service.address.port());
    for _ in 0..3 {
        sender.push(job(endpoint.clone())).expect("push");
    }
    let results = wait_for(&sender, 3, Duration::from_secs(5));
    assert!(results.iter().all(|r| r.outcome == Outcome::Delivered));
    assert_eq!(*lookups.lock().expect("lock"), 1);
}

#[test]
fn a_burst_of_pushes_wakes_one_worker_and_idle_workers_sleep_again() {
    let service = PushService::start();
    let sender = Sender::start(config(2, Duration::from_secs(5))).expect("sender");
    for _ in 0..10 {
        sender.push(job(service.url("/ok"))).expect("push");
    }
    // (0 when the workers had not gone to sleep yet.)
    let woken = sender.stats().wakeups;
    assert!(woken <= 1, "the caller woke {woken} workers for one burst");
    // Collected as soon as they are in (not every 5 ms as wait_for does), so that the next push
    // comes well within the time a worker keeps looking at the queue.
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while results.len() < 10 && Instant::now() < deadline {
        results.extend(sender.drain());
        thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(results.len(), 10);
    // Right after, a worker is looking at the queue by itself: nobody needs waking.
    sender.push(job(service.url("/ok"))).expect("push");
    assert_eq!(wait_for(&sender, 1, Duration::from_secs(10)).len(), 1);
    assert_eq!(sender.stats().wakeups, woken);
    // Some time after the last job every worker sleeps; a push wakes one again.
    thread::sleep(Duration::from_millis(400));
    sender.push(job(service.url("/ok"))).expect("push");
    assert_eq!(wait_for(&sender, 1, Duration::from_secs(10)).len(), 1);
    assert_eq!(sender.stats().wakeups, woken + 1);
}

#[test]
fn a_result_that_waits_for_its_batch_is_signalled_while_every_worker_is_busy() {
    let service = PushService::start();
    let other = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    let fd = sender.fd();
    sender.push(job(service.url("/ok"))).expect("push");
    assert!(eventually(Duration::from_secs(10), || readable(fd)));
    assert_eq!(sender.drain().len(), 1);
    // The next result comes within the batch interval of the last signal, so it waits for the
    // signaller; the only worker is meanwhile stuck in a hanging request.
    sender.push(job(service.url("/ok"))).expect("push");
    sender.push(job(other.url("/hang"))).expect("push");
    assert!(
        eventually(Duration::from_secs(2), || readable(fd)),
        "a waiting result was not signalled"
    );
    assert_eq!(sender.drain().len(), 1);
    assert_eq!(sender.stats().counts.in_flight, 1);
}

#[test]
fn every_result_of_a_burst_is_signalled() {
    let service = PushService::start();
    let sender = Sender::start(config(2, Duration::from_secs(5))).expect("sender");
    let fd = sender.fd();
    let mut collected = 0;
    for _ in 0..5 {
        for _ in 0..10 {
            sender.push(job(service.url("/ok"))).expect("push");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = 0;
        while got < 10 && Instant::now() < deadline {
            // Only when the socket says so, as Prosody's event loop does.
            if readable(fd) {
                got += sender.drain().len();
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, 10, "results were left without a signal");
        collected += got;
    }
    assert_eq!(collected, 50);
}

#[test]
fn cancel_drops_queued_pushes_with_a_result_each() {
    let service = PushService::start();
    let other = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(2))).expect("sender");
    sender.push(one_shot(other.url("/hang"))).expect("push");
    assert!(eventually(Duration::from_secs(2), || sender
        .stats()
        .counts
        .in_flight
        == 1));
    let romeo = sender.push(job(service.url("/ok"))).expect("push");
    let tybalt = sender
        .push(NewJob {
            conversation: Some("tybalt@capulet.lit".into()),
            ..job(service.url("/ok"))
        })
        .expect("push");
    let elsewhere = sender.push(job(service.url("/other"))).expect("push");
    let someone_else = sender
        .push(NewJob {
            account: "nurse@capulet.lit".into(),
            ..job(service.url("/ok"))
        })
        .expect("push");
    assert_eq!(
        sender.cancel(
            ACCOUNT,
            Some(&service.url("/ok")),
            Some("tybalt@capulet.lit")
        ),
        1
    );
    assert_eq!(sender.cancel(ACCOUNT, None, None), 2);
    let results = wait_for(&sender, 5, Duration::from_secs(10));
    let outcome = |id| {
        results
            .iter()
            .find(|r| r.id == id)
            .map(|r| (r.outcome, r.attempts))
    };
    assert_eq!(outcome(tybalt), Some((Outcome::Cancelled, 0)));
    assert_eq!(outcome(romeo), Some((Outcome::Cancelled, 0)));
    assert_eq!(outcome(elsewhere), Some((Outcome::Cancelled, 0)));
    assert_eq!(outcome(someone_else), Some((Outcome::Delivered, 1)));
    assert_eq!(service.count("/ok"), 1);
}

#[test]
fn export_takes_every_unfinished_push_and_resume_sends_it() {
    let service = PushService::start();
    let other = PushService::start();
    let old = Sender::start(config(1, Duration::from_secs(1))).expect("sender");
    old.push(job(other.url("/hang"))).expect("push");
    assert!(eventually(Duration::from_secs(2), || old
        .stats()
        .counts
        .in_flight
        == 1));
    old.push(job(service.url("/ok"))).expect("push");
    let exported = old.export();
    assert_eq!(exported.len(), 2, "the queued push and the one in flight");
    assert_eq!(old.stats().counts.queued, 0);
    // The request in flight times out, and its result is discarded.
    thread::sleep(Duration::from_millis(1500));
    assert!(old.drain().is_empty());
    assert_eq!(old.stats().counts.waiting, 0);

    let new = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    let ok = exported
        .iter()
        .find(|job| job.endpoint.ends_with("/ok"))
        .expect("exported /ok")
        .clone();
    assert!(ok.expires >= web_push::clock::unix_now() + 3590);
    let id = new.resume(ok.clone()).expect("resume");
    let results = wait_for(&new, 1, Duration::from_secs(5));
    assert_eq!(
        (results[0].id, results[0].outcome),
        (id, Outcome::Delivered)
    );
    let plaintext = decrypt(&service.requests()[0].body);
    assert_eq!(plaintext, ok.payload);
    // An expiry further out than any TTL is taken as the longest TTL.
    let far = web_push::sender::ExportedJob {
        expires: u64::MAX,
        ..ok.clone()
    };
    new.resume(far).expect("resume");
    assert_eq!(wait_for(&new, 1, Duration::from_secs(5)).len(), 1);
    let ttl: u64 = service.requests()[1].headers["ttl"].parse().expect("ttl");
    assert!((2_591_990..=2_592_000).contains(&ttl), "TTL {ttl}");
    let expired = web_push::sender::ExportedJob {
        expires: web_push::clock::unix_now() - 1,
        ..ok
    };
    assert_eq!(new.resume(expired), Err(SenderError::Expired));
}
