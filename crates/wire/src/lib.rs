//! BitTorrent wire formats, no IO: parsing returns typed values or errors and never panics, so
//! each parser can be tested and fuzzed alone. Today: the HTTP tracker (BEP 3 announce, BEP 23
//! compact peers, BEP 7 `peers6`, BEP 48 scrape). The peer wire and the UDP tracker join here.

pub mod tracker;
