//! The queue between the data path and the access log's own thread, and
//! that thread.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halb_config::{AccessLog, AccessLogFormat};

use crate::format::{json_line, plain_line};
use crate::record::AccessRecord;

/// Records waiting for the writer thread; past this, records are dropped.
/// About 80 ms of a busy node's traffic, a few MiB at most.
pub const QUEUE_CAPACITY: usize = 8192;
/// Lines are on disk at most this long after they were written...
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// ...and this soon once no new record comes.
const FLUSH_WHEN_IDLE: Duration = Duration::from_millis(10);
const BUFFER_BYTES: usize = 64 * 1024;

/// What the access log did so far, shared by every writer a node starts
/// (reloads replace the writer, not the counts).
#[derive(Debug, Default)]
pub struct AccessLogStats {
    lines: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

impl AccessLogStats {
    /// Lines handed to the file or standard output.
    pub fn lines(&self) -> u64 {
        self.lines.load(Relaxed)
    }

    /// Records dropped because the queue was full (the writer fell behind).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Writes or flushes that failed (disk full, closed output).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Relaxed)
    }
}

/// Where the data path puts records. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct AccessLogSink {
    queue: SyncSender<AccessRecord>,
    stats: Arc<AccessLogStats>,
}

impl AccessLogSink {
    /// Queue `record` for the writer, or drop and count it when the queue
    /// is full or the writer has stopped.
    #[inline]
    pub fn send(&self, record: AccessRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(record)
        {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The access log's writer thread and the sink that feeds it.
#[derive(Debug)]
pub struct AccessLogWriter {
    sink: AccessLogSink,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AccessLogWriter {
    /// Open the output (a file is created if needed and appended to) and
    /// start the writer thread.
    pub fn start(config: &AccessLog, stats: Arc<AccessLogStats>) -> io::Result<AccessLogWriter> {
        let output: Box<dyn Write + Send> = match &config.path {
            Some(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                    })?,
            ),
            None => Box::new(io::stdout()),
        };
        Self::start_with(output, config.format, stats)
    }

    /// Start a writer on any output (tests use a shared buffer).
    pub fn start_with(
        output: Box<dyn Write + Send>,
        format: AccessLogFormat,
        stats: Arc<AccessLogStats>,
    ) -> io::Result<AccessLogWriter> {
        let (queue, records) = mpsc::sync_channel(QUEUE_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("halb-access-log".to_owned())
                .spawn(move || {
                    let output = BufWriter::with_capacity(BUFFER_BYTES, output);
                    write_lines(records, output, format, &stats, &stop)
                })?
        };
        Ok(AccessLogWriter {
            sink: AccessLogSink { queue, stats },
            stop,
            thread,
        })
    }

    /// A sink feeding this writer.
    pub fn sink(&self) -> AccessLogSink {
        self.sink.clone()
    }

    /// Let the writer finish on its own once every sink is gone: after a
    /// reload, requests still in flight on the old settings log their
    /// lines, then the thread flushes and ends.
    pub fn retire(self) {
        drop(self.sink);
    }

    /// Write what is queued, flush and stop the thread, waiting for it at
    /// most `limit` (a stuck disk must not hold up shutdown).
    pub fn stop(self, limit: Duration) {
        self.stop.store(true, Relaxed);
        drop(self.sink);
        let deadline = Instant::now() + limit;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            tracing::warn!("access log writer did not finish within {limit:?}; lines may be lost");
        }
    }
}

/// The writer thread: format each record, flush when the queue goes idle
/// and at least every [`FLUSH_EVERY`]; end when every sink is gone or
/// `stop` is set, after writing what is queued.
fn write_lines(
    records: Receiver<AccessRecord>,
    mut output: BufWriter<Box<dyn Write + Send>>,
    format: AccessLogFormat,
    stats: &AccessLogStats,
    stop: &AtomicBool,
) {
    let format_line = match format {
        AccessLogFormat::Json => json_line,
        AccessLogFormat::Plain => plain_line,
    };
    let mut line = String::with_capacity(512);
    let mut output_ok = true;
    // When the oldest unflushed line was written; `None` = nothing pending.
    let mut pending_since: Option<Instant> = None;
    loop {
        let wait = match pending_since {
            None => FLUSH_EVERY,
            Some(since) => FLUSH_WHEN_IDLE.min(FLUSH_EVERY.saturating_sub(since.elapsed())),
        };
        let (idle, ended) = match records.recv_timeout(wait) {
            Ok(record) => {
                line.clear();
                format_line(&mut line, &record);
                output_ok = report(output.write_all(line.as_bytes()), stats, output_ok);
                stats.lines.fetch_add(1, Relaxed);
                pending_since.get_or_insert_with(Instant::now);
                (false, false)
            }
            Err(RecvTimeoutError::Timeout) => (true, false),
            Err(RecvTimeoutError::Disconnected) => (true, true),
        };
        let stopping = ended || stop.load(Relaxed);
        if stopping {
            while let Ok(record) = records.try_recv() {
                line.clear();
                format_line(&mut line, &record);
                output_ok = report(output.write_all(line.as_bytes()), stats, output_ok);
                stats.lines.fetch_add(1, Relaxed);
            }
        }
        let due = pending_since.is_some_and(|since| idle || since.elapsed() >= FLUSH_EVERY);
        if stopping || due {
            output_ok = report(output.flush(), stats, output_ok);
            pending_since = None;
        }
        if stopping {
            return;
        }
    }
}

/// Count a failed write, and log it when the output was fine until now.
fn report(result: io::Result<()>, stats: &AccessLogStats, was_ok: bool) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            stats.write_errors.fetch_add(1, Relaxed);
            if was_ok {
                tracing::error!(error = %e, "cannot write the access log; lines are being lost");
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::record::Exchange;

    /// An output the test can read while the writer holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// An output that blocks every write until released: a stuck disk.
    struct Stuck(Arc<Mutex<()>>);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            drop(self.0.lock().unwrap());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            drop(self.0.lock().unwrap());
            Ok(())
        }
    }

    fn record(status: u16) -> AccessRecord {
        AccessRecord {
            time: SystemTime::now(),
            client: "127.0.0.1:4000".parse().unwrap(),
            listener: "web".into(),
            pool: "app".into(),
            backend: None,
            exchange: Exchange::Http {
                method: http::Method::GET,
                target: "/".parse().unwrap(),
                status,
            },
            bytes: 0,
            duration: Duration::from_millis(1),
            backend_duration: None,
            retries: 0,
        }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_line_appears_soon_without_more_traffic() {
        let output = Shared::default();
        let stats = Arc::new(AccessLogStats::default());
        let writer = AccessLogWriter::start_with(
            Box::new(output.clone()),
            AccessLogFormat::Plain,
            stats.clone(),
        )
        .unwrap();
        let started = Instant::now();
        writer.sink().send(record(204));
        wait_for("the line", || output.text().contains(" 204 "));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "flushed after {:?}",
            started.elapsed()
        );
        writer.stop(Duration::from_secs(1));
        assert_eq!(stats.lines(), 1);
        assert_eq!(stats.dropped(), 0);
    }

    #[test]
    fn stop_writes_everything_queued() {
        let output = Shared::default();
        let stats = Arc::new(AccessLogStats::default());
        let writer = AccessLogWriter::start_with(
            Box::new(output.clone()),
            AccessLogFormat::Json,
            stats.clone(),
        )
        .unwrap();
        let sink = writer.sink();
        for _ in 0..1000 {
            sink.send(record(200));
        }
        writer.stop(Duration::from_secs(5));
        assert_eq!(output.text().lines().count(), 1000);
        assert_eq!(stats.lines(), 1000);
        // The writer is gone: later records are dropped, not blocked on.
        sink.send(record(200));
        assert_eq!(stats.dropped(), 1);
    }

    #[test]
    fn a_retired_writer_ends_after_its_last_sink() {
        let output = Shared::default();
        let stats = Arc::new(AccessLogStats::default());
        let writer = AccessLogWriter::start_with(
            Box::new(output.clone()),
            AccessLogFormat::Json,
            stats.clone(),
        )
        .unwrap();
        let in_flight = writer.sink();
        writer.retire();
        in_flight.send(record(201));
        drop(in_flight);
        wait_for("the late line", || output.text().contains("\"status\":201"));
    }

    #[test]
    fn a_stuck_output_drops_records_instead_of_blocking_the_sender() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let stats = Arc::new(AccessLogStats::default());
        let writer = AccessLogWriter::start_with(
            Box::new(Stuck(gate.clone())),
            AccessLogFormat::Json,
            stats.clone(),
        )
        .unwrap();
        let sink = writer.sink();
        let started = Instant::now();
        // The buffer (64 KiB) fills, the write blocks, then the queue fills.
        let sent = QUEUE_CAPACITY * 2 + 2000;
        for _ in 0..sent {
            sink.send(record(200));
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "sending took {:?}",
            started.elapsed()
        );
        assert!(stats.dropped() > 0, "nothing was dropped");
        drop(held);
        writer.stop(Duration::from_secs(10));
        assert_eq!(stats.lines() + stats.dropped(), sent as u64);
    }
}
