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
//!
//! An apply that holds the lock over [`SLOW_APPLY_WARN_MS`] is logged with
//! where its time went (on a CPU, waiting for one, blocked), read from the
//! kernel's per-thread counters: measured under load on two cores, the long
//! holds were mostly the writer waiting for a CPU, not the disk.

use std::{
    sync::mpsc::{SyncSender, sync_channel},
    thread::JoinHandle,
};

use super::StoreError;

/// The writes of one commit (a later write of a key wins), and how many
/// there are, for the slow-apply log line.
#[derive(Default)]
pub(crate) struct WriteSet {
    pub(super) batch: sled::Batch,
    writes: usize,
}

impl WriteSet {
    pub(crate) fn insert(&mut self, k: impl Into<sled::IVec>, v: impl Into<sled::IVec>) {
        self.batch.insert(k, v);
        self.writes += 1;
    }

    pub(crate) fn remove(&mut self, k: impl Into<sled::IVec>) {
        self.batch.remove(k);
        self.writes += 1;
    }
}

/// A commit's writes and where its outcome goes.
type Job = (WriteSet, SyncSender<sled::Result<()>>);

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
                // Opened once, read again before and after each apply.
                let schedstat = std::fs::File::open("/proc/thread-self/schedstat").ok();
                for (WriteSet { batch, writes }, answer) in rx {
                    let before = Schedstat::read(schedstat.as_ref());
                    let started = std::time::Instant::now();
                    let outcome = tree.apply_batch(batch);
                    let took = started.elapsed();
                    if took.as_millis() > u128::from(SLOW_APPLY_WARN_MS) {
                        warn_slow(writes, took, before, Schedstat::read(schedstat.as_ref()));
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
    pub(crate) fn apply(&self, set: WriteSet) -> Result<(), StoreError> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        let (answer, outcome) = sync_channel(1);
        jobs.send((set, answer))
            .map_err(|_| StoreError::WriterGone)?;
        Ok(outcome.recv().map_err(|_| StoreError::WriterGone)??)
    }
}

/// Where a thread's time went, from `/proc/thread-self/schedstat` (Linux):
/// nanoseconds on a CPU and runnable but waiting for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedstat {
    on_cpu_ns: u64,
    waiting_for_cpu_ns: u64,
}

impl Schedstat {
    /// The counters now, from the thread's `schedstat` file opened once (a
    /// read at offset 0 gives the kernel's current values).
    fn read(file: Option<&std::fs::File>) -> Option<Schedstat> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 128];
        let n = file?.read_at(&mut buf, 0).ok()?;
        Schedstat::parse(std::str::from_utf8(&buf[..n]).ok()?)
    }

    /// `"<on cpu ns> <waiting ns> <timeslices>"`.
    fn parse(text: &str) -> Option<Schedstat> {
        let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
        Some(Schedstat {
            on_cpu_ns: fields.next()?.ok()?,
            waiting_for_cpu_ns: fields.next()?.ok()?,
        })
    }
}

/// What a slow apply's time went to: on a CPU, waiting for a CPU (the
/// machine is busy: every read waited for a thread that could not run), or
/// neither (blocked: the disk, or sled's own buffers). `None` where the
/// kernel does not say.
fn split_hold(
    took: std::time::Duration,
    before: Option<Schedstat>,
    after: Option<Schedstat>,
) -> Option<(u64, u64, u64)> {
    let (b, a) = (before?, after?);
    let took_ms = took.as_millis() as u64;
    let cpu_ms = a.on_cpu_ns.checked_sub(b.on_cpu_ns)? / 1_000_000;
    let waiting_ms = a.waiting_for_cpu_ns.checked_sub(b.waiting_for_cpu_ns)? / 1_000_000;
    Some((
        cpu_ms,
        waiting_ms,
        took_ms.saturating_sub(cpu_ms + waiting_ms),
    ))
}

fn warn_slow(
    writes: usize,
    took: std::time::Duration,
    before: Option<Schedstat>,
    after: Option<Schedstat>,
) {
    let took_ms = took.as_millis() as u64;
    let Some((on_cpu_ms, waiting_for_cpu_ms, blocked_ms)) = split_hold(took, before, after) else {
        tracing::warn!(
            writes,
            took_ms,
            "a sled batch held the store's lock for over {SLOW_APPLY_WARN_MS} ms; every read waited for it"
        );
        return;
    };
    let cause = if waiting_for_cpu_ms >= on_cpu_ms.max(blocked_ms) {
        "mostly waiting for a CPU: the machine's CPUs are busy (other processes, or too few cores for the load)"
    } else if blocked_ms >= on_cpu_ms {
        "mostly blocked: a slow disk under the store folder"
    } else {
        "mostly on a CPU: a large batch (see projector.batch_events_max)"
    };
    tracing::warn!(
        writes,
        took_ms,
        on_cpu_ms,
        waiting_for_cpu_ms,
        blocked_ms,
        "a sled batch held the store's lock for over {SLOW_APPLY_WARN_MS} ms; every read waited for it ({cause})"
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn schedstat_parses_the_kernel_line_and_nothing_else() {
        assert_eq!(
            Schedstat::parse("1234567 890 12\n"),
            Some(Schedstat {
                on_cpu_ns: 1_234_567,
                waiting_for_cpu_ns: 890
            })
        );
        assert_eq!(Schedstat::parse(""), None);
        assert_eq!(Schedstat::parse("12"), None);
        assert_eq!(Schedstat::parse("x 1 2"), None);
    }

    #[test]
    fn the_file_opened_once_gives_the_current_counters() {
        let file = std::fs::File::open("/proc/thread-self/schedstat").unwrap();
        let before = Schedstat::read(Some(&file)).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(0u64);
        }
        let after = Schedstat::read(Some(&file)).unwrap();
        assert!(after.on_cpu_ns > before.on_cpu_ns, "{before:?} {after:?}");
        assert_eq!(Schedstat::read(None), None);
    }

    #[test]
    fn a_hold_splits_into_cpu_waiting_and_blocked() {
        let at = |cpu_ms: u64, wait_ms: u64| {
            Some(Schedstat {
                on_cpu_ns: cpu_ms * 1_000_000,
                waiting_for_cpu_ns: wait_ms * 1_000_000,
            })
        };
        assert_eq!(
            split_hold(Duration::from_millis(130), at(10, 5), at(30, 105)),
            Some((20, 100, 10))
        );
        // Counters that went backwards (another thread's file) say nothing.
        assert_eq!(
            split_hold(Duration::from_millis(130), at(30, 5), at(10, 105)),
            None
        );
        assert_eq!(
            split_hold(Duration::from_millis(130), None, at(10, 105)),
            None
        );
        // Rounding never makes blocked time negative.
        assert_eq!(
            split_hold(Duration::from_millis(101), at(0, 0), at(60, 60)),
            Some((60, 60, 0))
        );
    }
}
