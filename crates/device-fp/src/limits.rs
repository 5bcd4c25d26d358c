//! Size bounds shared by the input readers (no other module dependencies, so
//! `inputs` and `ua` both use it without depending on each other).

/// Longest header value we read; longer values are ignored (and noted).
pub const MAX_HEADER_VALUE: usize = 4096;
/// Most headers whose names enter the header-order hash.
pub const MAX_HEADERS: usize = 64;
