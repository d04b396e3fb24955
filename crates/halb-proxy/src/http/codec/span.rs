//! Where a piece of a head is, as offsets into it: a head is parsed while
//! still in the read buffer, then split off and shared by the header values
//! (slices of it, not copies). Offsets are `u32` so the array a head's
//! spans live in stays small to clear.

use bytes::Bytes;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `part`'s place in `base`, which it must lie in (heads are far below
    /// 4 GiB: their size is capped).
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize - base.as_ptr() as usize) as u32;
        Span {
            start,
            end: start + part.len() as u32,
        }
    }

    pub(crate) fn slice(self, bytes: &Bytes) -> Bytes {
        bytes.slice(self.start as usize..self.end as usize)
    }

    pub(crate) fn bytes(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start as usize..self.end as usize]
    }
}
