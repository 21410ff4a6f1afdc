//! Retry timing, expiry and cancellation, with a clock the test moves by hand: nothing here
//! waits for the real seconds a backoff takes.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use web_push::clock::ManualClock;
use web_push::http::HttpClient;
use web_push::outcome::Outcome;
use web_push::retry::{backoff, MAX_ATTEMPTS};
use web_push::sender::{NewJob, Sender, SenderConfig};

const REAL_WAIT: Duration = Duration::from_secs(10);

fn manual_sender(config: SenderConfig) -> (Sender, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let (timeout, insecure) = (config.timeout, config.policy.allow_insecure);
    let sender = Sender::start_with(
        config,
        Arc::clone(&clock) as _,
        Arc::new(move || HttpClient::new(timeout, insecure)),
    )
    .expect("sender");
    (sender, clock)
}

fn ttl_of(service: &PushService, index: usize) -> u64 {
    service.requests()[index].headers["ttl"]
        .parse()
        .expect("ttl")
}

/// Nothing more reaches `service` within a short real wait.
fn stays_at(service: &PushService, path: &str, count: usize) -> bool {
    thread::sleep(Duration::from_millis(40));
    service.count(path) == count
}

#[test]
fn backoff_doubles_from_one_second_for_ten_attempts_then_fails() {
    let service = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_secs(5)));
    let id = sender
        .push(NewJob {
            ttl: Duration::from_secs(86_400),
            ..job(service.url("/error"))
        })
        .expect("push");
    let mut waited = Duration::ZERO;
    for attempt in 1..MAX_ATTEMPTS {
        assert!(
            eventually(REAL_WAIT, || sender.stats().counts.waiting == 1),
            "attempt {attempt}"
        );
        assert_eq!(service.count("/error"), attempt as usize);
        // The jitter takes the wait to between half and all of the backoff.
        let full = backoff(attempt, 1.0);
        let below = full / 2 - Duration::from_millis(1);
        clock.advance(below);
        assert!(
            stays_at(&service, "/error", attempt as usize),
            "attempt {attempt} came early"
        );
        clock.advance(full - below);
        waited += full;
        assert!(
            eventually(REAL_WAIT, || service.count("/error")
                == attempt as usize + 1),
            "attempt {} did not come by {full:?}",
            attempt + 1
        );
    }
    let results = wait_for(&sender, 1, REAL_WAIT);
    assert_eq!(results.len(), 1);
    let result = &results[0];
    assert_eq!((result.id, result.outcome), (id, Outcome::Failed));
    assert_eq!(result.attempts, MAX_ATTEMPTS);
    assert_eq!(result.status, Some(500));
    assert_eq!(result.reason, "oops");
    assert_eq!(result.elapsed, waited);
    assert_eq!(
        waited,
        Duration::from_secs(1 + 2 + 4 + 8 + 16 + 32 + 64 + 128 + 256)
    );
    clock.advance(Duration::from_secs(3600));
    assert!(stays_at(&service, "/error", MAX_ATTEMPTS as usize));
}

#[test]
fn retry_after_is_waited_for() {
    let service = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_secs(5)));
    sender.push(job(service.url("/busy"))).expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.waiting == 1));
    clock.advance(Duration::from_millis(6900));
    assert!(
        stays_at(&service, "/busy", 1),
        "Retry-After: 7 was not honoured"
    );
    clock.advance(Duration::from_millis(200));
    assert!(eventually(REAL_WAIT, || service.count("/busy") == 2));
}

#[test]
fn retries_send_the_ttl_left_and_stop_before_it_runs_out() {
    let service = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_secs(5)));
    sender
        .push(NewJob {
            ttl: Duration::from_secs(10),
            ..job(service.url("/error"))
        })
        .expect("push");
    // Attempts at 0, 1, 3 and 7 s (each backoff waited in full); the next would be 4 to 8 s
    // later, which leaves less than a second: the push fails instead.
    for (attempt, step) in [(1, 1), (2, 2), (3, 4)] {
        assert!(eventually(REAL_WAIT, || service.count("/error") == attempt));
        assert!(eventually(REAL_WAIT, || sender.stats().counts.waiting == 1));
        clock.advance(Duration::from_secs(step));
    }
    let results = wait_for(&sender, 1, REAL_WAIT);
    assert_eq!(results[0].outcome, Outcome::Failed);
    assert_eq!(results[0].attempts, 4);
    assert_eq!(results[0].elapsed, Duration::from_secs(7));
    let ttls: Vec<u64> = (0..4).map(|i| ttl_of(&service, i)).collect();
    assert_eq!(ttls, [10, 9, 7, 3]);
}

