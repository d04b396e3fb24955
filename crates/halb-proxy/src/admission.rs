//! Which client connections halb takes, and when: connection caps per
//! listener and for the process (derived from the file-descriptor limit,
//! with a reserve kept for the admin API, health checks and backends),
//! closing the oldest idle keep-alive clients under pressure (as HAProxy
//! does), backing off when `accept` runs out of descriptors, and log lines
//! that say how often something happened instead of repeating it.
//!
//! At a cap the accept loop stops accepting: new connections wait in the
//! kernel's backlog (backpressure), rather than being accepted and closed.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Descriptors kept back from client connections: the admin API, health
/// checks, the access log, etcd and peer links need some even when
/// clients hold all they may.
const MIN_RESERVE: usize = 64;

/// The process's descriptor budget, read once from `RLIMIT_NOFILE`.
#[derive(Debug)]
pub(crate) struct FdBudget {
    /// `RLIMIT_NOFILE` (soft) when halb started.
    pub limit: usize,
    /// Descriptors the process held when the data path started (listener
    /// sockets, the admin API, log files, the runtime's own).
    pub base: usize,
    /// Client connections open now, over every listener.
    open: AtomicUsize,
    /// Splice pipes open now (two descriptors each).
    pipes: AtomicUsize,
    /// Backend connections open now (in use or pooled).
    backends: AtomicUsize,
}

impl FdBudget {
    fn read() -> FdBudget {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(usize::MAX / 4, |n| {
                usize::try_from(n).unwrap_or(usize::MAX / 4)
            });
        let base = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
        FdBudget {
            limit,
            base,
            open: AtomicUsize::new(0),
            pipes: AtomicUsize::new(0),
            backends: AtomicUsize::new(0),
        }
    }

    /// Whether one more client would pass the process's cap. By default
    /// each client counts with a backend connection, held or not (a TCP
    /// relay's comes right after its accept), so clients stop at
    /// [`client_cap`](Self::client_cap). For a listener set above that
    /// (`beyond_default`), the descriptors really held count: clients,
    /// backend connections and pipes, with room left for one more client
    /// and its backend connection.
    fn full(&self, beyond_default: bool) -> bool {
        if beyond_default {
            return self.in_use() + 2 > self.available();
        }
        let open = self.open.load(Ordering::Relaxed);
        let pipes = self.pipes.load(Ordering::Relaxed);
        open >= self.client_cap() || 2 * (open + 1) + 2 * pipes > self.available()
    }

    /// Descriptors that clients, backend connections and pipes hold now.
    fn in_use(&self) -> usize {
        self.open.load(Ordering::Relaxed)
            + self.backends.load(Ordering::Relaxed)
            + 2 * self.pipes.load(Ordering::Relaxed)
    }

    /// What is left for clients, their backends and pipes.
    fn available(&self) -> usize {
        self.limit.saturating_sub(self.base + self.reserve())
    }

    /// Descriptors never given to clients.
    pub fn reserve(&self) -> usize {
        MIN_RESERVE.max(self.limit / 16)
    }

    /// A listener's `max_connections` when unset: each client may hold a
    /// backend connection too, so half of what the descriptors held at
    /// start and the reserve leave. A listener given more takes more while
    /// descriptors really remain (idle clients hold no backend).
    pub fn client_cap(&self) -> usize {
        (self.available() / 2).max(1)
    }
}

/// A splice pipe's two descriptors, counted while it lives. Pipes are an
/// optimisation (the relay copies without one), so they get only what the
/// clients, their backend connections and the reserve leave.
#[derive(Debug)]
pub(crate) struct PipeTicket(());

