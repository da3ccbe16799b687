//! Counts the heap allocations owod makes (the system allocator underneath), so the `start` and
//! `stop` records can say how many the records between them cost, and the bytes in use, so that
//! memory freed after a storm goes back to the system. Relaxed atomic adds: nothing waits.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Allocations (and reallocations) since owod started.
pub fn count() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Heap bytes in use.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// What the heap gives back once this much of it was freed.
const TRIM_AFTER: usize = 1 << 20;

/// Called now and then (once a second) with the same `peak`: when the heap in use fell by
/// [`TRIM_AFTER`] from its peak since the last trim, glibc is asked to give the free memory back
/// (it keeps what it once had, and a burst of processes with long argv would leave owod's RSS
/// at its peak). A heap that shrinks step by step is trimmed at each step.
pub fn trim(peak: &mut usize) {
    let live = live_bytes();
    *peak = (*peak).max(live);
    if *peak - live >= TRIM_AFTER {
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free memory of glibc's own heaps.
        unsafe {
            libc::malloc_trim(0);
        }
        *peak = live;
    }
}

/// The system allocator, counted: the binary installs it as its `#[global_allocator]`.
pub struct Counting;

// SAFETY: every call is passed to `System` unchanged, which upholds GlobalAlloc's contract; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is the one `System.alloc` requires.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        let block = unsafe { System.realloc(ptr, layout, new_size) };
        // A failed realloc leaves the old block as it was.
        if !block.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
