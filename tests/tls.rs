//! The sender against hostile push services over TLS: the request deadline holds below TLS
//! (handshake, headers, body), and slow origins never starve a healthy one. The test CA is
//! trusted the way an admin would trust one, through OpenSSL's SSL_CERT_FILE.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Name, X509};
use web_push::outcome::Outcome;
use web_push::sender::Sender;

const TIMEOUT: Duration = Duration::from_secs(2);
/// What a request may take beyond its deadline: the system's scheduling, not the peer.
const MARGIN: Duration = Duration::from_secs(1);
/// The trickling peers send one byte this often: less than the timeout, so a deadline re-armed
/// per read would never fire.
const TRICKLE: Duration = Duration::from_millis(1500);

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
}

fn name(common_name: &str) -> X509Name {
    let mut name = X509Name::builder().expect("name");
    name.append_entry_by_text("CN", common_name).expect("CN");
    name.build()
}

fn certificate(
    subject: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
    let mut builder = X509::builder().expect("builder");
    builder.set_version(2).expect("version");
    let serial = BigNum::from_u32(rand_serial()).expect("serial");
    builder
        .set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    builder.set_subject_name(&name(subject)).expect("subject");
    builder.set_pubkey(key).expect("public key");
    builder
        .set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    builder
        .set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("not after");
    match issuer {
        None => {
            builder.set_issuer_name(&name(subject)).expect("issuer");
            let ca = BasicConstraints::new().critical().ca().build().expect("ca");
            builder.append_extension(ca).expect("ca");
            let usage = KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .expect("usage");
            builder.append_extension(usage).expect("usage");
            builder.sign(key, MessageDigest::sha256()).expect("sign");
        }
        Some((ca, ca_key)) => {
            builder.set_issuer_name(ca.subject_name()).expect("issuer");
            let names = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(Some(ca), None))
                .expect("names");
            builder.append_extension(names).expect("names");
            let usage = ExtendedKeyUsage::new()
                .server_auth()
                .build()
                .expect("usage");
            builder.append_extension(usage).expect("usage");
            builder.sign(ca_key, MessageDigest::sha256()).expect("sign");
        }
    }
    builder.build()
}

fn rand_serial() -> u32 {
    let mut bytes = [0u8; 4];
    openssl::rand::rand_bytes(&mut bytes).expect("random");
    u32::from_le_bytes(bytes) >> 1
}

/// The test CA, trusted through SSL_CERT_FILE before anything in this process uses TLS, and
/// a server certificate for 127.0.0.1 it issued.
fn acceptor() -> Arc<SslAcceptor> {
    static ACCEPTOR: OnceLock<Arc<SslAcceptor>> = OnceLock::new();
    Arc::clone(ACCEPTOR.get_or_init(|| {
        let ca_key = key();
        let ca = certificate("mod_web_push test CA", &ca_key, None);
        let path: PathBuf =
            std::env::temp_dir().join(format!("web_push-test-ca-{}.pem", std::process::id()));
        std::fs::write(&path, ca.to_pem().expect("pem")).expect("write the CA");
        std::env::set_var("SSL_CERT_FILE", &path);
        let server_key = key();
        let server = certificate("127.0.0.1", &server_key, Some((&ca, &ca_key)));
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        builder.set_private_key(&server_key).expect("key");
        builder.set_certificate(&server).expect("certificate");
        builder.check_private_key().expect("key matches");
        Arc::new(builder.build())
    }))
}

#[derive(Clone, Copy, Debug)]
enum Peer {
    /// Answers 201 at once.
    Healthy,
    /// Answers the ClientHello with a record header announcing 16 KiB, then one byte at a time.
    HandshakeTrickle,
    /// Completes the handshake, then sends the status line and headers one byte at a time.
    HeaderTrickle,
    /// Sends a 400 with a 1000-byte body, one byte at a time.
    BodyTrickle,
}

/// A TLS push service on its own port (its own origin).
fn serve(peer: Peer) -> String {
    let acceptor = acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let acceptor = Arc::clone(&acceptor);
            thread::spawn(move || handle(peer, &acceptor, stream));
        }
    });
    format!("https://127.0.0.1:{port}/push/1")
}