impl PipeTicket {
    /// `None` when a pipe would eat into what clients may need: a backend
    /// connection for each of them.
    pub fn take() -> Option<PipeTicket> {
        let budget = budget();
        budget.pipes.fetch_add(1, Ordering::Relaxed);
        let clients = budget.open.load(Ordering::Relaxed);
        let backends = budget.backends.load(Ordering::Relaxed);
        if budget.in_use() + clients.saturating_sub(backends) > budget.available() {
            budget.pipes.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(PipeTicket(()))
    }
}

impl Drop for PipeTicket {
    fn drop(&mut self) {
        budget().pipes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend connection's descriptor, counted while it is open, so that
/// the process's cap knows what its clients really hold.
#[derive(Debug)]
pub(crate) struct BackendDescriptor(());

impl BackendDescriptor {
    pub fn count() -> BackendDescriptor {
        budget().backends.fetch_add(1, Ordering::Relaxed);
        BackendDescriptor(())
    }
}

impl Drop for BackendDescriptor {
    fn drop(&mut self) {
        budget().backends.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's descriptor budget.
pub(crate) fn budget() -> &'static FdBudget {
    static BUDGET: OnceLock<FdBudget> = OnceLock::new();
    BUDGET.get_or_init(FdBudget::read)
}

/// A listener's open client connections, shared by its workers' accept
/// loops, and the wake-up of a loop waiting at the cap.
#[derive(Debug, Default)]
pub(crate) struct ListenerAdmission {
    open: AtomicUsize,
    /// Accept loops waiting for a connection to close.
    waiting: AtomicUsize,
    released: Notify,
    /// Connections refused: no PROXY header, a bad one, or a client over
    /// its per-address limits.
    pub refused: AtomicU64,
    /// Idle clients closed to make room for new ones.
    pub evicted: AtomicU64,
    /// Per-client-address state, used only with `[listener.limits]`.
    pub clients: crate::client_limits::ClientTable,
}

impl ListenerAdmission {
    /// Whether a new connection may be accepted now, under the listener's
    /// `max_connections` and the process's cap.
    #[cfg(test)]
    pub fn has_room(&self, max_connections: Option<usize>) -> bool {
        self.full(max_connections).is_none()
    }

    /// Which cap a new connection would pass: `Some(Some(key))` this
    /// listener's (only its own idle clients make room), `Some(None)` the
    /// process's (any idle client does), `None` neither.
    pub fn full(&self, max_connections: Option<usize>) -> Option<Option<usize>> {
        let budget = budget();
        let default = budget.client_cap();
        let cap = max_connections.unwrap_or(default);
        if self.open.load(Ordering::Relaxed) >= cap {
            return Some(Some(self.key()));
        }
        budget.full(cap > default).then_some(None)
    }

    /// Tells this listener's idle connections from others'.
    pub fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Wait until a connection of this listener closes, or `patience`
    /// passes (a close elsewhere in the process frees room too).
    pub async fn wait_for_room(&self, patience: Duration) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(patience, self.released.notified()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Count a client connection as open until the ticket drops.
    pub fn admit(self: &Arc<Self>) -> AdmissionTicket {
        self.open.fetch_add(1, Ordering::Relaxed);
        budget().open.fetch_add(1, Ordering::Relaxed);
        AdmissionTicket(self.clone())
    }

    /// Client connections of this listener open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// An admitted client connection; its drop frees its place.
pub(crate) struct AdmissionTicket(Arc<ListenerAdmission>);

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        budget().open.fetch_sub(1, Ordering::Relaxed);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.released.notify_waiters();
        }
    }
}

thread_local! {
    /// This worker's idle client connections, by when their idle timeout
    /// ends.
    static IDLE: IdleClients = IdleClients::default();
}

/// A client connection that halb may close to get its descriptor back.
pub(crate) trait Evict {
    /// Close now (the connection's own task sees its end and cleans up).
    fn evict(&self);
    /// Its idle timeout has passed, or its listener is closing: wake its
    /// task, which closes the connection as it closes any idle one.
    fn end_idle(&self, why: IdleEnd);
}

/// Why an idle connection's wait ends from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleEnd {
    TimedOut,
    Closing,
}

/// Idle client connections (nothing in flight, waiting for a request) of
/// one worker, by the end of their idle timeout: the ones to close first
/// when descriptors run short, and the ones [`expire_idle`] closes when
/// their time comes. An idle connection's task then holds no timer and no
/// wait on its listener's close: a pointer and a readiness poll.
#[derive(Default)]
struct IdleClients {
    next: Cell<u64>,
    /// By deadline, then arrival: the listener (its
    /// [`ListenerAdmission::key`]) and the connection.
    entries: RefCell<BTreeMap<(Instant, u64), IdleClient>>,
    /// Wakes [`expire_idle`] when a new first deadline comes.
    earlier: Rc<Notify>,
}

/// An idle connection: its listener's [`ListenerAdmission::key`], and it.
type IdleClient = (usize, Weak<dyn Evict>);

/// A connection's place among the idle ones, held by the connection (not
/// its task, which stays small): empty while it is busy.
#[derive(Default)]
pub(crate) struct IdleEntry(Cell<Option<(Instant, u64)>>);

impl IdleEntry {
    /// The connection went idle until `deadline`: it may be evicted from
    /// now on, and is told to end at `deadline`.
    pub fn start(&self, listener: usize, connection: Weak<dyn Evict>, deadline: Instant) {
        self.end();
        IDLE.with(|idle| {
            let id = idle.next.get();
            idle.next.set(id + 1);
            let mut entries = idle.entries.borrow_mut();
            let first = entries
                .keys()
                .next()
                .is_none_or(|(first, _)| deadline < *first);
            entries.insert((deadline, id), (listener, connection));
            self.0.set(Some((deadline, id)));
            if first {
                idle.earlier.notify_one();
            }
        });
    }

