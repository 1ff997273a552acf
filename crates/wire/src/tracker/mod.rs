//! Tracker protocol messages.

pub mod http;
pub mod udp;
pub mod ws;