fn trickle(mut out: impl Write, bytes: &[u8]) {
    for byte in bytes {
        thread::sleep(TRICKLE);
        if out.write_all(&[*byte]).and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

fn handle(peer: Peer, acceptor: &SslAcceptor, mut stream: TcpStream) {
    if let Peer::HandshakeTrickle = peer {
        let mut hello = [0u8; 512];
        let _ = stream.read(&mut hello);
        let _ = stream.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
        trickle(stream, &[0x02; 40]);
        return;
    }
    let Ok(mut tls) = acceptor.accept(stream) else {
        return;
    };
    let mut reader = BufReader::new(&mut tls);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    match peer {
        Peer::Healthy => {
            let _ = tls.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        }
        Peer::HeaderTrickle => trickle(tls, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        Peer::BodyTrickle => {
            let _ = tls.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 1000\r\n\r\n");
            trickle(tls, &[b'x'; 1000]);
        }
        Peer::HandshakeTrickle => {}
    }
}

fn sender(workers: usize, timeout: Duration) -> Sender {
    acceptor();
    let mut config = config(workers, timeout);
    config.queue_size = 100;
    Sender::start(config).expect("sender")
}

#[test]
fn a_healthy_tls_push_service_gets_the_push() {
    let sender = sender(1, TIMEOUT);
    sender.push(job(serve(Peer::Healthy))).expect("push");
    let results = wait_for(&sender, 1, Duration::from_secs(10));
    assert_eq!(results[0].outcome, Outcome::Delivered, "{:?}", results[0]);
}

#[test]
fn a_trickling_peer_is_cut_off_at_the_deadline_at_every_stage() {
    for peer in [
        Peer::HandshakeTrickle,
        Peer::HeaderTrickle,
        Peer::BodyTrickle,
    ] {
        let sender = sender(1, TIMEOUT);
        let started = Instant::now();
        sender.push(one_shot(serve(peer))).expect("push");
        let results = wait_for(&sender, 1, Duration::from_secs(30));
        let took = started.elapsed();
        eprintln!(
            "{peer:?}: result after {:.2} s: {:?}",
            took.as_secs_f64(),
            results.first()
        );
        assert_eq!(results.len(), 1, "{peer:?}");
        assert_eq!(results[0].outcome, Outcome::Failed, "{peer:?}");
        assert!(
            took <= TIMEOUT + MARGIN,
            "{peer:?} held the worker for {took:?}"
        );
        match peer {
            Peer::BodyTrickle => assert_eq!(results[0].status, Some(400)),
            _ => assert_eq!(results[0].reason, "timed out", "{peer:?}"),
        }
    }
}

#[test]
fn hanging_origins_never_starve_a_healthy_one() {
    let timeout = Duration::from_secs(4);
    let sender = sender(2, timeout);
    let healthy = serve(Peer::Healthy);
    let hanging: Vec<String> = (0..3).map(|_| serve(Peer::HandshakeTrickle)).collect();
    for endpoint in &hanging {
        sender.push(one_shot(endpoint.clone())).expect("push");
    }
    // Every hanging request becomes stuck, and the pool grows past them.
    assert!(
        eventually(Duration::from_secs(3), || sender.stats().counts.stuck == 3),
        "{:?}",
        sender.stats()
    );
    // Further pushes to the hanging origins wait behind their stuck request, holding no thread;
    // pushes to the healthy origin go out at once.
    let mut parked = Vec::new();
    for endpoint in &hanging {
        parked.push(sender.push(one_shot(endpoint.clone())).expect("push"));
    }
    assert!(
        eventually(Duration::from_millis(500), || sender.stats().counts.parked
            == 3),
        "{:?}",
        sender.stats()
    );
    let stats = sender.stats();
    assert_eq!(stats.counts.stuck, 3, "{stats:?}");
    assert!(stats.counts.workers <= 2 + 3, "{stats:?}");
    for round in 0..5 {
        let started = Instant::now();
        let id = sender.push(job(healthy.clone())).expect("push");
        let results = wait_for(&sender, 1, Duration::from_secs(5));
        let took = started.elapsed();
        eprintln!(
            "healthy push {round} while 3 origins hang: {:.3} s",
            took.as_secs_f64()
        );
        assert_eq!(results.len(), 1);
        assert_eq!(
            (results[0].id, results[0].outcome),
            (id, Outcome::Delivered)
        );
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
    }
    // The parked pushes' TTL (a second) runs out while they wait: expired, never sent. The
    // stuck requests end at their deadline; then the extra threads leave by themselves.
    let results = wait_for(&sender, 6, timeout + MARGIN * 2);
    assert_eq!(results.len(), 6, "{:?}", sender.stats());
    for result in &results {
        let expected = if parked.contains(&result.id) {
            (Outcome::Expired, 0)
        } else {
            (Outcome::Failed, 1)
        };
        assert_eq!((result.outcome, result.attempts), expected, "{result:?}");
    }
    assert!(
        eventually(MARGIN, || sender.stats().counts.workers == 2),
        "{:?}",
        sender.stats()
    );
}

#[test]
fn hanging_pushes_and_healthy_ones_pushed_together() {
    let sender = sender(2, Duration::from_secs(4));
    let healthy = serve(Peer::Healthy);
    let started = Instant::now();
    for _ in 0..3 {
        sender
            .push(one_shot(serve(Peer::HandshakeTrickle)))
            .expect("push");
    }
    let id = sender.push(job(healthy)).expect("push");
    let mut delivered = None;
    assert!(eventually(Duration::from_secs(5), || {
        for result in sender.drain() {
            if result.id == id {
                delivered = Some((result.outcome, started.elapsed()));
            }
        }
        delivered.is_some()
    }));
    let (outcome, took) = delivered.expect("a result");
    eprintln!(
        "healthy push behind 3 hanging ones: {:.3} s",
        took.as_secs_f64()
    );
    assert_eq!(outcome, Outcome::Delivered);
    // Behind two workers' worth of hanging requests, it waits until they count as stuck.
    assert!(took < Duration::from_secs(3), "{took:?}");
}
