//! Per-push cost of the native core: the workers' cryptography, `Sender::push` on the caller's
//! thread, and the sender's throughput against a push service on loopback. Run with
//! `cargo bench --bench native` (add `-- --json` for machine-readable output). What `push` costs
//! through Lua: `lua5.4 benches/push_cost.lua build/mod_web_push/web_push.so`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use web_push::clock::unix_now;
use web_push::endpoint::EndpointPolicy;
use web_push::keys::VapidKey;
use web_push::limits::Urgency;
use web_push::sender::{JobData, NewJob, Payload, Preparer, Sender, SenderConfig};
use web_push::subscription::SubscriptionKeys;
use web_push::vapid::VapidSigner;

const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
/// The notification the module sends for an important message, as the peers get it too.
const PAYLOAD: &[u8] =
    br#"{"account":"juliet@capulet.lit","important":true,"message-count":1,"last-message-body":"New Message!"}"#;

fn job(endpoint: &str) -> NewJob {
    NewJob {
        account: "juliet@capulet.lit".into(),
        endpoint: endpoint.to_owned(),
        keys: SubscriptionKeys::decode(UA_PUBLIC, AUTH).expect("keys"),
        payload: Payload::Json(PAYLOAD.to_vec()),
        ttl: Duration::from_secs(86_400),
        urgency: Some(Urgency::High),
        conversation: Some("romeo@montague.lit".into()),
    }
}

/// A push as the module makes it: a table (tagged and fitted by `push`).
fn table_job(endpoint: &str) -> NewJob {
    NewJob {
        payload: Payload::Value(serde_json::json!({
            "account": "juliet@capulet.lit", "important": true, "message-count": 1,
            "last-message-body": "New Message!",
        })),
        ..job(endpoint)
    }
}

/// What a worker prepares: the module's table, tagged and fitted here as the worker does.
fn job_data(endpoint: &str) -> JobData {
    JobData::new(table_job(endpoint), Instant::now())
}

/// Runs `work` on `threads` threads for about `seconds`; returns operations per second in all.
fn rate(threads: usize, seconds: f64, work: impl Fn() + Sync) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let total: u64 = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut count = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..16 {
                            work();
                        }
                        count += 16;
                    }
                    count
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// A push service on loopback that keeps connections alive and answers 201 at once.
fn start_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    port
}

fn serve(stream: TcpStream) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err()
            || writer
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .is_err()
        {
            return;
        }
    }
}

fn bench_config(workers: usize, queue_size: usize) -> SenderConfig {
    SenderConfig {
        key: VapidKey::generate().expect("key"),
        subject: "mailto:bench@example.org".into(),
        workers,
        queue_size,
        timeout: Duration::from_secs(10),
        policy: EndpointPolicy {
            allow_insecure: true,
            hosts: None,
        },
    }
}

fn sender_rate(workers: usize, pushes: usize, port: u16) -> f64 {
    let sender = Sender::start(bench_config(workers, pushes)).expect("sender");
    let endpoint = format!("http://127.0.0.1:{port}/push/bench");
    let started = Instant::now();
    for _ in 0..pushes {
        sender.push(job(&endpoint)).expect("push");
    }
    let mut done = 0;
    while done < pushes {
        let results = sender.drain();
        assert!(results.iter().all(|r| r.status == Some(201)), "{results:?}");
        done += results.len();
        if results.is_empty() {
            thread::sleep(Duration::from_micros(200));
        }
    }
    pushes as f64 / started.elapsed().as_secs_f64()
}

/// A push service that takes connections and never answers: the pushes stay queued.
fn silent_service() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// Microseconds `Sender::push` takes on the caller's thread for a table payload (already a JSON
/// value: Lua's conversion is not in it), best of five runs of `pushes`.
fn push_cost(pushes: usize) -> f64 {
    let (_listener, port) = silent_service();
    let endpoint = format!("http://127.0.0.1:{port}/wpush/v2/bench");
    let mut best = f64::MAX;
    for _ in 0..5 {
        let sender = Sender::start(bench_config(1, pushes + 1)).expect("sender");
        let jobs: Vec<NewJob> = (0..pushes).map(|_| table_job(&endpoint)).collect();
        let started = Instant::now();
        for job in jobs {
            sender.push(job).expect("push");
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / pushes as f64);
        sender.close();
    }
    best
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());

    let key = VapidKey::generate().expect("key");
    let preparer = Preparer::new(&key, "mailto:bench@example.org", EndpointPolicy::default())
        .expect("preparer");
    let push = job_data("https://push.example.net/wpush/v2/bench");
    let prepare = || {
        preparer.prepare(&push).map(|_| ()).expect("prepare");
    };
    let one_core = rate(1, seconds, prepare);
    let all_cores = rate(cores, seconds, prepare);

    let signer = VapidSigner::new(&key, "mailto:bench@example.org").expect("signer");
    let sign_rate = rate(1, seconds / 2.0, || {
        signer
            .sign("https://push.example.net", unix_now())
            .expect("sign");
    });

    let push_us = push_cost(20_000);
    let port = start_service();
    let pushes = (one_core * seconds) as usize;
    let sender_one = sender_rate(1, pushes.max(1000), port);
    let sender_all = sender_rate(cores, pushes.max(1000), port);

    if json {
        println!(
            "{{\"cores\":{cores},\"prepare_per_sec_1\":{one_core:.1},\"prepare_per_sec_all\":{all_cores:.1},\"vapid_sign_per_sec\":{sign_rate:.1},\"sender_per_sec_1\":{sender_one:.1},\"sender_per_sec_all\":{sender_all:.1},\"push_per_sec\":{:.1}}}",
            1e6 / push_us
        );
        return;
    }
    println!("mod_web_push native core, {cores} cores, {seconds} s per figure");
    println!("| measure | per second | per push |");
    println!("|---|---:|---:|");
    let row = |name: &str, per_sec: f64| {
        println!("| {name} | {per_sec:.0} | {:.1} µs |", 1e6 / per_sec);
    };
    row("encrypt + VAPID (cached), 1 thread", one_core);
    row(
        &format!("encrypt + VAPID (cached), {cores} threads"),
        all_cores,
    );
    row("VAPID ES256 signature, uncached", sign_rate);
    row("sender to loopback HTTP, 1 worker", sender_one);
    row(
        &format!("sender to loopback HTTP, {cores} workers"),
        sender_all,
    );
    println!("| Sender::push on the caller's thread (table payload) | | {push_us:.2} µs |");
    println!("scaling over {cores} threads: {:.2}x", all_cores / one_core);
}
