//! Follows the framing of the requests on one client connection, byte by
//! byte as they are read, to catch what hyper tolerates but a load balancer
//! must refuse: a request carrying both `Content-Length` and
//! `Transfer-Encoding` (RFC 9112 §6.3 lets a server reject it; a
//! smuggling attempt almost always looks like this). It also tells when a
//! request head starts and ends, which drives the head and idle timeouts.
//!
//! hyper remains the parser of record: when the tracker meets anything it
//! does not understand it stops tracking and leaves the verdict to hyper.

/// What the tracker saw in the bytes it was fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingEvent {
    /// The first byte of a request head arrived.
    HeadStarted,
    /// A whole request head arrived; `ambiguous` when it carries both
    /// Content-Length and Transfer-Encoding.
    HeadComplete { ambiguous: bool },
}

#[derive(Debug)]
enum State {
    /// Waiting for, or inside, a request head (bytes kept in `head`).
    Head,
    /// Skipping a fixed-length body.
    Body(u64),
    /// Inside a chunked body.
    Chunk(ChunkState),
    /// Not following any more (upgrade, CONNECT, or something hyper will reject).
    Off,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    /// Reading the chunk-size line; `size` so far, `ext` once past the digits.
    Size { size: u64, digits: u8, ext: bool },
    /// Skipping chunk data.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd { seen_cr: bool },
    /// After the last chunk: trailer lines until an empty line.
    Trailer { line_len: u64 },
}

/// The per-connection framing tracker.
#[derive(Debug)]
pub(crate) struct FramingTracker {
    state: State,
    head: Vec<u8>,
    max_head: usize,
}

impl FramingTracker {
    pub(crate) fn new(max_head: usize) -> Self {
        FramingTracker {
            state: State::Head,
            head: Vec::new(),
            max_head,
        }
    }

    /// Feed bytes just read from the client, in order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(FramingEvent)) {
        while !bytes.is_empty() {
            let used = match &mut self.state {
                State::Off => return,
                State::Head => self.feed_head(bytes, &mut on_event),
                State::Body(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    n
                }
                State::Chunk(chunk) => {
                    let (used, next) = feed_chunk(*chunk, bytes);
                    match next {
                        Some(next) => *chunk = next,
                        None => self.state = State::Head,
                    }
                    used
                }
            };
            bytes = &bytes[used..];
        }
    }

    fn feed_head(&mut self, bytes: &[u8], on_event: &mut impl FnMut(FramingEvent)) -> usize {
        if self.head.is_empty() {
            // Stray CRLFs between requests are allowed (RFC 9112 §2.2).
            let skip = bytes
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if skip == bytes.len() {
                return skip;
            }
            on_event(FramingEvent::HeadStarted);
            if skip > 0 {
                return skip;
            }
        }
        // Look for the end of the head, including across the previous read.
        let search_from = self.head.len().saturating_sub(3);
        self.head.extend_from_slice(bytes);
        let Some(end) = find_head_end(&self.head[search_from..]).map(|e| e + search_from) else {
            if self.head.len() > self.max_head {
                self.state = State::Off;
                self.head = Vec::new();
            }
            return bytes.len();
        };
        let used = bytes.len() - (self.head.len() - end);
        let framing = parse_head(&self.head[..end]);
        self.head.clear();
        match framing {
            Some(framing) => {
                on_event(FramingEvent::HeadComplete {
                    ambiguous: framing.ambiguous,
                });
                self.state = framing.next;
            }
            None => self.state = State::Off,
        }
        used
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

struct HeadFraming {
    ambiguous: bool,
    next: State,
}

/// Read the framing of one request head. `None` when it cannot be followed.
fn parse_head(head: &[u8]) -> Option<HeadFraming> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    if request.method == Some("CONNECT") {
        return None;
    }
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok()?.trim();
            content_length = Some(value.parse().ok()?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            let value = std::str::from_utf8(header.value).ok()?;
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            // Whether the connection switches protocols is decided by the
            // backend's answer; stop following rather than guess.
            return None;
        }
    }
    let ambiguous = transfer_encoding && content_length.is_some();
    let next = if transfer_encoding {
        if !chunked {
            return None;
        }
        State::Chunk(ChunkState::Size {
            size: 0,
            digits: 0,
            ext: false,
        })
    } else {
        match content_length {
            Some(0) | None => State::Head,
            Some(n) => State::Body(n),
        }
    };
    Some(HeadFraming { ambiguous, next })
}

