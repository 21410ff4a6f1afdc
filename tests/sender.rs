//! The sender against a push service on loopback that answers in every way a network can.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;
use web_push::b64;
use web_push::encrypt::decrypt;
use web_push::endpoint::EndpointPolicy;
use web_push::guard::PublicAddressResolver;
use web_push::http::{HttpClient, Urgency};
use web_push::keys::VapidKey;
use web_push::outcome::Outcome;
use web_push::sender::{Job, PushResult, Sender, SenderConfig, SenderError};
use web_push::subscription::SubscriptionKeys;

const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A push service stand-in: the path says how to answer.
struct PushService {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        path,
        headers,
        body,
    })
}

fn http_date_in(seconds: u64) -> String {
    // Formats an IMF-fixdate the long way, so the test does not share the parser's arithmetic.
    let output = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("+{seconds} seconds"),
            "+%a, %d %b %Y %H:%M:%S GMT",
        ])
        .output()
        .expect("date");
    String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

fn answer(stream: &mut TcpStream, request: &Recorded, port: u16) {
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\n{extra}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    };
    match request.path.as_str() {
        "/ok" => respond(stream, "201 Created", "", ""),
        "/gone" => respond(stream, "410 Gone", "", "{\"reason\":\"expired\"}"),
        "/notfound" => respond(stream, "404 Not Found", "", ""),
        "/toolarge" => respond(stream, "413 Payload Too Large", "", "too big\n\tsee docs"),
        "/busy" => respond(stream, "429 Too Many Requests", "Retry-After: 7\r\n", ""),
        "/busy-date" => {
            let extra = format!("Retry-After: {}\r\n", http_date_in(30));
            respond(stream, "429 Too Many Requests", &extra, "")
        }
        "/error" => respond(stream, "500 Internal Server Error", "", "oops"),
        "/redirect" => {
            let extra = format!("Location: http://127.0.0.1:{port}/ok\r\n");
            respond(stream, "302 Found", &extra, "")
        }
        "/huge" => {
            let body = "x".repeat(1 << 20);
            respond(stream, "400 Bad Request", "", &body)
        }
        "/hang" => thread::sleep(Duration::from_secs(3)),
        "/trickle" => {
            let _ = stream.write_all(b"HTTP/1.1 201 Created\r\n");
            for _ in 0..30 {
                if stream.write_all(b"X").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        // "/drop" and anything else: close without a word.
        _ => {}
    }
}

impl PushService {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let recorded = Arc::clone(&recorded);
                thread::spawn(move || {
                    // One request per connection keeps the script simple.
                    if let Some(request) = read_request(&mut stream) {
                        recorded.lock().expect("lock").push(request.clone());
                        answer(&mut stream, &request, address.port());
                    }
                });
            }
        });
        Self { address, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

fn config(workers: usize, timeout: Duration) -> SenderConfig {
    SenderConfig {
        key: VapidKey::generate().expect("key"),
        subject: "mailto:admin@example.org".into(),
        workers,
        queue_size: 16,
        timeout,
        policy: EndpointPolicy {
            allow_insecure: true,
            hosts: None,
        },
    }
}

fn job(endpoint: String) -> Job {
    Job {
        endpoint,
        keys: SubscriptionKeys::decode(UA_PUBLIC, AUTH).expect("keys"),
        payload: br#"{"account":"juliet@capulet.lit","message-count":1}"#.to_vec(),
        ttl: 3600,
        urgency: Some(Urgency::High),
        topic: Some("juliet".into()),
    }
}

fn wait_for(sender: &Sender, count: usize, limit: Duration) -> Vec<PushResult> {
    let deadline = Instant::now() + limit;
    let mut results = Vec::new();
    while results.len() < count && Instant::now() < deadline {
        results.extend(sender.drain());
        thread::sleep(Duration::from_millis(5));
    }
    results
}

fn outcome_of(path: &str, timeout: Duration) -> PushResult {
    let service = PushService::start();
    let sender = Sender::start(config(1, timeout)).expect("sender");
    let id = sender.push(job(service.url(path))).expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(10));
    assert_eq!(results.len(), 1, "{path}: no result");
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

    let requests = service.requests();
    let request = &requests[0];
    assert_eq!(request.headers["content-encoding"], "aes128gcm");
    assert_eq!(request.headers["content-type"], "application/octet-stream");
    assert_eq!(request.headers["ttl"], "3600");
    assert_eq!(request.headers["urgency"], "high");
    assert_eq!(request.headers["topic"], "juliet");
    let authorization = &request.headers["authorization"];
    assert!(authorization.starts_with("vapid t="));
    assert!(authorization.ends_with(&format!(", k={public}")));
    let plaintext = decrypt(
        &b64::decode(UA_PRIVATE).expect("b64"),
        &b64::decode(AUTH).expect("b64"),
        &request.body,
    )
    .expect("decrypt");
    let text = String::from_utf8(plaintext).expect("utf8");
    assert_eq!(
        text.trim_end(),
        r#"{"account":"juliet@capulet.lit","message-count":1}"#
    );
    assert_eq!(request.body.len(), 86 + 256 + 16);
}

