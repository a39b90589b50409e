//! The one thread that applies committed batches to sled.
//!
//! sled's `apply_batch` holds a process-wide lock for the whole batch, and
//! every read of every tree waits on it. The thread that holds it must
//! therefore never run at a lower CPU priority than the readers: `serve` runs
//! the projector below the API's priority, and a projector thread preempted
//! while holding the lock (by sled's own I/O threads, or by the waiting
//! readers spinning) kept every API read waiting — a priority inversion,
//! measured as a 30 ms p99 for reads that take 2 ms. This thread is started by
//! [`super::Store::open`], so it runs at the priority of the thread that
//! opened the store (in `serve`, the API's), whoever commits.
//!
//! One batch at a time; the committer waits for its own answer, so a commit
//! is as synchronous as before (the ack-after-commit invariant is unchanged).

use std::{
    sync::mpsc::{SyncSender, sync_channel},
    thread::JoinHandle,
};

use super::StoreError;

/// A batch (and how many writes it holds) and where its outcome goes.
type Job = (sled::Batch, usize, SyncSender<sled::Result<()>>);

/// An apply that holds sled's lock longer than this is logged: every read
/// waited that long.
pub const SLOW_APPLY_WARN_MS: u64 = 100;

pub(crate) struct Writer {
    /// `None` only while being dropped.
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread, at the calling thread's priority.
    pub(crate) fn start(tree: sled::Tree) -> std::io::Result<Writer> {
        // No queue: a committer hands its batch over and waits for the answer.
        let (tx, rx) = sync_channel::<Job>(0);
        let thread = std::thread::Builder::new()
            .name("govledger-sled-writer".into())
            .spawn(move || {
                for (batch, writes, answer) in rx {
                    let started = std::time::Instant::now();
                    let outcome = tree.apply_batch(batch);
                    let took = started.elapsed();
                    if took.as_millis() > u128::from(SLOW_APPLY_WARN_MS) {
                        tracing::warn!(
                            writes,
                            took_ms = took.as_millis() as u64,
                            "a sled batch held the store's lock for over {SLOW_APPLY_WARN_MS} ms; every read waited for it \
                             (a slow disk? see the store folder's disk)"
                        );
                    }
                    // The committer may be gone (its thread stopped): nothing to tell.
                    let _ = answer.send(outcome);
                }
            })?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Applies `batch` atomically on the writer thread and returns its outcome.
    pub(crate) fn apply(&self, batch: sled::Batch, writes: usize) -> Result<(), StoreError> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        let (answer, outcome) = sync_channel(1);
        jobs.send((batch, writes, answer))
            .map_err(|_| StoreError::WriterGone)?;
        Ok(outcome.recv().map_err(|_| StoreError::WriterGone)??)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread; joining it releases its handle
        // on the tree, so the folder can be opened again at once.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
