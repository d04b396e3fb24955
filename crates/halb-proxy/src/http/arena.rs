//! The worker's arena: small, short-lived pieces of bytes (request heads
//! as read, response heads, chunk-size lines) share a block rather than
//! each costing an allocation.

use std::cell::RefCell;

use bytes::BytesMut;

/// Pieces of this size or less are carved from the worker's arena.
const ARENA_BLOCK: usize = 16 * 1024;

thread_local! {
    /// This worker's arena: the current block's free space.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The bytes `fill` writes (it is given at least `room` bytes of space),
/// carved from the worker's arena. A block is freed when its last piece is.
pub(crate) fn carve(room: usize, fill: impl FnOnce(&mut BytesMut)) -> BytesMut {
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() < room {
            *arena = BytesMut::with_capacity(ARENA_BLOCK.max(room));
        }
        fill(&mut arena);
        arena.split()
    })
}