#[test]
fn each_answer_class() {
    let quick = Duration::from_secs(5);
    let cases = [
        ("/gone", Outcome::Gone, Some(410)),
        ("/notfound", Outcome::Gone, Some(404)),
        ("/toolarge", Outcome::Rejected, Some(413)),
        ("/busy", Outcome::Retry, Some(429)),
        ("/error", Outcome::Retry, Some(500)),
        ("/redirect", Outcome::Rejected, Some(302)),
        ("/huge", Outcome::Rejected, Some(400)),
        ("/drop", Outcome::Network, None),
    ];
    for (path, outcome, status) in cases {
        let result = outcome_of(path, quick);
        assert_eq!(result.outcome, outcome, "{path}: {result:?}");
        assert_eq!(result.status, status, "{path}");
    }
    assert_eq!(outcome_of("/busy", quick).retry_after, Some(7));
    let dated = outcome_of("/busy-date", quick)
        .retry_after
        .expect("retry after");
    assert!((25..=31).contains(&dated), "{dated}");
    assert_eq!(outcome_of("/toolarge", quick).reason, "too big see docs");
    assert!(outcome_of("/huge", quick).reason.len() <= 120);
}

#[test]
fn redirects_are_not_followed() {
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    sender.push(job(service.url("/redirect"))).expect("push");
    wait_for(&sender, 1, Duration::from_secs(5));
    let paths: Vec<String> = service.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/redirect".to_owned()]);
}

#[test]
fn a_hanging_or_trickling_service_is_cut_off_by_the_deadline() {
    for path in ["/hang", "/trickle"] {
        let started = Instant::now();
        let result = outcome_of(path, Duration::from_millis(700));
        assert_eq!(result.outcome, Outcome::Network, "{path}");
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
    assert_eq!(
        still_busy, 1,
        "the worker stuck on /hang finishes on its own"
    );
    assert_eq!(
        sender.push(job(service.url("/ok"))),
        Err(SenderError::Closed)
    );
    let deadline = Instant::now() + Duration::from_secs(4);
    while sender.live_workers() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sender.live_workers(), 0);
}

#[test]
fn workers_share_the_load() {
    let service = PushService::start();
    let sender = Sender::start(config(2, Duration::from_secs(10))).expect("sender");
    // A hung request holds one worker until the service gives up on it (3 s); the other keeps
    // delivering meanwhile.
    sender.push(job(service.url("/hang"))).expect("push");
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
fn the_wakeup_fd_is_readable_only_while_results_wait() {
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(2))).expect("sender");
    let fd = sender.fd();
    assert!(!readable(fd));
    sender.push(job(service.url("/ok"))).expect("push");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !readable(fd) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert!(readable(fd));
    assert_eq!(sender.drain().len(), 1);
    assert!(!readable(fd));
}

/// Asks poll(2), as Prosody's event loop would, whether the descriptor is readable now.
fn readable(fd: i32) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & libc::POLLIN != 0
}

/// Name lookup that answers what the test says (no answer at all for an empty list), standing
/// in for a DNS server an attacker runs, and counts how often it is asked.
#[derive(Debug, Default)]
struct FixedAnswers {
    answers: Vec<SocketAddr>,
    lookups: Arc<Mutex<usize>>,
}

