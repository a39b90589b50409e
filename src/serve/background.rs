//! The background runtime: the projector, the publisher, the sync and action
//! workers, the checkpointer and the clock's alerts run on their own threads,
//! at a lower CPU priority than the gRPC API (`api.background_nice`), with
//! their own NATS connection.
//!
//! Why: a 100,000-identity sync folds tens of thousands of events a second
//! and will take every core it is given; a review tool asking "is this source
//! complete?" meanwhile must not wait behind it. With the background niced,
//! the scheduler runs an API thread as soon as a call arrives; the background
//! gets every cycle the API does not use, so an idle API costs syncs nothing.
//! The work is the same either way: only who waits for the CPU changes.

use tokio::runtime::{Builder, Handle, Runtime};

/// The highest Unix nice increment `api.background_nice` may ask for.
pub const BACKGROUND_NICE_MAX: u8 = 19;
/// The default: background threads get about a tenth of the CPU weight of the
/// API's when both want it (Linux CFS weights 1024 vs 110).
pub const DEFAULT_BACKGROUND_NICE: u8 = 10;

/// The background runtime. Dropping it (even inside another runtime, even on
/// an early error) stops its threads without blocking.
pub struct Background {
    /// `None` only while being dropped.
    rt: Option<Runtime>,
    handle: Handle,
}

impl Background {
    /// Starts one worker thread per core, each lowered by `nice` (0 = the
    /// API's priority).
    pub fn start(nice: u8) -> std::io::Result<Background> {
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        // Relative to the API's threads (the caller's): a thread the runtime
        // starts from one of its own already carries the lowered value.
        let target = match nice {
            0 => None,
            n => Some(
                thread_nice()?
                    .saturating_add(i32::from(n))
                    .min(i32::from(BACKGROUND_NICE_MAX)),
            ),
        };
        let rt = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("govledger-bg")
            .enable_all()
            .on_thread_start(move || {
                if let Some(to) = target
                    && let Err(e) = set_thread_nice(to)
                {
                    tracing::warn!("cannot lower a background thread's priority to nice {to}: {e}");
                }
            })
            .build()?;
        Ok(Background {
            handle: rt.handle().clone(),
            rt: Some(rt),
        })
    }

    /// Where background work is spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Everything on it was awaited (bounded) by the drain; a task still
        // there is dropped, not waited for.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The calling thread's nice value (Linux keeps it per thread).
#[cfg(target_os = "linux")]
fn thread_nice() -> std::io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

/// Sets the calling thread's nice value to `to`.
#[cfg(target_os = "linux")]
fn set_thread_nice(to: i32) -> std::io::Result<()> {
    Ok(rustix::process::setpriority_process(
        Some(rustix::thread::gettid()),
        to,
    )?)
}

#[cfg(not(target_os = "linux"))]
fn thread_nice() -> std::io::Result<i32> {
    Ok(0)
}

#[cfg(not(target_os = "linux"))]
fn set_thread_nice(_to: i32) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "per-thread priority is set on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn every_background_thread_runs_lowered_once_and_the_caller_does_not() {
        let base = thread_nice().unwrap();
        let want = (base + 5).min(i32::from(BACKGROUND_NICE_MAX));
        let bg = Background::start(5).unwrap();
        let h = bg.handle();
        let (worker, blocking, nested) = h.block_on(async {
            let worker = tokio::spawn(async { thread_nice().unwrap() })
                .await
                .unwrap();
            let blocking = tokio::task::spawn_blocking(|| thread_nice().unwrap())
                .await
                .unwrap();
            // A thread started by a background thread: lowered from the
            // API's level, not a second time from its parent's.
            let nested = tokio::spawn(async {
                tokio::task::spawn_blocking(|| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    thread_nice().unwrap()
                })
                .await
                .unwrap()
            })
            .await
            .unwrap();
            (worker, blocking, nested)
        });
        assert_eq!((worker, blocking, nested), (want, want, want));
        assert_eq!(
            thread_nice().unwrap(),
            base,
            "the caller keeps its priority"
        );
        drop(bg);
    }

    #[test]
    fn nice_zero_leaves_the_priority_alone() {
        let base = thread_nice().unwrap();
        let bg = Background::start(0).unwrap();
        let got = bg.handle().block_on(async {
            tokio::spawn(async { thread_nice().unwrap() })
                .await
                .unwrap()
        });
        assert_eq!(got, base);
    }
}
