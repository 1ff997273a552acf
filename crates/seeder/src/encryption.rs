//! Opening a connection's stream: a plain BitTorrent handshake passes straight through; an
//! encrypted one (Message Stream Encryption) is answered with [`mse::Responder`] first, and
//! the connection's halves are then wrapped to decrypt and encrypt if RC4 was selected. What
//! comes out is a plain stream whose next bytes are the peer's BitTorrent handshake, so the
//! rest of the connection is the same whatever the peer spoke.
//!
//! The two are told apart by the first bytes: a plain handshake starts with
//! `19 "BitTorrent protocol"`, an encrypted one with a random public key. Every wait is
//! bounded by the caller's handshake deadline, and every length by the responder's limits.

use bytes::BytesMut;
use seedbucket_wire::peer::mse::{self, Accept, CryptoMethod, Responder, Step};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::conn::ConnError;
use crate::rc4_io::{Rc4Reader, Rc4Writer};
use crate::{Encryption, Library};

pub(crate) type PeerRead = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type PeerWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Padding we send after our public key: a random length up to this (the exchange allows
/// 512; a little is enough to vary the first packet's size).
const OUR_PAD_MAX: usize = 64;

/// The connection once its first bytes are understood.
pub(crate) struct Opened {
    pub(crate) read: PeerRead,
    pub(crate) write: PeerWrite,
    /// Received, decrypted, not yet parsed: the start of the peer's BitTorrent handshake.
    pub(crate) received: BytesMut,
    /// For an encrypted handshake, the info-hash it named (the BitTorrent handshake inside
    /// must name the same).
    pub(crate) encrypted_for: Option<[u8; 20]>,
    /// How the payload travels, for logs.
    pub(crate) method: Option<CryptoMethod>,
}

pub(crate) async fn read_more(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<(), ConnError> {
    buf.reserve(4096);
    if rd.read_buf(buf).await? == 0 {
        return Err(ConnError::Closed);
    }
    Ok(())
}

/// Reads the first bytes and answers an encrypted handshake if that is what they are. The
/// caller bounds the time this takes.
pub(crate) async fn open(
    mut read: PeerRead,
    mut write: PeerWrite,
    library: &dyn Library,
    policy: Encryption,
) -> Result<Opened, ConnError> {
    let mut received = BytesMut::with_capacity(4096);
    let plain = loop {
        if let Some(plain) = mse::starts_plain(&received) {
            break plain;
        }
        read_more(&mut read, &mut received).await?;
    };
    match (plain, policy) {
        (true, Encryption::Require) => return Err(ConnError::PlainRefused),
        (true, _) => {
            return Ok(Opened {
                read,
                write,
                received,
                encrypted_for: None,
                method: None,
            });
        }
        (false, Encryption::Off) => {
            return Err(ConnError::Handshake(
                seedbucket_wire::peer::PeerError::BadProtocol,
            ));
        }
        (false, _) => {}
    }
    let accept = match policy {
        Encryption::Require => Accept::Rc4Only,
        Encryption::Allow | Encryption::Off => Accept::PreferPlaintext,
    };
    let mut responder = Responder::new(rand::random(), accept);
    let mut hello = responder.public_key().to_vec();
    let pad_len = rand::random_range(0..=OUR_PAD_MAX);
    hello.extend((0..pad_len).map(|_| rand::random::<u8>()));
    write.write_all(&hello).await?;
    let done = loop {
        match responder
            .advance(&mut received)
            .map_err(ConnError::Encryption)?
        {
            Step::NeedMore => read_more(&mut read, &mut received).await?,
            Step::Resolve(obfuscated) => {
                let info_hash = library.resolve_obfuscated(&obfuscated).await;
                responder
                    .resolved(info_hash)
                    .map_err(ConnError::Encryption)?;
            }
            Step::Established(done) => break *done,
        }
    };
    write.write_all(&done.reply).await?;
    write.flush().await?;
    let mut plain_received = BytesMut::from(&done.initial_payload[..]);
    match (done.decrypt, done.encrypt) {
        (Some(mut decrypt), Some(encrypt)) => {
            // Bytes already read past the exchange are payload, encrypted.
            decrypt.apply(&mut received);
            plain_received.extend_from_slice(&received);
            read = Box::new(Rc4Reader::new(read, decrypt));
            write = Box::new(Rc4Writer::new(write, encrypt));
        }
        _ => plain_received.extend_from_slice(&received),
    }
    Ok(Opened {
        read,
        write,
        received: plain_received,
        encrypted_for: Some(done.info_hash),
        method: Some(done.method),
    })
}
