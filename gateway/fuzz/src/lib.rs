//! The checks behind the fuzz targets in `fuzz_targets/`, kept here so the
//! `seeds` program can replay a corpus through exactly the same code
//! without libFuzzer (and so without a nightly compiler).
//!
//! Each check calls one decoder on arbitrary bytes and fails (panics) when
//! the decoder panics, when it allocates more than a fixed multiple of the
//! input's length at its peak, or when what it accepted breaks one of the
//! decoder's own promises (element counts that match the shape, a response
//! that decodes back to the same tensors, a manifest that survives being
//! written out and read again). Hangs are caught by libFuzzer's `-timeout`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub mod grpc;
pub mod http;
pub mod manifest;

/// Allocation the checks tolerate on top of the per-byte allowance: room
/// for the small fixed structures any decode builds (hash maps, error
/// messages, the first growth steps of a few vectors).
pub const ALLOCATION_SLACK: usize = 1 << 20;

/// Counts the bytes live on the heap and the highest count reached, so a
/// check can tell how much one decode allocated at its peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to the system allocator unchanged and only
// updates two counters on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A moving realloc holds both blocks for a moment: count the
            // new one before letting the old one go.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap it held at once,
/// in bytes above what was live when it started (the result's own
/// allocations included).
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (out, peak)
}

/// Fails when `peak` is more than `per_byte` bytes per input byte plus
/// [`ALLOCATION_SLACK`]: a decoder that sizes a buffer from a declared
/// count instead of the bytes it was given trips this long before it can
/// exhaust memory.
pub fn assert_bounded(what: &str, input_len: usize, peak: usize, per_byte: usize) {
    let limit = per_byte
        .saturating_mul(input_len)
        .saturating_add(ALLOCATION_SLACK);
    assert!(
        peak <= limit,
        "{what} allocated {peak} bytes at its peak for {input_len} input bytes \
         (limit {per_byte} per byte + {ALLOCATION_SLACK} = {limit})"
    );
}

/// One of the fuzz targets, for the `seeds` program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `fuzz_targets/http_decode.rs`.
    HttpDecode,
    /// `fuzz_targets/grpc_decode.rs`.
    GrpcDecode,
    /// `fuzz_targets/manifest_parse.rs`.
    ManifestParse,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 3] = [
        Target::HttpDecode,
        Target::GrpcDecode,
        Target::ManifestParse,
    ];

    /// The target's name, which is also its corpus folder's.
    pub fn name(self) -> &'static str {
        match self {
            Target::HttpDecode => "http_decode",
            Target::GrpcDecode => "grpc_decode",
            Target::ManifestParse => "manifest_parse",
        }
    }

    /// Runs the target's check on one input; returns whether the decoder
    /// accepted it.
    pub fn check(self, data: &[u8]) -> bool {
        match self {
            Target::HttpDecode => http::check(data),
            Target::GrpcDecode => grpc::check(data),
            Target::ManifestParse => manifest::check(data),
        }
    }
}