impl FixedAnswers {
    fn new(answers: Vec<SocketAddr>) -> Self {
        Self {
            answers,
            ..Self::default()
        }
    }
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

/// A sender that allows only public addresses, with names resolved by `answers`.
fn strict_sender(answers: Vec<SocketAddr>) -> Sender {
    let http = HttpClient::with_resolver(
        Duration::from_secs(2),
        PublicAddressResolver::with_inner(Box::new(FixedAnswers::new(answers)), false),
    );
    let mut config = config(1, Duration::from_secs(2));
    config.policy.allow_insecure = false;
    Sender::start_with_http(config, http).expect("sender")
}

#[test]
fn names_resolving_to_non_public_addresses_are_never_contacted() {
    let service = PushService::start();
    let port = service.address.port();
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
        let sender = strict_sender(vec![SocketAddr::new(ip, port)]);
        // The name passes the enable-time check; only its resolution is hostile.
        sender
            .push(job(format!("https://rebind.example.net:{port}/ok")))
            .expect("push");
        let results = wait_for(&sender, 1, Duration::from_secs(5));
        assert_eq!(results[0].outcome, Outcome::Rejected, "{address}");
        assert_eq!(
            results[0].reason, "endpoint resolves to no public address",
            "{address}"
        );
    }
    assert!(service.requests().is_empty());
}

#[test]
fn the_send_time_policy_refuses_hosts_and_schemes() {
    let service = PushService::start();
    let mut config = config(1, Duration::from_secs(2));
    config.policy = EndpointPolicy {
        allow_insecure: false,
        hosts: Some(vec!["*.push.example.net".into()]),
    };
    let sender = Sender::start(config).expect("sender");
    sender.push(job(service.url("/ok"))).expect("push");
    sender
        .push(job("https://elsewhere.example.org/x".into()))
        .expect("push");
    let mut reasons: Vec<String> = wait_for(&sender, 2, Duration::from_secs(5))
        .into_iter()
        .map(|r| {
            assert_eq!(r.outcome, Outcome::Rejected);
            r.reason
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "endpoint host is not in web_push_endpoint_hosts".to_owned(),
            "endpoint must use https".to_owned()
        ]
    );
    assert!(service.requests().is_empty());
}

#[test]
fn tls_and_name_lookup_failures_are_network_errors() {
    // A plain-HTTP server behind an https endpoint: the TLS handshake fails.
    let service = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(2))).expect("sender");
    sender
        .push(job(format!("https://{}/ok", service.address)))
        .expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(5));
    assert_eq!(results[0].outcome, Outcome::Network);
    assert_eq!(results[0].reason, "TLS failure");

    let sender = strict_sender(Vec::new());
    sender
        .push(job("https://no-such-name.example.net/x".into()))
        .expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(5));
    assert_eq!(results[0].outcome, Outcome::Network);
    assert_eq!(results[0].reason, "host not found");
}

#[test]
fn a_name_is_looked_up_once_per_minute_not_once_per_push() {
    let service = PushService::start();
    let resolver = FixedAnswers::new(vec![service.address]);
    let lookups = Arc::clone(&resolver.lookups);
    let http = HttpClient::with_resolver(
        Duration::from_secs(2),
        PublicAddressResolver::with_inner(Box::new(resolver), true),
    );
    let sender = Sender::start_with_http(config(1, Duration::from_secs(2)), http).expect("sender");
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
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    let fd = sender.fd();
    sender.push(job(service.url("/ok"))).expect("push");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !readable(fd) && Instant::now() < deadline {
        thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(sender.drain().len(), 1);
    // The next result comes within the batch interval of the last signal, so it waits for the
    // signaller; the only worker is meanwhile stuck in a hanging request.
    sender.push(job(service.url("/ok"))).expect("push");
    sender.push(job(service.url("/hang"))).expect("push");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !readable(fd) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(readable(fd), "a waiting result was not signalled");
    assert_eq!(sender.drain().len(), 1);
    assert_eq!(sender.stats().in_flight, 1);
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
