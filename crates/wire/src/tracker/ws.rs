//! The WebTorrent tracker protocol: JSON text messages over a WebSocket, as browsers running
//! WebTorrent (the `bittorrent-tracker` client) speak it. Parsing and encoding only; the
//! server's socket handling lives elsewhere.
//!
//! A browser announces with up to a few WebRTC offers; the tracker answers with the swarm's
//! counts and hands each offer to another browser of the swarm, which answers through the
//! tracker (`to_peer_id`, `offer_id`), and the tracker relays that answer to the offerer. Binary
//! fields (info-hash, peer id, offer id) are "binary strings": 20 characters, each one byte
//! (U+0000 to U+00FF).
//!
//! Bounds (the socket layer also caps the message size): at most [`MAX_OFFERS`] offers are read
//! from one announce, an SDP is at most [`MAX_SDP_BYTES`], a scrape names at most
//! [`MAX_SCRAPE_HASHES`] info-hashes. Anything malformed is an error for the caller to answer
//! with a `failure reason` (or to close the socket).

use serde_json::{Map, Value, json};

/// Offers read from one announce; more are ignored (browsers send at most 10 by default).
pub const MAX_OFFERS: usize = 10;
/// Longest SDP accepted in an offer or an answer.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// Info-hashes one scrape may name.
pub const MAX_SCRAPE_HASHES: usize = 64;

/// A 20-byte id (info-hash, peer id, offer id).
pub type Id20 = [u8; 20];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Stopped,
    Completed,
    Update,
}

/// One WebRTC offer an announcing browser makes to whoever the tracker gives it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub offer_id: Id20,
    pub sdp: String,
}

/// An answer to an offer, to be relayed to the offering peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub to_peer_id: Id20,
    pub offer_id: Id20,
    pub sdp: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: Id20,
    pub peer_id: Id20,
    /// Bytes the peer still needs (`None`: not said, as in answer-only messages).
    pub left: Option<u64>,
    pub uploaded: Option<u64>,
    pub downloaded: Option<u64>,
    pub event: Event,
    pub numwant: Option<u32>,
    pub offers: Vec<Offer>,
    pub answer: Option<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Announce(Announce),
    /// An empty list: every swarm (refused by this server, which answers named swarms only).
    Scrape(Vec<Id20>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn bad(why: impl Into<String>) -> ParseError {
    ParseError(why.into())
}

/// A binary string of 20 one-byte characters.
fn id20(v: &Value, what: &str) -> Result<Id20, ParseError> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(format!("{what} must be a string")))?;
    let mut out = [0u8; 20];
    let mut chars = s.chars();
    for b in &mut out {
        let c = chars
            .next()
            .ok_or_else(|| bad(format!("{what} must be 20 bytes")))?;
        *b = u8::try_from(u32::from(c))
            .map_err(|_| bad(format!("{what} must be a binary string")))?;
    }
    if chars.next().is_some() {
        return Err(bad(format!("{what} must be 20 bytes")));
    }
    Ok(out)
}

/// The 20 bytes as a binary string (each byte one character).
pub fn binary_string(id: &Id20) -> String {
    id.iter().map(|&b| char::from(b)).collect()
}

fn opt_u64(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, ParseError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| bad(format!("{k} must be a non-negative number"))),
    }
}

fn sdp(v: &Value, kind: &str) -> Result<String, ParseError> {
    let o = v
        .as_object()
        .ok_or_else(|| bad(format!("{kind} must be an object")))?;
    if o.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(bad(format!("{kind} type must be \"{kind}\"")));
    }
    let sdp = o
        .get("sdp")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{kind} needs an sdp")))?;
    if sdp.len() > MAX_SDP_BYTES {
        return Err(bad(format!("{kind} sdp too long")));
    }
    Ok(sdp.to_owned())
}

