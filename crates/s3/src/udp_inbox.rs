//! Datagrams taken from a UDP socket several at a time ([`Inbox`]): on Linux one `recvmmsg(2)`
//! takes every datagram waiting, up to [`BATCH`], where a `recvfrom(2)` each cost the UDP
//! tracker a system call and a readiness check per announce. Elsewhere, the same interface over
//! one `recv_from` at a time.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Datagrams taken per call, at most.
pub(crate) const BATCH: usize = 32;

/// Receive buffers for [`BATCH`] datagrams of up to `max_packet` bytes, and what the last
/// [`Inbox::receive`] put in them.
pub(crate) struct Inbox {
    buffers: Vec<Vec<u8>>,
    /// (buffer, length, sender) of each datagram received.
    received: Vec<(usize, usize, SocketAddr)>,
}

impl Inbox {
    /// Room for datagrams of up to `max_packet` bytes (a longer one arrives truncated to
    /// `max_packet`; give one byte more than the largest valid datagram to tell them apart).
    pub(crate) fn new(max_packet: usize) -> Self {
        Self {
            buffers: (0..BATCH).map(|_| vec![0u8; max_packet]).collect(),
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Takes the datagrams waiting on `socket` (at least one) without waiting for more;
    /// `WouldBlock` when there is none (and the socket's readiness is cleared, so that
    /// `socket.readable()` waits for the next).
    pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        receive_waiting(socket, &mut self.buffers, &mut self.received)?;
        Ok(self.received.len())
    }

    /// The datagrams of the last [`Self::receive`]: contents and sender.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.received.iter().filter_map(|&(i, n, from)| {
            let buf = self.buffers.get(i)?;
            Some((&buf[..n.min(buf.len())], from))
        })
    }
}

#[cfg(target_os = "linux")]
fn receive_waiting(
    socket: &UdpSocket,
    buffers: &mut [Vec<u8>],
    received: &mut Vec<(usize, usize, SocketAddr)>,
) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd as _;

    socket.try_io(tokio::io::Interest::READABLE, || {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(b.as_mut_slice())])
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
        let messages = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for (i, m) in messages.enumerate() {
            // A sender that is neither IPv4 nor IPv6 cannot be answered: left out.
            if let Some(from) = m.address.as_ref().and_then(socket_addr) {
                received.push((i, m.bytes, from));
            }
        }
        Ok(())
    })
}

#[cfg(target_os = "linux")]
fn socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(not(target_os = "linux"))]
fn receive_waiting(
    socket: &UdpSocket,
    buffers: &mut [Vec<u8>],
    received: &mut Vec<(usize, usize, SocketAddr)>,
) -> io::Result<()> {
    for (i, buf) in buffers.iter_mut().enumerate() {
        match socket.try_recv_from(buf) {
            Ok((n, from)) => received.push((i, n, from)),
            Err(e) if i == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(())
}
