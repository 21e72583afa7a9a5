//! What wraps every step the live kernel carries out: fault injection for
//! the reliability tests (`NSNET_FAIL_AT`, `NSNET_ABORT_AT`), progress on a
//! terminal for long plans, and `-v` timings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::Error;
use crate::plan::Op;

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// With `true`, every step is printed to stderr with its duration (`-v`).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// With `-v`, prints how long a phase of the command took (taking the
/// lock and loading the state, writing the journal, recording the state).
pub fn phase(what: &str, start: Instant) {
    if VERBOSE.load(Ordering::Relaxed) {
        eprintln!(
            "nsnet: {:>8.3} ms  ({what})",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
}

pub(super) struct Instrument {
    calls: usize,
    /// The k-th operation of this process fails as if the kernel had
    /// refused it (fault-injection tests).
    fail_at: Option<usize>,
    /// The process dies (SIGABRT, no cleanup) just before the k-th
    /// operation, as if it had been killed there (crash tests).
    abort_at: Option<usize>,
    /// When progress is shown (a terminal, many steps): the step count at
    /// the start, and the steps expected.
    progress: Option<(usize, usize)>,
}

fn env_number(key: &str) -> Option<usize> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

impl Instrument {
    pub(super) fn from_env() -> Instrument {
        Instrument {
            calls: 0,
            fail_at: env_number("NSNET_FAIL_AT"),
            abort_at: env_number("NSNET_ABORT_AT"),
            progress: None,
        }
    }

    /// Shows progress on stderr for `total` steps, if stderr is a terminal
    /// and there are enough of them to be worth it.
    pub(super) fn set_progress(&mut self, total: usize) {
        use std::io::IsTerminal;
        if total > 30 && std::io::stderr().is_terminal() {
            self.progress = Some((self.calls, total));
        }
    }

    fn show_progress(&self, op: &Op) {
        if let Some((start, total)) = self.progress {
            let done = self.calls - start;
            if done.is_multiple_of(16) || done >= total {
                let text: String = op.to_string().chars().take(60).collect();
                eprint!("\r\x1b[Knsnet: [{}/{}] {text}", done.min(total), total);
                if done >= total {
                    eprintln!();
                }
            }
        }
    }

    /// Before a step: counts it, injects the fault asked for, shows
    /// progress; returns the start time when `-v` wants a timing.
    pub(super) fn before(&mut self, op: &Op) -> Result<Option<Instant>, Error> {
        self.calls += 1;
        if self.abort_at == Some(self.calls) {
            std::process::abort();
        }
        if self.fail_at == Some(self.calls) {
            return Err(Error::Injected(self.calls));
        }
        self.show_progress(op);
        Ok(VERBOSE.load(Ordering::Relaxed).then(Instant::now))
    }

    /// After a step timed by `before`: prints it with its outcome.
    pub(super) fn after<T>(op: &Op, start: Instant, result: &Result<T, Error>) {
        let status = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {}", crate::error_chain(e)),
        };
        eprintln!(
            "nsnet: {:>8.3} ms  {op}: {status}",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
}
