//! What the sender's tests share: a push service on loopback that answers the way the path
//! says, jobs, and ways to wait for results.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use web_push::b64;
use web_push::endpoint::EndpointPolicy;
use web_push::keys::VapidKey;
use web_push::limits::Urgency;
use web_push::sender::{FinalResult, NewJob, Payload, Sender, SenderConfig};
use web_push::subscription::SubscriptionKeys;

pub const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
pub const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
pub const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
pub const ACCOUNT: &str = "juliet@capulet.lit";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A push service stand-in on loopback: the path says how to answer.
pub struct PushService {
    pub address: SocketAddr,
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
        at: Instant::now(),
    })
}

pub fn http_date_in(seconds: u64) -> String {
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

fn respond(stream: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{extra}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

fn answer(stream: &mut TcpStream, request: &Recorded, port: u16, earlier: usize) {
    let path = request.path.as_str();
    // "/fail/N/...": 503 for the first N requests to that path, then 201.
    if let Some(rest) = path.strip_prefix("/fail/") {
        let failures: usize = rest
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if earlier < failures {
            respond(stream, "503 Service Unavailable", "", "");
        } else {
            respond(stream, "201 Created", "", "");
        }
        return;
    }
    match path {
        // "/ok" and "/ok/anything": 201.
        p if p == "/ok" || p.starts_with("/ok/") => respond(stream, "201 Created", "", ""),
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
        "/slow" => {
            thread::sleep(Duration::from_millis(1500));
            respond(stream, "201 Created", "", "")
        }
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
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let recorded = Arc::clone(&recorded);
                thread::spawn(move || {
                    // One request per connection keeps the script simple.
                    if let Some(request) = read_request(&mut stream) {
                        let earlier = {
                            let mut list = recorded.lock().expect("lock");
                            let earlier = list.iter().filter(|r| r.path == request.path).count();
                            list.push(request.clone());
                            earlier
                        };
                        answer(&mut stream, &request, address.port(), earlier);
                    }
                });
            }
        });
        Self { address, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }
}

pub fn config(workers: usize, timeout: Duration) -> SenderConfig {
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

pub fn keys() -> SubscriptionKeys {
    SubscriptionKeys::decode(UA_PUBLIC, AUTH).expect("keys")
}

pub fn job(endpoint: String) -> NewJob {
    NewJob {
        account: ACCOUNT.into(),
        endpoint,
        keys: keys(),
        payload: Payload::Json(br#"{"account":"juliet@capulet.lit","message-count":1}"#.to_vec()),
        ttl: Duration::from_secs(3600),
        urgency: Some(Urgency::High),
        conversation: Some("romeo@montague.lit".into()),
    }
}

/// A job whose TTL leaves no room for a retry: its first attempt's result is final.
pub fn one_shot(endpoint: String) -> NewJob {
    NewJob {
        ttl: Duration::from_secs(1),
        ..job(endpoint)
    }
}

pub fn wait_for(sender: &Sender, count: usize, limit: Duration) -> Vec<FinalResult> {
    let deadline = Instant::now() + limit;
    let mut results = Vec::new();
    while results.len() < count && Instant::now() < deadline {
        results.extend(sender.drain());
        thread::sleep(Duration::from_millis(5));
    }
    results
}

/// Waits until `done` says yes, or `limit` passed; returns whether it did.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    done()
}

/// The plaintext of a recorded request, decrypted by `ece` (not by our own code).
pub fn decrypt(body: &[u8]) -> Vec<u8> {
    let private = b64::decode(UA_PRIVATE).expect("b64");
    let public = b64::decode(UA_PUBLIC).expect("b64");
    let auth = b64::decode(AUTH).expect("b64");
    let components = ece::EcKeyComponents::new(private, public);
    ece::decrypt(&components, &auth, body).expect("ece decrypts it")
}

/// Asks poll(2), as Prosody's event loop would, whether the descriptor is readable now.
pub fn readable(fd: i32) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & libc::POLLIN != 0
}
