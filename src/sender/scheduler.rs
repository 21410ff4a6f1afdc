//! The scheduler thread: moves retries to the queue when they are due, marks requests stuck
//! (and starts threads in their place), expires parked pushes. A push waiting for its retry is
//! an entry in a heap here, not a thread.

use std::sync::Arc;
use std::time::Duration;

use super::core::Core;
use super::{lock, pool};

/// After the system refused a thread, the next try waits this long (or for other news).
const SPAWN_RETRY: Duration = Duration::from_secs(1);

pub fn run(core: Arc<Core>) {
    let mut state = lock(&core.state);
    while !state.closed {
        let now = core.clock.now();
        let moved = state.due(now);
        state.mark_stuck(now);
        let expired = state.expire_parked(now);
        let stuck = state.stuck;
        let spawn = state.pool.reserve(stuck);
        if moved > 0 && !state.pool.someone_looking() {
            if let Some(slot) = state.pool.wake_one() {
                core.wake[slot].notify_one();
            }
        }
        let next = state.plan(now);
        if !expired.is_empty() || !spawn.is_empty() {
            drop(state);
            core.results.add(&core.socket, expired);
            let refused = spawn
                .into_iter()
                .filter(|slot| !pool::spawn(&core, *slot))
                .count();
            state = lock(&core.state);
            if refused > 0 && !state.closed {
                state = core
                    .timer
                    .wait_timeout(state, SPAWN_RETRY)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            continue;
        }
        state = match next {
            Some(at) => {
                let wait = core.clock.real_wait(at.saturating_duration_since(now));
                core.timer
                    .wait_timeout(state, wait)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0)
            }
            None => core
                .timer
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
    }
}
