//! Message Stream Encryption (MSE, also called protocol encryption or PE), the receiving side,
//! without IO.
//!
//! The exchange, as every major client implements it (A connects, B is us):
//!
//! 1. A → B: `Ya` (96 bytes, big-endian `G^Xa mod P`), then 0–512 bytes of padding.
//! 2. B → A: `Yb`, then 0–512 bytes of padding. Both now know the shared secret
//!    `S = Ya^Xb = Yb^Xa mod P` (96 bytes, big-endian).
//! 3. A → B: `SHA1("req1" S)` (B finds it after A's padding: the synchronisation point),
//!    `SHA1("req2" SKEY) xor SHA1("req3" S)` (SKEY is the info-hash: this names the torrent
//!    without sending it), then RC4-encrypted: `VC` (8 zero bytes), `crypto_provide` (32-bit
//!    set: 1 plaintext, 2 RC4), `len(PadC)`, `PadC`, `len(IA)`, `IA` (the initial payload,
//!    usually the BitTorrent handshake; always RC4-encrypted).
//! 4. B → A, RC4-encrypted: `VC`, `crypto_select` (one bit of `crypto_provide`), `len(PadD)`,
//!    `PadD`. From here both directions use the selected method: RC4 continuing the same
//!    keystreams, or plaintext.
//!
//! A's stream is keyed with `SHA1("keyA" S SKEY)`, B's with `SHA1("keyB" S SKEY)`, each
//! discarding the first 1024 keystream bytes.
//!
//! [`Responder`] consumes A's bytes as they arrive and yields [`Step`]s: more bytes needed, an
//! obfuscated info-hash to resolve (the caller knows which torrents exist), or the finished
//! exchange with the reply to send and the ciphers to use. Every length is bounded (padding
//! at most 512 bytes, the initial payload at most [`MAX_INITIAL_PAYLOAD`]), so a peer cannot
//! make it buffer more than about 1.7 KB, and bad input is an error, never a panic.

use bytes::{Buf as _, BytesMut};
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U192, U768};
use rc4::{KeyInit as _, Rc4, StreamCipher as _};
use sha1::{Digest as _, Sha1};

/// Bytes in a public key (`Ya`, `Yb`) and in the shared secret.
pub const KEY_LEN: usize = 96;
/// The most padding either side may send in one place.
pub const MAX_PAD: usize = 512;
/// The longest initial payload we accept: a BitTorrent handshake is 68 bytes; this leaves room
/// for a client that sends its first messages with it.
pub const MAX_INITIAL_PAYLOAD: usize = 1024;
/// The verification constant: 8 zero bytes.
const VC: [u8; 8] = [0; 8];
/// The part of step 3 after `req1`: the obfuscated hash, VC, crypto_provide, len(PadC).
const STEP3_HEADER: usize = 20 + 8 + 4 + 2;
/// Keystream bytes thrown away before use.
const DISCARD: usize = 1024;

/// The 768-bit safe prime of the exchange (the generator is 2).
const PRIME: U768 = U768::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22",
    "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6",
    "F44C42E9A63A36210000000000090563"
));

/// What the stream carries after the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoMethod {
    /// The payload is sent as is (only the handshake was obfuscated).
    Plaintext,
    /// The payload is RC4-encrypted in both directions.
    Rc4,
}

impl CryptoMethod {
    const fn bit(self) -> u32 {
        match self {
            Self::Plaintext => 1,
            Self::Rc4 => 2,
        }
    }
}

/// Which methods we accept, and which we pick when the peer offers both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accept {
    /// Either; plaintext when offered (the handshake is obfuscated either way, and block data
    /// is not secret to a seeder), RC4 otherwise.
    PreferPlaintext,
    /// Either; RC4 when offered.
    PreferRc4,
    /// RC4 only: a peer offering only plaintext is refused.
    Rc4Only,
}

impl Accept {
    fn select(self, provided: u32) -> Option<CryptoMethod> {
        let has = |m: CryptoMethod| provided & m.bit() != 0;
        let order: &[CryptoMethod] = match self {
            Self::PreferPlaintext => &[CryptoMethod::Plaintext, CryptoMethod::Rc4],
            Self::PreferRc4 => &[CryptoMethod::Rc4, CryptoMethod::Plaintext],
            Self::Rc4Only => &[CryptoMethod::Rc4],
        };
        order.iter().copied().find(|m| has(*m))
    }
}

