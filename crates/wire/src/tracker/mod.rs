//! Tracker protocol messages.

pub mod http;
