//! A sender used in the child of a fork, as Prosody 0.12 does when it daemonizes after loading
//! its modules: the threads did not survive, so the sender brings them back in the child, with
//! the same descriptor, and takes over what it held as far as its locks are free.

mod common;

use std::io::Read;
use std::os::unix::io::FromRawFd;
use std::time::{Duration, Instant};

use common::*;
use web_push::outcome::Outcome;
use web_push::sender::Sender;

/// Runs `child` in a forked child process and returns what it wrote, or fails the test if the
/// child does not end within `limit` (a deadlock).
fn in_child(limit: Duration, child: impl FnOnce() -> String) -> String {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs `child`, writes to the pipe and leaves with _exit, never
    // returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child))
            .unwrap_or_else(|_| "panicked".to_owned());
        // SAFETY: writing our own buffer to our own pipe, then leaving at once.
        unsafe {
            libc::write(fds[1], report.as_ptr().cast(), report.len());
            libc::_exit(0);
        }
    }
    // SAFETY: the write end is ours to close; the read end becomes a File that owns it.
    unsafe { libc::close(fds[1]) };
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: our own child's pid.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not finish within {limit:?}: a deadlock");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut report = String::new();
    pipe.read_to_string(&mut report).expect("read the report");
    report
}

#[test]
fn the_child_of_a_fork_sends_and_salvages_what_was_queued() {
    let service = PushService::start();
    let slow = PushService::start();
    let sender = Sender::start(config(1, Duration::from_secs(5))).expect("sender");
    sender.push(job(service.url("/ok"))).expect("push");
    assert_eq!(wait_for(&sender, 1, Duration::from_secs(10)).len(), 1);
    let fd = sender.fd();
    // At the fork: one push in flight (its thread will be gone in the child), two queued.
    let in_flight = sender.push(job(slow.url("/slow"))).expect("push");
    assert!(eventually(Duration::from_secs(5), || sender
        .stats()
        .counts
        .in_flight
        == 1));
    let queued = [
        sender.push(job(service.url("/ok/queued"))).expect("push"),
        sender.push(job(service.url("/ok/queued"))).expect("push"),
    ];

    let report = in_child(Duration::from_secs(30), || {
        let before = sender.stats();
        let fresh = sender
            .push(job(service.url("/ok/child")))
            .expect("push in the child");
        let results = wait_for(&sender, 4, Duration::from_secs(15));
        let delivered = |id: u64| {
            results
                .iter()
                .any(|r| r.id == id && r.outcome == Outcome::Delivered)
        };
        let stats = sender.stats();
        format!(
            "restarts={} workers_before={} fresh={} in_flight={} queued={} fd_same={}",
            stats.restarts,
            before.counts.workers,
            delivered(fresh),
            delivered(in_flight),
            queued.iter().all(|id| delivered(*id)),
            sender.fd() == fd,
        )
    });
    assert_eq!(
        report,
        "restarts=1 workers_before=1 fresh=true in_flight=true queued=true fd_same=true"
    );
    assert_eq!(service.count("/ok/child"), 1);
    // The parent's own threads are untouched by the child.
    assert_eq!(sender.stats().restarts, 0);
    let results = wait_for(&sender, 3, Duration::from_secs(10));
    assert_eq!(results.len(), 3);
}

#[test]
fn a_lock_held_at_the_fork_is_never_waited_for() {
    let service = PushService::start();
    let sender = Sender::start(config(2, Duration::from_secs(5))).expect("sender");
    // A thread holds the locks when the fork comes, and does not exist in the child.
    sender.hold_locks_for_test(Duration::from_secs(2));
    let report = in_child(Duration::from_secs(30), || {
        let id = sender
            .push(job(service.url("/ok/child")))
            .expect("push in the child");
        let results = wait_for(&sender, 1, Duration::from_secs(10));
        let stats = sender.stats();
        format!(
            "restarts={} workers={} delivered={}",
            stats.restarts,
            stats.counts.workers,
            results
                .iter()
                .any(|r| r.id == id && r.outcome == Outcome::Delivered)
        )
    });
    assert_eq!(report, "restarts=1 workers=2 delivered=true");
    assert_eq!(service.count("/ok/child"), 1);
}