/// Why an exchange failed. Each ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    #[error("public key out of range")]
    BadPublicKey,
    #[error("no synchronisation hash within the padding limit")]
    NoSync,
    #[error("obfuscated info-hash names no torrent we serve")]
    UnknownTorrent,
    #[error("verification constant mismatch")]
    BadVerification,
    #[error("no acceptable crypto method offered (crypto_provide {0:#x})")]
    NoCommonMethod(u32),
    #[error("padding of {0} bytes exceeds 512")]
    PadTooLong(usize),
    #[error("initial payload of {0} bytes exceeds the limit")]
    PayloadTooLong(usize),
    #[error("called out of order")]
    OutOfOrder,
}

/// An RC4 keystream as MSE uses it: keyed with a SHA-1, its first 1024 bytes discarded.
pub struct Rc4Stream(Rc4);

impl std::fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Stream")
    }
}

impl Rc4Stream {
    fn keyed(label: &[u8; 4], secret: &[u8; KEY_LEN], skey: &[u8; 20]) -> Self {
        let key = sha1_of(&[label, secret, skey]);
        // A 20-byte key is always within RC4's 1..=256 bytes.
        let mut cipher = match Rc4::new_from_slice(&key) {
            Ok(c) => c,
            Err(_) => unreachable!("20-byte RC4 key"),
        };
        let mut discard = [0u8; DISCARD];
        cipher.apply_keystream(&mut discard);
        Self(cipher)
    }

