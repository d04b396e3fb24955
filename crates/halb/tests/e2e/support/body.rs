//! Bodies that are generated and counted on the fly, so a 1 GiB transfer
//! never sits in the test's memory either.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

const CHUNK_BYTES: usize = 64 * 1024;

/// `total` bytes produced 64 KiB at a time from one shared buffer.
pub struct RepeatBody {
    remaining: u64,
    chunk: Bytes,
    announce_length: bool,
}

impl RepeatBody {
    /// No size hint: hyper sends it with `Transfer-Encoding: chunked`.
    pub fn chunked(total: u64) -> Self {
        Self::new(total, false)
    }

    /// An exact size hint: hyper sends it with `Content-Length`.
    pub fn sized(total: u64) -> Self {
        Self::new(total, true)
    }

    fn new(total: u64, announce_length: bool) -> Self {
        let pattern: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
        RepeatBody {
            remaining: total,
            chunk: Bytes::from(pattern),
            announce_length,
        }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = this.remaining.min(this.chunk.len() as u64) as usize;
        this.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.announce_length {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

/// Reads a body to its end, keeping only the byte count.
pub async fn count_body_bytes(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
        }
    }
    Ok(total)
}
