//! Where a long poll's wall-clock time went: running on a CPU, blocked in the kernel, or
//! waiting runnable for a CPU.
//!
//! A poll is timed by the wall clock. When its thread is preempted — other processes on the
//! host, a container's CPU quota spent (cgroup throttling stops every thread of a pod for tens
//! of milliseconds), more runnable threads than cores — the time it waited for a CPU is in the
//! wall-clock time, yet the handler held nothing back: the executor thread could not have run
//! another task either. Counting it as "blocking" blames the handler for the host.
//!
//! On Linux the kernel keeps, per thread, the time spent on a CPU and the time spent waiting
//! runnable on a run queue (`/proc/thread-self/schedstat`, in nanoseconds). The run-queue wait
//! is added when the thread gets a CPU back, so only a reading taken by the thread itself,
//! while it runs, is exact. A reading — that file, the thread's CPU-time clock and its
//! voluntary context switches (`getrusage`) — costs three system calls (about 1.6 µs together
//! on the 2-core VM CI runs on), too much for every poll, so:
//!
//! - each runtime thread that polls a timed handler opens its own `schedstat` once and keeps
//!   its last reading in a thread-local;
//! - at a poll's start the thread reads its counters again only when its last reading is more
//!   than [`REFRESH`] old — at most a thousand readings a second per busy thread, about 0.16%
//!   of a core; otherwise a poll pays one thread-local lookup and a comparison;
//! - only a poll that crossed the blocking threshold by the wall clock — rare — reads its
//!   counters at its end and compares them with the reading from before it began.
//!
//! The time a poll was neither on a CPU nor on a run queue is time blocked in the kernel only
//! if the thread gave its CPU up (a voluntary context switch, counted by `getrusage`). On a
//! virtual machine the hypervisor also takes CPUs away (steal time): the guest sees its thread
//! running, yet it ran nothing, and no guest counter says so per thread. A poll without a
//! voluntary switch therefore counts that time as waited: on a busy host it is steal, and a
//! thread that never slept did not block.
//!
//! That reading is the thread's last, at most [`REFRESH`] before the poll: a thread that parked
//! (gave its CPU up waiting for work) in that millisecond counts as having slept during the
//! poll, and the poll's stolen time, if any, then counts as blocked — the error, rare, is
//! toward reporting; reading the switches at every poll's start would cost a system call each.
//!
//! The reading before a poll is at most [`REFRESH`] older than the poll's start, so the
//! run-queue wait attributed to the poll may include up to that much from just before it: an
//! error of at most 1 ms against a 10 ms threshold, in the direction of *not* reporting. When
//! the reading is taken after the poll began instead (the thread was preempted between the
//! request's start and its first poll's reading), the time before the reading counts as waited,
//! never as held: the same direction. Other platforms, or a Linux without `schedstat`, keep the
//! wall clock (see `split`).

use std::time::{Duration, Instant};

/// How old a thread's last reading of its counters may be at a poll's start before the
/// thread reads them again.
pub const REFRESH: Duration = Duration::from_millis(1);

/// A poll's wall-clock time, split by what its thread was doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollSplit {
    /// Running on a CPU (user and kernel time).
    pub on_cpu: Duration,
    /// Off the CPU and not runnable: sleeping (`std::thread::sleep`), waiting for I/O in a
    /// blocking system call, or for a contended synchronous lock.
    pub blocked: Duration,
    /// Runnable but waiting for a CPU: preempted by other threads or processes, throttled
    /// by a CPU quota, or on a virtual CPU the hypervisor took away (steal time).
    pub waited: Duration,
}

impl PollSplit {
    /// The time the poll held its executor thread: on a CPU or blocked. Time spent waiting for
    /// a CPU is not held: no other task could have run on that thread meanwhile either.
    pub fn held(&self) -> Duration {
        self.on_cpu + self.blocked
    }

    /// The whole poll, by the wall clock.
    pub fn wall(&self) -> Duration {
        self.on_cpu + self.blocked + self.waited
    }

    /// A poll measured by the wall clock alone: all of it counted as held (on a CPU).
    pub(crate) fn wall_only(wall: Duration) -> Self {
        Self {
            on_cpu: wall,
            blocked: Duration::ZERO,
            waited: Duration::ZERO,
        }
    }