    /// The connection is busy again (or closing).
    pub fn end(&self) {
        if let Some(key) = self.0.take() {
            let _ = IDLE.try_with(|idle| idle.entries.borrow_mut().remove(&key));
        }
    }
}

impl Drop for IdleEntry {
    fn drop(&mut self) {
        self.end();
    }
}

/// Take this worker's first idle entry (of the listener `only`, if given)
/// that `pick` accepts, out of the table.
fn take_idle(only: Option<usize>, pick: impl Fn(Instant) -> bool) -> Option<Weak<dyn Evict>> {
    IDLE.with(|idle| {
        let mut entries = idle.entries.borrow_mut();
        let key = entries
            .iter()
            .find(|(_, (listener, _))| only.is_none_or(|only| only == *listener))
            .map(|(key, _)| *key)
            .filter(|(deadline, _)| pick(*deadline))?;
        entries.remove(&key).map(|(_, connection)| connection)
    })
}

/// Close the oldest idle client connections of this worker (of the
/// listener `only`, if given), up to `count`; how many were closed. The
/// first to go are the nearest to their idle timeout.
pub(crate) fn evict_oldest_idle(count: usize, only: Option<usize>) -> usize {
    let mut evicted = 0;
    while evicted < count {
        let Some(connection) = take_idle(only, |_| true) else {
            break;
        };
        if let Some(connection) = connection.upgrade() {
            connection.evict();
            evicted += 1;
        }
    }
    evicted
}

/// Tell this worker's idle connections of `listener` to close now: it
/// is closing. Connections busy now see it when they are done.
pub(crate) fn end_idle_of(listener: usize) {
    while let Some(connection) = take_idle(Some(listener), |_| true) {
        if let Some(connection) = connection.upgrade() {
            connection.end_idle(IdleEnd::Closing);
        }
    }
}

/// Run for the worker's life: end this worker's idle connections as their
/// idle timeouts pass, with one timer for all of them.
pub(crate) async fn expire_idle() {
    let earlier = IDLE.with(|idle| idle.earlier.clone());
    loop {
        let first = IDLE.with(|idle| idle.entries.borrow().keys().next().map(|(d, _)| *d));
        match first {
            None => earlier.notified().await,
            Some(deadline) if deadline > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = earlier.notified() => {}
                }
            }
            Some(_) => {}
        }
        let now = Instant::now();
        while let Some(connection) = take_idle(None, |deadline| deadline <= now) {
            if let Some(connection) = connection.upgrade() {
                connection.end_idle(IdleEnd::TimedOut);
            }
        }
    }
}

/// Whether this worker has an idle client connection to close (of the
/// listener `only`, if given).
pub(crate) fn has_idle(only: Option<usize>) -> bool {
    IDLE.with(|idle| {
        let entries = idle.entries.borrow();
        match only {
            None => !entries.is_empty(),
            Some(only) => entries.values().any(|(listener, _)| *listener == only),
        }
    })
}

/// Idle client connections registered on this worker.
#[cfg(test)]
pub(crate) fn idle_count() -> usize {
    IDLE.with(|idle| idle.entries.borrow().len())
}

/// A warning that may fire thousands of times a second (a flood): logged
/// at most once per second, saying how many times it happened since.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    /// Milliseconds since `EPOCH` of the last line, +1 (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl RateLimitedLog {
    /// A log that has not fired yet.
    pub const fn new() -> Self {
        RateLimitedLog {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether it has logged a line yet.
    #[cfg(test)]
    pub fn has_fired(&self) -> bool {
        self.last.load(Ordering::Relaxed) != 0
    }

    /// Count one occurrence; `Some(n)` when a line is due now, `n` being
    /// the occurrences it stands for (this one and those not logged).
    pub fn hit(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 1000 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed) + 1)
    }
}