/// Parses one text message from a browser.
pub fn parse_request(text: &str) -> Result<Request, ParseError> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let m = v
        .as_object()
        .ok_or_else(|| bad("a message must be a JSON object"))?;
    match m.get("action").and_then(Value::as_str) {
        Some("announce") => parse_announce(m).map(Request::Announce),
        Some("scrape") => {
            let hashes = match m.get("info_hash") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => {
                    if a.len() > MAX_SCRAPE_HASHES {
                        return Err(bad("too many info_hash values in one scrape"));
                    }
                    a.iter()
                        .map(|h| id20(h, "info_hash"))
                        .collect::<Result<_, _>>()?
                }
                Some(h) => vec![id20(h, "info_hash")?],
            };
            Ok(Request::Scrape(hashes))
        }
        _ => Err(bad("action must be announce or scrape")),
    }
}

fn parse_announce(m: &Map<String, Value>) -> Result<Announce, ParseError> {
    let need = |k: &str| m.get(k).ok_or_else(|| bad(format!("{k} is missing")));
    let info_hash = id20(need("info_hash")?, "info_hash")?;
    let peer_id = id20(need("peer_id")?, "peer_id")?;
    let event = match m.get("event").and_then(Value::as_str) {
        None | Some("" | "update") => Event::Update,
        Some("started") => Event::Started,
        Some("stopped") => Event::Stopped,
        Some("completed") => Event::Completed,
        Some(_) => return Err(bad("unknown event")),
    };
    let mut offers = Vec::new();
    if let Some(list) = m.get("offers").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| bad("offers must be a list"))?;
        for o in list.iter().take(MAX_OFFERS) {
            let o = o
                .as_object()
                .ok_or_else(|| bad("an offer must be an object"))?;
            offers.push(Offer {
                offer_id: id20(o.get("offer_id").unwrap_or(&Value::Null), "offer_id")?,
                sdp: sdp(o.get("offer").unwrap_or(&Value::Null), "offer")?,
            });
        }
    }
    let answer = match m.get("answer").filter(|v| !v.is_null()) {
        None => None,
        Some(a) => Some(Answer {
            to_peer_id: id20(need("to_peer_id")?, "to_peer_id")?,
            offer_id: id20(need("offer_id")?, "offer_id")?,
            sdp: sdp(a, "answer")?,
        }),
    };
    let numwant = opt_u64(m, "numwant")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Announce {
        info_hash,
        peer_id,
        left: opt_u64(m, "left")?,
        uploaded: opt_u64(m, "uploaded")?,
        downloaded: opt_u64(m, "downloaded")?,
        event,
        numwant,
        offers,
        answer,
    })
}

/// The tracker's reply to an announce: the swarm's counts and when to announce again.
pub fn announce_reply(info_hash: &Id20, complete: u32, incomplete: u32, interval: u32) -> String {
    json!({
        "action": "announce",
        "info_hash": binary_string(info_hash),
        "complete": complete,
        "incomplete": incomplete,
        "interval": interval,
    })
    .to_string()
}

/// An offer handed to a peer of the swarm, from `from_peer_id`.
pub fn offer_message(info_hash: &Id20, from_peer_id: &Id20, offer: &Offer) -> String {
    json!({
        "action": "announce",
        "info_hash": binary_string(info_hash),
        "peer_id": binary_string(from_peer_id),
        "offer_id": binary_string(&offer.offer_id),
        "offer": { "type": "offer", "sdp": offer.sdp },
    })
    .to_string()
}

/// An answer relayed to the peer that made the offer, from `from_peer_id`.
pub fn answer_message(info_hash: &Id20, from_peer_id: &Id20, answer: &Answer) -> String {
    json!({
        "action": "announce",
        "info_hash": binary_string(info_hash),
        "peer_id": binary_string(from_peer_id),
        "offer_id": binary_string(&answer.offer_id),
        "answer": { "type": "answer", "sdp": answer.sdp },
    })
    .to_string()
}

/// Scrape counts for one swarm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    pub complete: u32,
    pub incomplete: u32,
    pub downloaded: u32,
}

pub fn scrape_reply(files: &[(Id20, ScrapeCounts)]) -> String {
    let mut map = Map::new();
    for (h, c) in files {
        map.insert(
            binary_string(h),
            json!({ "complete": c.complete, "incomplete": c.incomplete, "downloaded": c.downloaded }),
        );
    }
    json!({ "action": "scrape", "files": map }).to_string()
}

