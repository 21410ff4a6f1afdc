//! The state's bookkeeping on its own: what each way out of it gives.

use std::time::{Duration, Instant};

use super::*;
use crate::sender::job::test_job;

fn push(state: &mut State, id: u64, account: &str, now: Instant) {
    let endpoint = "https://push.example.net/x";
    let job = test_job(id, account, endpoint, Duration::from_secs(60), now);
    state.ready.push_back(job);
}

fn answer(attempt: Attempt, status: Option<u16>) -> Answer {
    Answer {
        attempt,
        status,
        retry_after: None,
        reason: String::new(),
    }
}

const LATER: fn() -> Answer = || answer(Attempt::Later, Some(503));

#[test]
fn a_retryable_answer_waits_and_comes_back_when_due() {
    let now = Instant::now();
    let mut state = State::new(1);
    push(&mut state, 1, "a@b", now);
    let task = state.take(now, &mut Vec::new()).expect("task");
    assert_eq!(task.ttl, Duration::from_secs(60));
    assert_eq!(state.finish(1, LATER(), now, 1.0), None);
    assert_eq!(state.counts().waiting, 1);
    assert!(state.take_poke(), "the scheduler is told");
    assert_eq!(state.due(now + Duration::from_millis(999)), 0);
    assert_eq!(state.due(now + Duration::from_secs(1)), 1);
    let task = state
        .take(now + Duration::from_secs(1), &mut Vec::new())
        .expect("task");
    assert_eq!(task.ttl, Duration::from_secs(59));
    let result = state
        .finish(1, answer(Attempt::Delivered, Some(201)), now, 0.5)
        .expect("final");
    assert_eq!((result.outcome, result.attempts), (Outcome::Delivered, 2));
}

#[test]
fn exported_pushes_leave_no_result_and_closed_ones_no_retry() {
    let now = Instant::now();
    let mut state = State::new(1);
    push(&mut state, 1, "a@b", now);
    push(&mut state, 2, "a@b", now);
    state.take(now, &mut Vec::new()).expect("task");
    let exported = state.export();
    assert_eq!(exported.iter().map(|j| j.id).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(
        state.finish(1, answer(Attempt::Delivered, Some(201)), now, 0.5),
        None
    );
    push(&mut state, 3, "a@b", now);
    state.take(now, &mut Vec::new()).expect("task");
    state.close();
    assert_eq!(state.finish(3, LATER(), now, 0.5), None);
    assert_eq!(state.counts(), Counts::default());
}

#[test]
fn cancel_drops_what_waits_and_stops_what_is_in_flight() {
    let now = Instant::now();
    let mut state = State::new(1);
    for id in 1..=3 {
        push(&mut state, id, "a@b", now);
    }
    push(&mut state, 4, "c@d", now);
    state.take(now, &mut Vec::new()).expect("task 1");
    state.take(now, &mut Vec::new()).expect("task 2");
    assert_eq!(state.finish(2, LATER(), now, 0.5), None);
    let selection = Selection {
        account: "a@b",
        endpoint: None,
        conversation: None,
    };
    let dropped = state.cancel(&selection, now);
    let mut ids: Vec<u64> = dropped.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, [2, 3], "the waiting retry and the queued push");
    assert!(dropped.iter().all(|r| r.outcome == Outcome::Cancelled));
    let stopped = state.finish(1, LATER(), now, 0.5).expect("final");
    assert_eq!((stopped.outcome, stopped.attempts), (Outcome::Cancelled, 1));
    assert_eq!(state.counts().queued, 1, "another account's push stays");
}

#[test]
fn salvage_queues_again_what_was_in_flight() {
    let now = Instant::now();
    let mut state = State::new(1);
    push(&mut state, 1, "a@b", now);
    push(&mut state, 2, "a@b", now);
    push(&mut state, 3, "c@d", now);
    state.take(now, &mut Vec::new()).expect("task 1");
    state.take(now, &mut Vec::new()).expect("task 2");
    state.finish(2, LATER(), now, 0.5);
    state.take(now, &mut Vec::new()).expect("task 3");
    let selection = Selection {
        account: "c@d",
        endpoint: None,
        conversation: None,
    };
    state.cancel(&selection, now);
    let salvage = state.salvage(now);
    assert_eq!(salvage.ready.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
    assert_eq!(salvage.waiting.len(), 1);
    assert_eq!(salvage.finals.len(), 1, "the cancelled one gets its result");
    let mut fresh = State::new(1);
    fresh.restore(salvage.ready, salvage.waiting);
    assert_eq!((fresh.counts().queued, fresh.counts().waiting), (1, 1));
}

#[test]
fn a_push_past_its_ttl_expires_or_fails() {
    let now = Instant::now();
    let later = now + Duration::from_secs(61);
    let mut state = State::new(1);
    push(&mut state, 1, "a@b", now);
    let mut finals = Vec::new();
    assert!(state.take(later, &mut finals).is_none());
    assert_eq!(
        (finals[0].outcome, finals[0].attempts),
        (Outcome::Expired, 0)
    );
    push(&mut state, 2, "a@b", now);
    state.take(now, &mut Vec::new()).expect("task");
    state.finish(2, LATER(), now, 0.5);
    state.due(now + Duration::from_secs(59));
    let mut finals = Vec::new();
    assert!(state.take(later, &mut finals).is_none());
    assert_eq!(
        (finals[0].outcome, finals[0].status),
        (Outcome::Failed, Some(503))
    );
}

#[test]
fn attempts_resumed_at_the_most_stay_there() {
    let now = Instant::now();
    let mut state = State::new(1);
    let endpoint = "https://push.example.net/x";
    let mut job = test_job(1, "a@b", endpoint, Duration::from_secs(60), now);
    job.attempts = u32::MAX;
    state.ready.push_back(job);
    state.take(now, &mut Vec::new()).expect("task");
    let result = state.finish(1, LATER(), now, 0.5).expect("no retry");
    assert_eq!(
        (result.outcome, result.attempts),
        (Outcome::Failed, u32::MAX)
    );
}
