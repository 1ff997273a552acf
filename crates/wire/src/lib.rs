//! BitTorrent wire formats, no IO: parsing returns typed values or errors and never panics, so
//! each parser can be tested and fuzzed alone.
//!
//! - [`peer`]: the peer wire protocol. Handshake and messages of BEP 3, the fast extension
//!   (BEP 6), the extension protocol (BEP 10) with `ut_metadata` (BEP 9), and the v2 hash
//!   messages (BEP 52); plus bitfields and block-request validation for the seeder.
//! - [`tracker`]: the HTTP tracker (BEP 3 announce, BEP 23 compact peers, BEP 7 `peers6`,
//!   BEP 48 scrape) and the UDP tracker (BEP 15).
//! - [`host`]: which addresses count as one host for per-address limits.

pub mod host;
pub mod peer;
pub mod tracker;