    /// Encrypts or decrypts `data` in place, continuing the stream.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

fn sha1_of(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A Diffie-Hellman key pair of the exchange.
struct KeyPair {
    private: U192,
    public: [u8; KEY_LEN],
}

fn params() -> FixedMontyParams<{ U768::LIMBS }> {
    // PRIME is odd (it ends in 3).
    FixedMontyParams::new_vartime(Odd::new(PRIME).expect("odd prime"))
}

fn pow_mod(base: &U768, exponent: &U192) -> [u8; KEY_LEN] {
    let r = FixedMontyForm::new(base, &params())
        .pow(exponent)
        .retrieve();
    r.to_be_bytes().into()
}

impl KeyPair {
    /// From 20 random bytes (the private exponent is 160 bits).
    fn new(random: [u8; 20]) -> Self {
        let mut wide = [0u8; 24];
        wide[4..].copy_from_slice(&random);
        let private = U192::from_be_slice(&wide);
        let public = pow_mod(&U768::from(2u8), &private);
        Self { private, public }
    }

    /// The shared secret with the peer's public key, refusing the degenerate ones (0, 1,
    /// P-1 and anything not below P), which would make the secret guessable.
    fn shared(&self, theirs: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], MseError> {
        let y = U768::from_be_slice(theirs);
        let p_minus_1 = PRIME.wrapping_sub(&U768::ONE);
        if y <= U768::ONE || y >= p_minus_1 {
            return Err(MseError::BadPublicKey);
        }
        Ok(pow_mod(&y, &self.private))
    }
}

/// The exchange finished: what to send, and how to read and write from here on.
#[derive(Debug)]
pub struct Established {
    /// The info-hash the peer named (SKEY).
    pub info_hash: [u8; 20],
    pub method: CryptoMethod,
    /// The peer's initial payload, decrypted: the start of its BitTorrent stream.
    pub initial_payload: Vec<u8>,
    /// Step 4, already encrypted: send it before anything else.
    pub reply: Vec<u8>,
    /// For [`CryptoMethod::Rc4`]: decrypts what the peer sends next (including bytes already
    /// received after the initial payload).
    pub decrypt: Option<Rc4Stream>,
    /// For [`CryptoMethod::Rc4`]: encrypts what we send after `reply`.
    pub encrypt: Option<Rc4Stream>,
}

/// What [`Responder::advance`] needs next.
#[derive(Debug)]
pub enum Step {
    /// More bytes from the peer.
    NeedMore,
    /// `SHA1("req2" info-hash)` for some info-hash: find it and call [`Responder::resolved`].
    Resolve([u8; 20]),
    /// Done.
    Established(Box<Established>),
}

enum Stage {
    PublicKey,
    Sync {
        secret: [u8; KEY_LEN],
        req1: [u8; 20],
    },
    Header {
        secret: [u8; KEY_LEN],
    },
    Resolving {
        secret: [u8; KEY_LEN],
        rest: [u8; STEP3_HEADER - 20],
    },
    PadC {
        keys: Keys,
        method: CryptoMethod,
        pad: usize,
    },
    InitialPayload {
        keys: Keys,
        method: CryptoMethod,
        len: usize,
    },
    Finished,
}

struct Keys {
    info_hash: [u8; 20],
    decrypt: Rc4Stream,
    encrypt: Rc4Stream,
}

/// The receiving side of one exchange.
pub struct Responder {
    keys: KeyPair,
    accept: Accept,
    stage: Stage,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("accept", &self.accept)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// `random`: 20 bytes from a secure source, our private exponent.
    pub fn new(random: [u8; 20], accept: Accept) -> Self {
        Self {
            keys: KeyPair::new(random),
            accept,
            stage: Stage::PublicKey,
        }
    }

    /// `Yb`: send it (then up to 512 bytes of any padding) as soon as the connection looks
    /// like an exchange.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.keys.public
    }

    /// Consumes what it can of `input` (bytes received and not yet consumed) and says what
    /// it needs next. After [`Step::Established`], what is left in `input` belongs to the
    /// payload stream (still encrypted if the method is RC4).
    pub fn advance(&mut self, input: &mut BytesMut) -> Result<Step, MseError> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Finished) {
                Stage::PublicKey => {
                    let Some(ya) = input.first_chunk::<KEY_LEN>().copied() else {
                        self.stage = Stage::PublicKey;
                        return Ok(Step::NeedMore);
                    };
                    input.advance(KEY_LEN);
                    let secret = self.keys.shared(&ya)?;
                    let req1 = sha1_of(&[b"req1", &secret]);
                    self.stage = Stage::Sync { secret, req1 };
                }
                Stage::Sync { secret, req1 } => {
                    let window = input.len().min(MAX_PAD + 20);
                    match input[..window].windows(20).position(|w| w == req1) {
                        Some(at) => {
                            input.advance(at + 20);
                            self.stage = Stage::Header { secret };
                        }
                        None if input.len() >= MAX_PAD + 20 => return Err(MseError::NoSync),
                        None => {
                            self.stage = Stage::Sync { secret, req1 };
                            return Ok(Step::NeedMore);
                        }
                    }
                }
                Stage::Header { secret } => {
                    let Some(header) = input.first_chunk::<STEP3_HEADER>().copied() else {
                        self.stage = Stage::Header { secret };
                        return Ok(Step::NeedMore);
                    };
                    input.advance(STEP3_HEADER);
                    let req3 = sha1_of(&[b"req3", &secret]);
                    let mut req2 = [0u8; 20];
                    for (i, out) in req2.iter_mut().enumerate() {
                        *out = header[i] ^ req3[i];
                    }
                    let mut rest = [0u8; STEP3_HEADER - 20];
                    rest.copy_from_slice(&header[20..]);
                    self.stage = Stage::Resolving { secret, rest };
                    return Ok(Step::Resolve(req2));
                }
                Stage::Resolving { secret, rest } => {
                    // Waiting for resolved().
                    self.stage = Stage::Resolving { secret, rest };
                    return Err(MseError::OutOfOrder);
                }
                Stage::PadC { keys, method, pad } => {
                    let Some(chunk) = input.get(..pad + 2) else {
                        self.stage = Stage::PadC { keys, method, pad };
                        return Ok(Step::NeedMore);
                    };
                    let mut chunk = chunk.to_vec();
                    input.advance(pad + 2);
                    let mut keys = keys;
                    keys.decrypt.apply(&mut chunk);
                    let len = usize::from(u16::from_be_bytes([chunk[pad], chunk[pad + 1]]));
                    if len > MAX_INITIAL_PAYLOAD {
                        return Err(MseError::PayloadTooLong(len));
                    }
                    self.stage = Stage::InitialPayload { keys, method, len };
                }
                Stage::InitialPayload {
                    mut keys,
                    method,
                    len,
                } => {
                    let Some(ia) = input.get(..len) else {
                        self.stage = Stage::InitialPayload { keys, method, len };
                        return Ok(Step::NeedMore);
                    };
                    let mut initial_payload = ia.to_vec();
                    input.advance(len);
                    keys.decrypt.apply(&mut initial_payload);
                    let mut reply = Vec::with_capacity(14);
                    reply.extend_from_slice(&VC);
                    reply.extend_from_slice(&method.bit().to_be_bytes());
                    reply.extend_from_slice(&0u16.to_be_bytes());
                    keys.encrypt.apply(&mut reply);
                    let (decrypt, encrypt) = match method {
                        CryptoMethod::Rc4 => (Some(keys.decrypt), Some(keys.encrypt)),
                        CryptoMethod::Plaintext => (None, None),
                    };
                    return Ok(Step::Established(Box::new(Established {
                        info_hash: keys.info_hash,
                        method,
                        initial_payload,
                        reply,
                        decrypt,
                        encrypt,
                    })));
                }
                Stage::Finished => return Err(MseError::OutOfOrder),
            }
        }
    }

    /// The answer to [`Step::Resolve`]: the info-hash whose `SHA1("req2" info-hash)` it was,
    /// or `None` when we serve no such torrent. Then call [`Responder::advance`] again.
    pub fn resolved(&mut self, info_hash: Option<[u8; 20]>) -> Result<(), MseError> {
        let Stage::Resolving { secret, rest } = std::mem::replace(&mut self.stage, Stage::Finished)
        else {
            return Err(MseError::OutOfOrder);
        };
        let info_hash = info_hash.ok_or(MseError::UnknownTorrent)?;
        let mut decrypt = Rc4Stream::keyed(b"keyA", &secret, &info_hash);
        let encrypt = Rc4Stream::keyed(b"keyB", &secret, &info_hash);
        let mut rest = rest;
        decrypt.apply(&mut rest);
        if rest[..8] != VC {
            return Err(MseError::BadVerification);
        }
        let provided = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let method = self
            .accept
            .select(provided)
            .ok_or(MseError::NoCommonMethod(provided))?;
        let pad = usize::from(u16::from_be_bytes([rest[12], rest[13]]));
        if pad > MAX_PAD {
            return Err(MseError::PadTooLong(pad));
        }
        self.stage = Stage::PadC {
            keys: Keys {
                info_hash,
                decrypt,
                encrypt,
            },
            method,
            pad,
        };
        Ok(())
    }
}

