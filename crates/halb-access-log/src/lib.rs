//! halb's access log: one line per HTTP request and per TCP connection, as
//! JSON (default) or plain text, to standard output or appended to a file.
//!
//! It stays off the hot path: the data path fills an [`AccessRecord`] (a
//! few copied fields, no formatting) and hands it to an [`AccessLogSink`],
//! which never waits: when the bounded queue is full the record is dropped
//! and counted. A dedicated thread ([`AccessLogWriter`]) formats the lines
//! and writes them through a buffer, flushed when the queue goes idle and
//! at least every 100 ms, so a slow disk delays the log, never the traffic.

mod format;
mod record;
pub mod rfc3339;
mod writer;

pub use format::{json_line, plain_line};
pub use record::{AccessRecord, Exchange};
pub use writer::{AccessLogSink, AccessLogStats, AccessLogWriter, QUEUE_CAPACITY};