#[test]
fn a_push_whose_ttl_ran_out_in_the_queue_expires_unsent() {
    let service = PushService::start();
    let other = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_secs(1)));
    sender.push(one_shot(other.url("/hang"))).expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.in_flight == 1));
    let id = sender
        .push(NewJob {
            ttl: Duration::from_secs(10),
            ..job(service.url("/ok"))
        })
        .expect("push");
    clock.advance(Duration::from_secs(20));
    let results = wait_for(&sender, 2, REAL_WAIT);
    let expired = results.iter().find(|r| r.id == id).expect("a result");
    assert_eq!(expired.outcome, Outcome::Expired);
    assert_eq!(expired.attempts, 0);
    assert_eq!(service.count("/ok"), 0);
}

#[test]
fn a_waiting_retry_holds_no_thread() {
    let service = PushService::start();
    let (sender, _clock) = manual_sender(config(1, Duration::from_secs(5)));
    sender.push(job(service.url("/error"))).expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.waiting == 1));
    let id = sender.push(job(service.url("/ok"))).expect("push");
    let results = wait_for(&sender, 1, REAL_WAIT);
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0].id, results[0].outcome),
        (id, Outcome::Delivered)
    );
    let stats = sender.stats();
    assert_eq!((stats.counts.waiting, stats.counts.workers), (1, 1));
}

#[test]
fn cancel_reaches_a_waiting_retry() {
    let service = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_secs(5)));
    let id = sender.push(job(service.url("/error"))).expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.waiting == 1));
    assert_eq!(sender.cancel("someone@else.lit", None, None), 0);
    assert_eq!(
        sender.cancel(ACCOUNT, Some(&service.url("/error")), None),
        1
    );
    let results = wait_for(&sender, 1, REAL_WAIT);
    assert_eq!(
        (results[0].id, results[0].outcome),
        (id, Outcome::Cancelled)
    );
    assert_eq!((results[0].attempts, results[0].status), (1, Some(500)));
    clock.advance(Duration::from_secs(3600));
    assert!(stays_at(&service, "/error", 1));
    assert_eq!(sender.stats().counts.waiting, 0);
}

#[test]
fn a_push_cancelled_in_flight_is_not_retried() {
    let service = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_millis(500)));
    let id = sender.push(job(service.url("/hang"))).expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.in_flight == 1));
    assert_eq!(
        sender.cancel(ACCOUNT, None, None),
        0,
        "nothing to drop, one to stop"
    );
    let results = wait_for(&sender, 1, REAL_WAIT);
    assert_eq!(
        (results[0].id, results[0].outcome),
        (id, Outcome::Cancelled)
    );
    assert_eq!(
        (results[0].attempts, results[0].reason.as_str()),
        (1, "cancelled")
    );
    clock.advance(Duration::from_secs(3600));
    assert!(stays_at(&service, "/hang", 1));
}

#[test]
fn parked_pushes_expire_too() {
    let service = PushService::start();
    let (sender, clock) = manual_sender(config(1, Duration::from_secs(2)));
    sender.push(job(service.url("/hang"))).expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.in_flight == 1));
    // In flight for a (manual) second: stuck, so its origin is slow and the next push to it
    // waits behind it, parked.
    clock.advance(Duration::from_secs(1));
    assert!(eventually(REAL_WAIT, || sender.stats().counts.stuck == 1));
    let id = sender
        .push(NewJob {
            ttl: Duration::from_secs(5),
            ..job(service.url("/ok"))
        })
        .expect("push");
    assert!(eventually(REAL_WAIT, || sender.stats().counts.parked == 1));
    clock.advance(Duration::from_secs(10));
    let results = wait_for(&sender, 1, REAL_WAIT);
    assert_eq!((results[0].id, results[0].outcome), (id, Outcome::Expired));
    assert_eq!(sender.stats().counts.parked, 0);
    assert_eq!(service.count("/ok"), 0);
}