/// `SHA1("req2" info-hash)`: what [`Step::Resolve`] carries for that info-hash. A receiver
/// keeps these for the torrents it serves.
pub fn obfuscated_info_hash(info_hash: &[u8; 20]) -> [u8; 20] {
    sha1_of(&[b"req2", info_hash])
}

/// Whether the first bytes of a connection can be a plain BitTorrent handshake: `Some(true)`
/// once the 20-byte protocol header matched, `Some(false)` as soon as a byte differs (then it
/// is an encrypted exchange, or nothing we speak), `None` while undecided.
pub fn starts_plain(buf: &[u8]) -> Option<bool> {
    let header = std::iter::once(19u8).chain(super::PSTR.iter().copied());
    let n = buf.len().min(20);
    if !buf[..n].iter().zip(header).all(|(a, b)| *a == b) {
        return Some(false);
    }
    (n == 20).then_some(true)
}

/// The connecting side, for tests and tools: produces steps 1 and 3 and checks step 4.
/// (The seeder never connects out.)
pub struct Initiator {
    keys: KeyPair,
    info_hash: [u8; 20],
    decrypt: Option<Rc4Stream>,
    encrypt: Option<Rc4Stream>,
    secret: Option<[u8; KEY_LEN]>,
    selected: Option<(usize, CryptoMethod, usize)>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator").finish_non_exhaustive()
    }
}

impl Initiator {
    pub fn new(random: [u8; 20], info_hash: [u8; 20]) -> Self {
        Self {
            keys: KeyPair::new(random),
            info_hash,
            decrypt: None,
            encrypt: None,
            secret: None,
            selected: None,
        }
    }

    /// Step 1: `Ya` followed by `pad` (any bytes, at most 512).
    pub fn hello(&self, pad: &[u8]) -> Vec<u8> {
        let mut out = self.keys.public.to_vec();
        out.extend_from_slice(pad);
        out
    }