    /// Splits `wall` by the counters' increase over a span that covers the poll: run-queue
    /// wait first (capped at the poll), then CPU time (capped at what is left); the rest is
    /// blocked when the thread `slept` (gave its CPU up at least once), and otherwise waited:
    /// a thread that never gave its CPU up was not blocked, so the time it was neither on a
    /// CPU nor on a run queue is time the hypervisor ran something else (steal).
    pub(crate) fn from_counters(
        wall: Duration,
        ran: Duration,
        waited: Duration,
        slept: bool,
    ) -> Self {
        let waited = waited.min(wall);
        let not_waiting = wall.saturating_sub(waited);
        let on_cpu = ran.min(not_waiting);
        let rest = not_waiting.saturating_sub(on_cpu);
        if slept {
            Self {
                on_cpu,
                blocked: rest,
                waited,
            }
        } else {
            Self {
                on_cpu,
                blocked: Duration::ZERO,
                waited: waited + rest,
            }
        }
    }

    /// Like [`from_counters`](Self::from_counters) for counters whose first reading was taken
    /// `unknown` after the poll began: they cover only the rest of it. The time before that
    /// reading is not known to have been held, so it counts as waited — a preempted thread is
    /// never taken for a blocked one; the error is toward not reporting, by at most `unknown`.
    pub(crate) fn from_late_counters(
        wall: Duration,
        unknown: Duration,
        ran: Duration,
        waited: Duration,
        slept: bool,
    ) -> Self {
        let covered = wall.saturating_sub(unknown);
        let split = Self::from_counters(covered, ran, waited, slept);
        Self {
            waited: split.waited + wall.saturating_sub(covered),
            ..split
        }
    }
}

/// Called as a poll starts at `start` on the calling thread: opens the thread's counters
/// (once per thread) and reads them when the last reading is older than [`REFRESH`].
pub(crate) fn poll_starts(start: Instant) {
    #[cfg(target_os = "linux")]
    linux::poll_starts(start);
    #[cfg(not(target_os = "linux"))]
    let _ = start;
}

/// The split of a poll on the calling thread that ran from `start` to `end`; the wall clock
/// alone where the counters are not available (other platforms, no `schedstat`, a thread not
/// registered before the poll began).
pub(crate) fn split(start: Instant, end: Instant) -> PollSplit {
    let wall = end.saturating_duration_since(start);
    #[cfg(target_os = "linux")]
    if let Some(split) = linux::split(start, wall) {
        return split;
    }
    PollSplit::wall_only(wall)
}