/// Advance through a chunked body. Returns bytes used and the next chunk
/// state, or `None` when the body ended. Malformed input ends tracking by
/// returning to head state; hyper will reject the body itself.
fn feed_chunk(mut state: ChunkState, bytes: &[u8]) -> (usize, Option<ChunkState>) {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        state = match state {
            ChunkState::Size { size, digits, ext } => match b {
                b'\n' if size == 0 && digits > 0 => ChunkState::Trailer { line_len: 0 },
                b'\n' => ChunkState::Data(size),
                _ if ext => ChunkState::Size { size, digits, ext },
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if digits < 16 => ChunkState::Size {
                    size: size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64,
                    digits: digits + 1,
                    ext,
                },
                _ => ChunkState::Size {
                    size,
                    digits,
                    ext: true,
                },
            },
            ChunkState::Data(0) => {
                state = ChunkState::DataEnd { seen_cr: false };
                continue;
            }
            ChunkState::Data(left) => {
                let n = left.min((bytes.len() - i) as u64);
                i += n as usize;
                state = ChunkState::Data(left - n);
                continue;
            }
            ChunkState::DataEnd { seen_cr } => match b {
                b'\r' if !seen_cr => ChunkState::DataEnd { seen_cr: true },
                b'\n' => ChunkState::Size {
                    size: 0,
                    digits: 0,
                    ext: false,
                },
                _ => return (i, None),
            },
            ChunkState::Trailer { line_len } => match b {
                b'\n' if line_len == 0 => return (i + 1, None),
                b'\n' => ChunkState::Trailer { line_len: 0 },
                b'\r' => ChunkState::Trailer { line_len },
                _ => ChunkState::Trailer {
                    line_len: line_len + 1,
                },
            },
        };
        i += 1;
    }
    (i, Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<FramingEvent> {
        let mut tracker = FramingTracker::new(65536);
        let mut seen = Vec::new();
        for chunk in chunks {
            tracker.feed(chunk, |e| seen.push(e));
        }
        seen
    }

    const CLEAN: FramingEvent = FramingEvent::HeadComplete { ambiguous: false };
    const AMBIGUOUS: FramingEvent = FramingEvent::HeadComplete { ambiguous: true };
    const STARTED: FramingEvent = FramingEvent::HeadStarted;

    #[test]
    fn follows_pipelined_requests_with_bodies() {
        let stream = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(events(&[stream]), [STARTED, CLEAN, STARTED, CLEAN]);
    }

    #[test]
    fn follows_chunked_bodies_split_across_reads() {
        let stream: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nTrailer: v\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(
                events(&[a, b]),
                [STARTED, CLEAN, STARTED, CLEAN],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_body_that_looks_like_a_smuggled_request_is_only_a_body() {
        let body =
            b"GET /admin HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        stream.extend_from_slice(body);
        assert_eq!(events(&[&stream]), [STARTED, CLEAN]);
    }

    #[test]
    fn flags_content_length_with_transfer_encoding_in_either_order() {
        let te_first =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        let cl_first =
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(events(&[te_first]), [STARTED, AMBIGUOUS]);
        assert_eq!(events(&[cl_first]), [STARTED, AMBIGUOUS]);
    }

    #[test]
    fn stops_following_upgrades() {
        let stream = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(events(&[stream]), [STARTED]);
    }

    #[test]
    fn head_split_byte_by_byte() {
        let stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&chunks), [STARTED, CLEAN]);
    }
}