    /// Step 3, given `Yb`: offers `provide` (1 plaintext, 2 RC4, 3 both), with `pad_c` and
    /// the initial payload `ia`.
    pub fn request(
        &mut self,
        yb: &[u8; KEY_LEN],
        provide: u32,
        pad_c: &[u8],
        ia: &[u8],
    ) -> Result<Vec<u8>, MseError> {
        let secret = self.keys.shared(yb)?;
        let req3 = sha1_of(&[b"req3", &secret]);
        let req2 = obfuscated_info_hash(&self.info_hash);
        let mut out = sha1_of(&[b"req1", &secret]).to_vec();
        out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
        let mut encrypt = Rc4Stream::keyed(b"keyA", &secret, &self.info_hash);
        let mut tail = VC.to_vec();
        tail.extend_from_slice(&provide.to_be_bytes());
        tail.extend_from_slice(&u16::try_from(pad_c.len()).unwrap_or(u16::MAX).to_be_bytes());
        tail.extend_from_slice(pad_c);
        tail.extend_from_slice(&u16::try_from(ia.len()).unwrap_or(u16::MAX).to_be_bytes());
        tail.extend_from_slice(ia);
        encrypt.apply(&mut tail);
        out.extend_from_slice(&tail);
        self.encrypt = Some(encrypt);
        self.decrypt = Some(Rc4Stream::keyed(b"keyB", &secret, &self.info_hash));
        self.secret = Some(secret);
        Ok(out)
    }

    /// Step 4, given every byte received after `Yb` (call again with more when it answers
    /// `None`): finds the reply after B's padding, checks it, and says which method was
    /// selected and how many bytes (padding and reply) it took.
    pub fn confirm(&mut self, after_yb: &[u8]) -> Result<Option<(CryptoMethod, usize)>, MseError> {
        let secret = self.secret.ok_or(MseError::OutOfOrder)?;
        let (at, method, pad) = match self.selected {
            Some(s) => s,
            None => {
                // ENCRYPT(VC) is the first 8 bytes of B's stream: look for it past PadB.
                let mut marker = VC;
                Rc4Stream::keyed(b"keyB", &secret, &self.info_hash).apply(&mut marker);
                let window = after_yb.len().min(MAX_PAD + 8);
                let Some(at) = after_yb[..window].windows(8).position(|w| w == marker) else {
                    return if after_yb.len() >= MAX_PAD + 8 {
                        Err(MseError::NoSync)
                    } else {
                        Ok(None)
                    };
                };
                let Some(head) = after_yb.get(at..).and_then(<[u8]>::first_chunk::<14>) else {
                    return Ok(None);
                };
                let decrypt = self.decrypt.as_mut().ok_or(MseError::OutOfOrder)?;
                let mut head = *head;
                decrypt.apply(&mut head);
                if head[..8] != VC {
                    return Err(MseError::BadVerification);
                }
                let method = match u32::from_be_bytes([head[8], head[9], head[10], head[11]]) {
                    1 => CryptoMethod::Plaintext,
                    2 => CryptoMethod::Rc4,
                    other => return Err(MseError::NoCommonMethod(other)),
                };
                let pad = usize::from(u16::from_be_bytes([head[12], head[13]]));
                if pad > MAX_PAD {
                    return Err(MseError::PadTooLong(pad));
                }
                self.selected = Some((at, method, pad));
                (at, method, pad)
            }
        };
        let Some(padding) = after_yb.get(at + 14..at + 14 + pad) else {
            return Ok(None);
        };
        let mut padding = padding.to_vec();
        if let Some(d) = self.decrypt.as_mut() {
            d.apply(&mut padding);
        }
        Ok(Some((method, at + 14 + pad)))
    }

