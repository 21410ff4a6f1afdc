//! Noticing a fork. Threads do not survive one: Prosody 0.12 forks when it daemonizes, after the
//! modules (and their senders) are loaded. A handler registered with `pthread_atfork` counts the
//! forks this process's children went through, so every sender method can tell with one atomic
//! load whether it may be running in a child, and only then ask for the process id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_child() {
    // Only an atomic add: the child of a multi-threaded process may do little else here.
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// Starts counting forks (once per process; the library is never unloaded, see build.rs).
pub fn watch() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only touches a static atomic; there is no way to
        // unregister, which is why the library stays mapped for the life of the process.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// How many forks led to this process (0 in the process that loaded the library).
pub fn generation() -> u64 {
    FORKS.load(Ordering::SeqCst)
}