/// A refusal, in the tracker's own form.
pub fn failure(reason: &str, action: Option<&str>, info_hash: Option<&Id20>) -> String {
    let mut m = Map::new();
    m.insert("failure reason".to_owned(), Value::from(reason));
    if let Some(a) = action {
        m.insert("action".to_owned(), Value::from(a));
    }
    if let Some(h) = info_hash {
        m.insert("info_hash".to_owned(), Value::from(binary_string(h)));
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn announce_text(ih: &Id20, pid: &Id20) -> String {
        json!({
            "action": "announce", "info_hash": binary_string(ih), "peer_id": binary_string(pid),
            "numwant": 5, "uploaded": 0, "downloaded": 10, "left": 90, "event": "started",
            "offers": [{"offer_id": binary_string(&[7; 20]), "offer": {"type": "offer", "sdp": "v=0"}}],
        })
        .to_string()
    }

    #[test]
    fn announces_offers_and_answers_parse() {
        let ih = [0xff; 20];
        let pid: Id20 = *b"-WW0100-abcdefghijkl";
        let Request::Announce(a) = parse_request(&announce_text(&ih, &pid)).unwrap() else {
            panic!("not an announce");
        };
        assert_eq!((a.info_hash, a.peer_id, a.left), (ih, pid, Some(90)));
        assert_eq!(a.event, Event::Started);
        assert_eq!(
            a.offers,
            vec![Offer {
                offer_id: [7; 20],
                sdp: "v=0".into()
            }]
        );
        let answer = json!({
            "action": "announce", "info_hash": binary_string(&ih), "peer_id": binary_string(&pid),
            "to_peer_id": binary_string(&[1; 20]), "offer_id": binary_string(&[7; 20]),
            "answer": {"type": "answer", "sdp": "v=0 answer"},
        })
        .to_string();
        let Request::Announce(a) = parse_request(&answer).unwrap() else {
            panic!("not an announce");
        };
        assert_eq!(a.answer.unwrap().to_peer_id, [1; 20]);
        assert_eq!(a.left, None);
    }

    #[test]
    fn malformed_messages_are_errors() {
        for text in [
            "",
            "[]",
            "{}",
            r#"{"action":"announce"}"#,
            r#"{"action":"announce","info_hash":"short","peer_id":"x"}"#,
            r#"{"action":"scrape","info_hash":5}"#,
            r#"{"action":"dance"}"#,
        ] {
            assert!(parse_request(text).is_err(), "{text}");
        }
        // A character beyond one byte is not a binary string.
        let wide = format!("{}\u{100}", "a".repeat(19));
        let text =
            json!({"action":"announce","info_hash":wide,"peer_id":"a".repeat(20)}).to_string();
        assert!(parse_request(&text).is_err());
        // An oversized SDP.
        let long = json!({
            "action": "announce", "info_hash": "a".repeat(20), "peer_id": "b".repeat(20),
            "offers": [{"offer_id": "c".repeat(20), "offer": {"type": "offer", "sdp": "x".repeat(MAX_SDP_BYTES + 1)}}],
        })
        .to_string();
        assert!(parse_request(&long).is_err());
    }

    #[test]
    fn only_the_first_offers_are_read() {
        let offers: Vec<Value> = (0..50)
            .map(|i| json!({"offer_id": binary_string(&[i; 20]), "offer": {"type": "offer", "sdp": "s"}}))
            .collect();
        let text = json!({"action":"announce","info_hash":"a".repeat(20),"peer_id":"b".repeat(20),"offers":offers}).to_string();
        let Request::Announce(a) = parse_request(&text).unwrap() else {
            panic!("not an announce");
        };
        assert_eq!(a.offers.len(), MAX_OFFERS);
    }

    proptest! {
        #[test]
        fn binary_strings_round_trip(ih in any::<[u8; 20]>(), pid in any::<[u8; 20]>()) {
            let reply = announce_reply(&ih, 1, 2, 120);
            let v: Value = serde_json::from_str(&reply).unwrap();
            prop_assert_eq!(id20(&v["info_hash"], "info_hash").unwrap(), ih);
            let Request::Announce(a) = parse_request(&announce_text(&ih, &pid)).unwrap() else {
                panic!("not an announce");
            };
            prop_assert_eq!(a.peer_id, pid);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = parse_request(&s);
        }
    }
}