    /// The streams for the payload, after [`Initiator::confirm`] chose RC4.
    pub fn into_streams(self) -> Option<(Rc4Stream, Rc4Stream)> {
        Some((self.encrypt?, self.decrypt?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IH: [u8; 20] = [7; 20];

    /// Runs A's steps 1 and 3 into a responder fed `chunk` bytes at a time; returns the
    /// responder's result and the initiator.
    fn exchange(
        accept: Accept,
        provide: u32,
        pad_a: &[u8],
        pad_c: &[u8],
        ia: &[u8],
        chunk: usize,
        known: Option<[u8; 20]>,
    ) -> (Result<Box<Established>, MseError>, Initiator, BytesMut) {
        let mut responder = Responder::new([3; 20], accept);
        let mut initiator = Initiator::new([5; 20], IH);
        let mut wire = initiator.hello(pad_a);
        let step3 = initiator
            .request(&responder.public_key(), provide, pad_c, ia)
            .expect("valid Yb");
        wire.extend_from_slice(&step3);
        wire.extend_from_slice(b"after");
        let mut input = BytesMut::new();
        let mut fed = 0;
        loop {
            match responder.advance(&mut input) {
                Ok(Step::NeedMore) => {
                    assert!(fed < wire.len(), "responder wants more than A sent");
                    let end = (fed + chunk).min(wire.len());
                    input.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
                Ok(Step::Resolve(req2)) => {
                    let answer = known.filter(|ih| obfuscated_info_hash(ih) == req2);
                    if let Err(e) = responder.resolved(answer) {
                        return (Err(e), initiator, input);
                    }
                }
                Ok(Step::Established(e)) => {
                    input.extend_from_slice(&wire[fed..]);
                    return (Ok(e), initiator, input);
                }
                Err(e) => return (Err(e), initiator, input),
            }
        }
    }

    #[test]
    fn rc4_round_trip_both_directions() {
        let (done, mut a, mut rest) = exchange(
            Accept::PreferPlaintext,
            2,
            &[9; 300],
            &[1; 17],
            b"initial payload",
            7,
            Some(IH),
        );
        let mut done = done.expect("established");
        assert_eq!(done.info_hash, IH);
        assert_eq!(done.method, CryptoMethod::Rc4);
        assert_eq!(done.initial_payload, b"initial payload");
        assert_eq!(
            a.confirm(&done.reply).expect("valid reply"),
            Some((CryptoMethod::Rc4, 14))
        );
        let (mut a_enc, mut a_dec) = a.into_streams().expect("streams");
        // What A sent after step 3 ("after", plaintext) was not encrypted by a_enc, so B
        // decrypting it must not give it back: only A's stream encrypts payload.
        let mut from_a = b"hello seeder".to_vec();
        a_enc.apply(&mut from_a);
        let mut b_dec = done.decrypt.take().expect("rc4");
        rest.clear();
        b_dec.apply(&mut from_a);
        assert_eq!(from_a, b"hello seeder");
        let mut from_b = b"piece data".to_vec();
        done.encrypt.as_mut().expect("rc4").apply(&mut from_b);
        assert_ne!(from_b, b"piece data");
        a_dec.apply(&mut from_b);
        assert_eq!(from_b, b"piece data");
    }

    #[test]
    fn plaintext_when_offered_and_preferred() {
        let (done, mut a, rest) = exchange(Accept::PreferPlaintext, 3, &[], &[], &[], 1, Some(IH));
        let done = done.expect("established");
        assert_eq!(done.method, CryptoMethod::Plaintext);
        assert!(done.decrypt.is_none() && done.encrypt.is_none());
        assert_eq!(
            &rest[..],
            b"after",
            "the payload after step 3 is left as sent"
        );
        assert_eq!(
            a.confirm(&done.reply).expect("reply"),
            Some((CryptoMethod::Plaintext, 14))
        );
    }

    #[test]
    fn method_choice() {
        let pick = |accept, provide| {
            exchange(accept, provide, &[], &[], &[], 64, Some(IH))
                .0
                .map(|e| e.method)
        };
        assert_eq!(pick(Accept::PreferRc4, 3), Ok(CryptoMethod::Rc4));
        assert_eq!(pick(Accept::Rc4Only, 3), Ok(CryptoMethod::Rc4));
        assert_eq!(pick(Accept::Rc4Only, 1), Err(MseError::NoCommonMethod(1)));
        assert_eq!(
            pick(Accept::PreferPlaintext, 0),
            Err(MseError::NoCommonMethod(0))
        );
        assert_eq!(pick(Accept::PreferPlaintext, 2), Ok(CryptoMethod::Rc4));
    }

    #[test]
    fn unknown_torrent_is_refused() {
        let (r, _, _) = exchange(Accept::PreferPlaintext, 2, &[], &[], &[], 64, Some([8; 20]));
        assert_eq!(r.err(), Some(MseError::UnknownTorrent));
        let (r, _, _) = exchange(Accept::PreferPlaintext, 2, &[], &[], &[], 64, None);
        assert_eq!(r.err(), Some(MseError::UnknownTorrent));
    }

    #[test]
    fn limits() {
        // PadA past 512: no synchronisation point within reach.
        let (r, _, _) = exchange(
            Accept::PreferPlaintext,
            2,
            &[0; 600],
            &[],
            &[],
            64,
            Some(IH),
        );
        assert_eq!(r.err(), Some(MseError::NoSync));
        let (r, _, _) = exchange(
            Accept::PreferPlaintext,
            2,
            &[],
            &[0; 513],
            &[],
            64,
            Some(IH),
        );
        assert_eq!(r.err(), Some(MseError::PadTooLong(513)));
        let (r, _, _) = exchange(
            Accept::PreferPlaintext,
            2,
            &[],
            &[],
            &[0; MAX_INITIAL_PAYLOAD + 1],
            64,
            Some(IH),
        );
        assert_eq!(
            r.err(),
            Some(MseError::PayloadTooLong(MAX_INITIAL_PAYLOAD + 1))
        );
    }

    #[test]
    fn degenerate_public_keys_are_refused() {
        let pair = KeyPair::new([1; 20]);
        let mut one = [0u8; KEY_LEN];
        one[KEY_LEN - 1] = 1;
        assert_eq!(pair.shared(&[0; KEY_LEN]), Err(MseError::BadPublicKey));
        assert_eq!(pair.shared(&one), Err(MseError::BadPublicKey));
        assert_eq!(pair.shared(&[0xFF; KEY_LEN]), Err(MseError::BadPublicKey));
        let p_minus_1: [u8; KEY_LEN] = PRIME.wrapping_sub(&U768::ONE).to_be_bytes().into();
        assert_eq!(pair.shared(&p_minus_1), Err(MseError::BadPublicKey));
    }

    #[test]
    fn shared_secret_agrees() {
        let a = KeyPair::new([0x11; 20]);
        let b = KeyPair::new([0x22; 20]);
        assert_eq!(a.shared(&b.public), b.shared(&a.public));
        assert_ne!(a.public, b.public);
    }

    #[test]
    fn plain_detection() {
        let mut plain = vec![19u8];
        plain.extend_from_slice(super::super::PSTR);
        assert_eq!(starts_plain(&plain[..5]), None);
        assert_eq!(starts_plain(&plain), Some(true));
        assert_eq!(starts_plain(&[19, b'B', b'x']), Some(false));
        assert_eq!(starts_plain(&[0x80]), Some(false));
        assert_eq!(starts_plain(&[]), None);
    }

    proptest! {

        /// Any bytes, in any chunks: an error or a request for more, never a panic, and
        /// never more than the bounded amount buffered before a decision.
        #[test]
        fn hostile_bytes(data in proptest::collection::vec(any::<u8>(), 0..2000),
                         chunk in 1usize..300,
                         answer in proptest::option::of(any::<[u8; 20]>())) {
            let mut r = Responder::new([9; 20], Accept::PreferPlaintext);
            let mut input = BytesMut::new();
            let mut fed = 0;
            loop {
                match r.advance(&mut input) {
                    Ok(Step::NeedMore) => {
                        prop_assert!(input.len() <= MAX_PAD + 20 + MAX_INITIAL_PAYLOAD + 2);
                        if fed == data.len() { break; }
                        let end = (fed + chunk).min(data.len());
                        input.extend_from_slice(&data[fed..end]);
                        fed = end;
                    }
                    Ok(Step::Resolve(_)) => {
                        if r.resolved(answer).is_err() { break; }
                    }
                    Ok(Step::Established(_)) | Err(_) => break,
                }
            }
        }

        /// Honest exchanges with any padding and payload within the limits succeed.
        #[test]
        fn honest_exchanges(pad_a in 0usize..=512, pad_c in 0usize..=512,
                            ia in proptest::collection::vec(any::<u8>(), 0..=68),
                            chunk in 1usize..700, provide in 1u32..=3) {
            let (r, mut a, _) = exchange(Accept::PreferPlaintext, provide, &vec![0xA5; pad_a],
                                         &vec![0x5A; pad_c], &ia, chunk, Some(IH));
            let done = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&done.initial_payload, &ia);
            let confirmed = a.confirm(&done.reply).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(confirmed, Some((done.method, 14)));
        }
    }
}