/// Whether an `accept` error means the process or system is out of
/// descriptors.
pub fn out_of_descriptors(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn the_budget_keeps_a_reserve_and_halves_the_rest() {
        let budget = FdBudget {
            limit: 20_000,
            base: 50,
            open: AtomicUsize::new(0),
            pipes: AtomicUsize::new(0),
            backends: AtomicUsize::new(0),
        };
        assert_eq!(budget.reserve(), 1_250);
        assert_eq!(budget.client_cap(), 9_350);
        let small = FdBudget {
            limit: 1_024,
            base: 50,
            open: AtomicUsize::new(0),
            pipes: AtomicUsize::new(0),
            backends: AtomicUsize::new(0),
        };
        assert_eq!(small.reserve(), 64);
        assert_eq!(small.client_cap(), 455);
    }

    #[test]
    fn the_process_cap_counts_the_descriptors_really_held() {
        let budget = FdBudget {
            limit: 20_000,
            base: 50,
            open: AtomicUsize::new(10_000),
            pipes: AtomicUsize::new(0),
            backends: AtomicUsize::new(0),
        };
        // 10,000 idle clients (more than the default cap of 9,350) hold
        // no backend: one more still fits.
        assert!(!budget.full(true));
        assert!(budget.full(false), "past the default cap");
        budget.backends.store(8_000, Ordering::Relaxed);
        budget.pipes.store(349, Ordering::Relaxed);
        assert_eq!(budget.in_use(), 18_698);
        assert!(
            !budget.full(true),
            "18,700 of 18,700 once the next one is in"
        );
        budget.pipes.store(350, Ordering::Relaxed);
        assert!(budget.full(true));
    }

    #[test]
    fn a_flood_of_warnings_logs_once_a_second_with_a_count() {
        let log = RateLimitedLog::new();
        assert_eq!(log.hit(), Some(1));
        for _ in 0..999 {
            assert_eq!(log.hit(), None);
        }
        std::thread::sleep(Duration::from_millis(1010));
        assert_eq!(log.hit(), Some(1000));
    }

    #[derive(Default)]
    struct Client {
        evicted: Cell<bool>,
        ended: Cell<Option<IdleEnd>>,
        idle: IdleEntry,
    }

    impl Evict for Client {
        fn evict(&self) {
            self.evicted.set(true);
        }

        fn end_idle(&self, why: IdleEnd) {
            self.ended.set(Some(why));
        }
    }

    fn go_idle(client: &Rc<Client>, listener: usize, deadline: Instant) {
        let weak: Weak<dyn Evict> = Rc::downgrade(&(client.clone() as Rc<dyn Evict>));
        client.idle.start(listener, weak, deadline);
    }

    #[test]
    fn the_oldest_idle_connection_is_evicted_first() {
        let (first, second, third) = (
            Rc::new(Client::default()),
            Rc::new(Client::default()),
            Rc::new(Client::default()),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        for client in [&first, &second, &third] {
            go_idle(client, 1, deadline);
        }
        assert_eq!(idle_count(), 3);
        // Busy again: no longer a candidate.
        first.idle.end();
        assert!(has_idle(Some(1)) && !has_idle(Some(2)));
        assert_eq!(
            evict_oldest_idle(1, Some(2)),
            0,
            "another listener's are kept"
        );
        assert_eq!(evict_oldest_idle(1, Some(1)), 1);
        assert!(!first.evicted.get() && second.evicted.get() && !third.evicted.get());
        drop(third);
        assert_eq!(idle_count(), 0, "a connection that goes leaves the table");
        assert_eq!(evict_oldest_idle(4, None), 0);
    }

    /// One timer per worker ends each idle connection at its deadline, in
    /// deadline order, whatever order they went idle in; a closing
    /// listener's idle connections end at once, the others' stay.
    #[tokio::test]
    async fn idle_connections_end_at_their_deadlines_and_when_their_listener_closes() {
        let expiring = tokio::task::LocalSet::new();
        expiring
            .run_until(async {
                tokio::task::spawn_local(expire_idle());
                let now = Instant::now();
                let (late, early, other) = (
                    Rc::new(Client::default()),
                    Rc::new(Client::default()),
                    Rc::new(Client::default()),
                );
                go_idle(&late, 1, now + Duration::from_secs(60));
                go_idle(&early, 1, now + Duration::from_millis(200));
                go_idle(&other, 2, now + Duration::from_millis(1_000));
                tokio::task::yield_now().await;
                assert_eq!(early.ended.get(), None);
                tokio::time::sleep_until(now + Duration::from_millis(600)).await;
                assert_eq!(early.ended.get(), Some(IdleEnd::TimedOut));
                assert_eq!(other.ended.get(), None);
                assert_eq!(late.ended.get(), None);
                end_idle_of(1);
                assert_eq!(late.ended.get(), Some(IdleEnd::Closing));
                assert_eq!(other.ended.get(), None);
                assert_eq!(idle_count(), 1);
                tokio::time::sleep_until(now + Duration::from_millis(1_500)).await;
                assert_eq!(other.ended.get(), Some(IdleEnd::TimedOut));
                assert_eq!(idle_count(), 0);
            })
            .await;
    }

    #[tokio::test]
    async fn at_the_cap_a_close_wakes_the_waiting_accept_loop() {
        let admission = Arc::new(ListenerAdmission::default());
        let ticket = admission.admit();
        assert!(!admission.has_room(Some(1)));
        assert!(admission.has_room(Some(2)));
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                admission.wait_for_room(Duration::from_secs(5)).await;
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(ticket);
        let waited = waiter.await.unwrap();
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(admission.has_room(Some(1)));
    }
}