/// Whether poll times are split by the kernel's per-thread counters on this machine (Linux
/// with `schedstat`), rather than measured by the wall clock alone.
pub fn splits_polls() -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::available()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// How long the threads that polled timed handlers have waited runnable for a CPU, in total,
/// as of their latest readings; `None` where poll times are not split (see
/// [`splits_polls`]). Its growth over a minute is the executor's CPU starvation.
pub fn executor_cpu_wait() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        linux::total_wait()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The calling thread's time on a CPU so far, from its CPU-time clock (Linux); `None`
/// elsewhere. For calibrating work by CPU time rather than by the wall clock, which on a busy
/// machine counts the time other processes had the CPU.
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        linux::thread_cpu_time()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::{Cell, OnceCell};
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use nix::sys::resource::{UsageWho, getrusage};
    use nix::time::ClockId;

    use super::{PollSplit, REFRESH};

    /// A reading taken later than this after a poll's start is not a reading from before it.
    const AT_START: Duration = Duration::from_micros(100);

    /// One reading of a thread's counters (nanoseconds since the thread started).
    #[derive(Clone, Copy, Debug)]
    struct Reading {
        at: Instant,
        ran: u64,
        waited: u64,
        /// Voluntary context switches so far; `None` when `getrusage` failed.
        gave_up: Option<std::ffi::c_long>,
    }

    impl Reading {
        /// Whether the thread gave its CPU up between `self` and `later`; `true` when either
        /// reading could not tell (time off the CPU is then taken as blocked, as it may be).
        fn slept_before(&self, later: &Reading) -> bool {
            match (self.gave_up, later.gave_up) {
                (Some(before), Some(after)) => after != before,
                _ => true,
            }
        }
    }

    /// The calling thread's `schedstat` file and its last reading.
    struct Counters {
        file: File,
        last: Cell<Reading>,
    }

    impl Counters {
        fn open() -> Option<Self> {
            let file = File::open("/proc/thread-self/schedstat").ok()?;
            let first = read(&file)?;
            Some(Self {
                file,
                last: Cell::new(first),
            })
        }

        /// Reads the counters now, keeps the reading, and adds the wait since the previous
        /// one to the process's total.
        fn refresh(&self) -> Option<(Reading, Reading)> {
            let now = read(&self.file)?;
            let before = self.last.replace(now);
            TOTAL_WAIT.fetch_add(now.waited.saturating_sub(before.waited), Ordering::Relaxed);
            Some((before, now))
        }
    }

    fn read(file: &File) -> Option<Reading> {
        let mut buffer = [0u8; 96];
        let len = file.read_at(&mut buffer, 0).ok()?;
        let at = Instant::now();
        let text = std::str::from_utf8(buffer.get(..len)?).ok()?;
        let mut fields = text.split_ascii_whitespace();
        let scheduled: u64 = fields.next()?.parse().ok()?;
        let waited = fields.next()?.parse().ok()?;
        // The thread's CPU-time clock is exact on every kernel; `schedstat`'s own figure for a
        // running thread is, on some, brought up to date only at scheduler ticks.
        let ran = ClockId::CLOCK_THREAD_CPUTIME_ID
            .now()
            .ok()
            .and_then(|time| {
                let secs = u64::try_from(time.tv_sec()).ok()?;
                let nanos = u64::try_from(time.tv_nsec()).ok()?;
                secs.checked_mul(1_000_000_000)?.checked_add(nanos)
            })
            .unwrap_or(scheduled);
        let gave_up = getrusage(UsageWho::RUSAGE_THREAD)
            .ok()
            .map(|usage| usage.voluntary_context_switches());
        Some(Reading {
            at,
            ran,
            waited,
            gave_up,
        })
    }

    /// Run-queue wait of every thread, as of its latest reading, in nanoseconds.
    static TOTAL_WAIT: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// `None` when this thread's counters cannot be read.
        static THIS_THREAD: OnceCell<Option<Counters>> = const { OnceCell::new() };
    }

    /// Whether this kernel has readable per-thread counters (probed once).
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            File::open("/proc/thread-self/schedstat")
                .ok()
                .and_then(|file| read(&file))
                .is_some()
        })
    }

    pub(super) fn thread_cpu_time() -> Option<Duration> {
        let file = File::open("/proc/thread-self/schedstat").ok()?;
        read(&file).map(|reading| Duration::from_nanos(reading.ran))
    }

    pub(super) fn total_wait() -> Option<Duration> {
        available().then(|| Duration::from_nanos(TOTAL_WAIT.load(Ordering::Relaxed)))
    }

    pub(super) fn poll_starts(start: Instant) {
        THIS_THREAD.with(|this| {
            let Some(counters) = this.get_or_init(Counters::open) else {
                return;
            };
            if start.saturating_duration_since(counters.last.get().at) > REFRESH {
                counters.refresh();
            }
        });
    }

    /// The split of the calling thread's poll that began at `start`, `wall` ago.
    pub(super) fn split(start: Instant, wall: Duration) -> Option<PollSplit> {
        THIS_THREAD.with(|this| {
            let counters = this.get()?.as_ref()?;
            let (before, now) = counters.refresh()?;
            let ran = Duration::from_nanos(now.ran.saturating_sub(before.ran));
            let waited = Duration::from_nanos(now.waited.saturating_sub(before.waited));
            let slept = before.slept_before(&now);
            // A reading taken after the poll began (the thread was preempted between the
            // request's start and the poll's first reading, or a nested poll refreshed it).
            let unknown = before.at.saturating_duration_since(start);
            if unknown > AT_START {
                return Some(PollSplit::from_late_counters(
                    wall, unknown, ran, waited, slept,
                ));
            }
            Some(PollSplit::from_counters(wall, ran, waited, slept))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_split_the_wall_clock_never_past_it() {
        let ms = Duration::from_millis;
        // Preempted: 30 ms by the wall, 4 ms on a CPU, 26 ms waiting for one.
        let split = PollSplit::from_counters(ms(30), ms(4), ms(26), false);
        assert_eq!(
            (split.on_cpu, split.blocked, split.waited),
            (ms(4), ms(0), ms(26))
        );
        assert_eq!(split.held(), ms(4));
        // A thread that never gave its CPU up, on a virtual CPU the hypervisor took away for
        // 29 ms of 46 (measured on this project's CI machine under load): not blocked.
        let split = PollSplit::from_counters(ms(46), ms(16), ms(1), false);
        assert_eq!(
            (split.on_cpu, split.blocked, split.waited),
            (ms(16), ms(0), ms(30))
        );
        // The same time off a CPU after a voluntary switch is blocked.
        let split = PollSplit::from_counters(ms(46), ms(16), ms(1), true);
        assert_eq!(
            (split.on_cpu, split.blocked, split.waited),
            (ms(16), ms(29), ms(1))
        );
        // Asleep: 20 ms by the wall, almost nothing on a CPU or waiting.
        let split = PollSplit::from_counters(ms(20), ms(0), ms(0), true);
        assert_eq!(split.blocked, ms(20));
        // Counters over a span a little wider than the poll: capped at the poll.
        let split = PollSplit::from_counters(ms(10), ms(9), ms(3), true);
        assert_eq!(split.waited, ms(3));
        assert_eq!(split.on_cpu, ms(7));
        assert_eq!(split.wall(), ms(10));
        let split = PollSplit::from_counters(ms(10), ms(50), ms(50), true);
        assert_eq!(
            (split.on_cpu, split.waited, split.held()),
            (ms(0), ms(10), ms(0))
        );
        // Preempted 12 ms before the poll's first reading, then 3 ms on a CPU: the 12 ms are
        // not held.
        let split = PollSplit::from_late_counters(ms(15), ms(12), ms(3), ms(0), true);
        assert_eq!(
            (split.on_cpu, split.blocked, split.waited),
            (ms(3), ms(0), ms(12))
        );
        assert_eq!(split.wall(), ms(15));
        // A reading later than the whole poll (a nested poll's): nothing known, nothing held.
        let split = PollSplit::from_late_counters(ms(15), ms(20), ms(3), ms(1), true);
        assert_eq!((split.held(), split.wall()), (ms(0), ms(15)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_sleep_is_blocked_and_a_spin_is_on_a_cpu() {
        if !splits_polls() {
            eprintln!("skipped: this kernel has no /proc/thread-self/schedstat");
            return;
        }
        let start = Instant::now();
        poll_starts(start);
        std::thread::sleep(Duration::from_millis(30));
        let slept = split(start, Instant::now());
        assert!(slept.blocked >= Duration::from_millis(20), "{slept:?}");

        let start = Instant::now();
        poll_starts(start);
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(());
        }
        let spun = split(start, Instant::now());
        // On a CPU, or waiting for one when the machine is busy (or its virtual CPU taken by
        // the hypervisor); a spinning thread never gives its CPU up, so never blocked.
        assert!(
            spun.on_cpu + spun.waited >= Duration::from_millis(45),
            "{spun:?}"
        );
        assert_eq!(spun.blocked, Duration::ZERO, "{spun:?}");
        assert!(executor_cpu_wait().is_some());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reading_later_than_the_polls_start_does_not_make_it_held() {
        if !splits_polls() {
            eprintln!("skipped: this kernel has no /proc/thread-self/schedstat");
            return;
        }
        // As when the thread is preempted between a request's start and its first poll's
        // reading (on a busy machine, often inside that very read): the reading is 20 ms later
        // than the poll's start, and the poll then runs 1 ms.
        let start = Instant::now();
        poll_starts(start);
        std::thread::sleep(Duration::from_millis(5));
        let Some(start) = start.checked_sub(Duration::from_millis(20)) else {
            panic!("the monotonic clock starts less than 20 ms before this test");
        };
        poll_starts(start);
        let began = Instant::now();
        while began.elapsed() < Duration::from_millis(1) {
            std::hint::black_box(());
        }
        let split = split(start, Instant::now());
        assert!(split.wall() >= Duration::from_millis(21), "{split:?}");
        assert!(split.held() < Duration::from_millis(10), "{split:?}");
    }
}
