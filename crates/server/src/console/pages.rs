//! The console's pages, rendered on the server: pure functions from what was read to HTML.
//! Every value that came from a client or the store goes through [`esc`] (text and attribute
//! values) or [`q`] (URL query components). Scripts and styles are separate files
//! (`/static/...`), so the Content-Security-Policy allows no inline script.

use std::fmt::Write as _;

use seedbucket_s3::stats::{ObjectTraffic, Totals};

use super::history::Sample;

/// Text or an attribute value, escaped for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL query component, percent-encoded (then safe in an attribute as well).
pub fn q(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Bytes for people: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Who is logged in, for the header.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub access_key: &'a str,
    pub admin: bool,
    pub csrf: &'a str,
}

/// The page around `body`.
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, flash: Option<&str>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        let _ = write!(
            nav,
            r#"<nav><a href="/buckets">Buckets</a>{totals}<span class="who" title="{ak}">{name}{role}</span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="link">Log out</button></form></nav>"#,
            totals = if v.admin {
                r#"<a href="/totals">Totals</a>"#
            } else {
                ""
            },
            ak = esc(v.access_key),
            name = esc(v.name),
            role = if v.admin { " (admin)" } else { "" },
            csrf = esc(v.csrf),
        );
    }
    let flash = flash
        .map(|f| format!(r#"<p class="flash" role="alert">{}</p>"#, esc(f)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · seedbucket</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head><body{csrf_attr}>
<header><a class="brand" href="/">seedbucket</a>{nav}</header>
<main>{flash}{body}</main>
</body></html>
"#,
        title = esc(title),
        csrf_attr = viewer
            .map(|v| format!(r#" data-csrf="{}""#, esc(v.csrf)))
            .unwrap_or_default(),
    )
}

pub fn login(error: Option<&str>) -> String {
    page(
        "Log in",
        None,
        error,
        r#"<section class="card narrow"><h1>Log in</h1>
<form method="post" action="/login" class="stack">
<label>Access key <input name="access_key" autocomplete="username" required autofocus></label>
<label>Secret key <input name="secret_key" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
<p class="hint">Use an access key of this server (<code>seedbucket key create</code>). The secret is checked here and never kept in the browser.</p>
</section>"#,
    )
}

/// A hidden CSRF field and a one-button form posting `fields` to `action`.
fn button_form(
    action: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    label: &str,
    class: &str,
    confirm: Option<&str>,
) -> String {
    let mut hidden = format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf));
    for (k, v) in fields {
        let _ = write!(
            hidden,
            r#"<input type="hidden" name="{}" value="{}">"#,
            esc(k),
            esc(v)
        );
    }
    format!(
        r#"<form method="post" action="{action}" class="inline"{confirm}>{hidden}<button type="submit" class="{class}">{label}</button></form>"#,
        confirm = confirm
            .map(|c| format!(r#" data-confirm="{}""#, esc(c)))
            .unwrap_or_default(),
        label = esc(label),
    )
}

pub struct BucketRow {
    pub name: String,
    pub created: String,
}

pub fn buckets(rows: &[BucketRow], csrf: &str) -> String {
    let mut body = String::from(
        r#"<section class="card"><h1>Buckets</h1>
<form method="post" action="/buckets/create" class="row" id="create-bucket">"#,
    );
    let _ = write!(
        body,
        r#"<input type="hidden" name="csrf" value="{}"><input name="bucket" placeholder="new-bucket-name" required pattern="[a-z0-9][a-z0-9.\-]{{1,61}}[a-z0-9]" title="3-63 lowercase letters, digits, dots and hyphens"><button type="submit">Create bucket</button></form>"#,
        esc(csrf)
    );
    if rows.is_empty() {
        body.push_str(r#"<p class="empty">No buckets yet.</p>"#);
    } else {
        body.push_str(
            r#"<div class="scroll"><table id="buckets"><thead><tr><th>Name</th><th>Created</th><th></th></tr></thead><tbody>"#,
        );
        for b in rows {
            let _ = write!(
                body,
                r#"<tr data-bucket="{n}"><td><a href="/objects?bucket={qn}">{n}</a></td><td>{c}</td><td class="actions">{del}</td></tr>"#,
                n = esc(&b.name),
                qn = q(&b.name),
                c = esc(&b.created),
                del = button_form(
                    "/buckets/delete",
                    csrf,
                    &[("bucket", &b.name)],
                    "Delete",
                    "danger",
                    Some(&format!("Delete the bucket {}? It must be empty.", b.name)),
                ),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");
    body
}

pub struct ObjectRow {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
    /// `None`: the key may not read the object's ACL.
    pub public: Option<bool>,
}

pub struct ObjectList<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub rows: &'a [ObjectRow],
    pub next: Option<&'a str>,
    pub csrf: &'a str,
    pub part_size: u64,
}

pub fn objects(l: &ObjectList<'_>) -> String {
    let mut body = format!(
        r#"<section class="card"><p class="crumbs"><a href="/buckets">Buckets</a> / {b}</p><h1>{b}</h1>
<form id="upload-form" class="row" data-bucket="{b}" data-prefix="{p}" data-part-size="{ps}">
<input type="file" id="upload-file" required><input id="upload-key" placeholder="key (default: file name)">
<button type="submit">Upload</button></form>
<div id="upload-box" hidden><progress id="upload-progress" max="100" value="0"></progress> <span id="upload-status"></span></div>
<form method="get" action="/objects" class="row"><input type="hidden" name="bucket" value="{b}"><input name="prefix" value="{p}" placeholder="prefix"><button type="submit" class="secondary">Filter</button></form>"#,
        b = esc(l.bucket),
        p = esc(l.prefix),
        ps = l.part_size,
    );
    if l.rows.is_empty() {
        body.push_str(r#"<p class="empty">No objects.</p>"#);
    } else {
        body.push_str(r#"<div class="scroll"><table id="objects"><thead><tr><th>Key</th><th class="num">Size</th><th>ETag</th><th>Modified</th><th>Access</th><th></th></tr></thead><tbody>"#);
        for o in l.rows {
            let fields = [("bucket", l.bucket), ("key", o.key.as_str())];
            let access = match o.public {
                Some(true) => format!(
                    r#"<span class="badge public">public</span> {}"#,
                    button_form(
                        "/objects/public",
                        l.csrf,
                        &[fields[0], fields[1], ("public", "off")],
                        "Make private",
                        "secondary small",
                        None
                    )
                ),
                Some(false) => format!(
                    r#"<span class="badge">private</span> {}"#,
                    button_form(
                        "/objects/public",
                        l.csrf,
                        &[fields[0], fields[1], ("public", "on")],
                        "Make public",
                        "secondary small",
                        None
                    )
                ),
                None => r#"<span class="badge">?</span>"#.to_owned(),
            };
            let _ = write!(
                body,
                r#"<tr data-key="{k}"><td class="key"><a href="/object?bucket={qb}&amp;key={qk}">{k}</a></td><td class="num" title="{size} bytes">{hs}</td><td><code>{e}</code></td><td>{m}</td><td class="access">{access}</td><td class="actions">{del}</td></tr>"#,
                k = esc(&o.key),
                qb = q(l.bucket),
                qk = q(&o.key),
                size = o.size,
                hs = human(o.size),
                e = esc(o.etag.trim_matches('"')),
                m = esc(&o.last_modified),
                del = button_form(
                    "/objects/delete",
                    l.csrf,
                    &fields,
                    "Delete",
                    "danger small",
                    Some(&format!("Delete {}?", o.key))
                ),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    if let Some(next) = l.next {
        let _ = write!(
            body,
            r#"<p><a class="button secondary" href="/objects?bucket={}&amp;prefix={}&amp;after={}">Next page</a></p>"#,
            q(l.bucket),
            q(l.prefix),
            q(next)
        );
    }
    body.push_str("</section>");
    body
}

/// What the object's `?torrent` JSON answer says.
pub struct TorrentInfo {
    pub magnet: String,
    pub webseed: String,
    pub info_hash_v1: Option<String>,
    pub info_hash_v2: Option<String>,
    pub format: String,
    pub private: bool,
    pub piece_length: u64,
}

impl TorrentInfo {
    /// The info-hash its swarm is known by: v1, or v2 for a v2-only torrent ("" if none).
    pub fn swarm_hash(&self) -> &str {
        self.info_hash_v1
            .as_deref()
            .or(self.info_hash_v2.as_deref())
            .unwrap_or("")
    }
}

/// A swarm's numbers (our seeders counted among the seeders).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SwarmNumbers {
    pub seeders: u32,
    pub leechers: u32,
    pub completed: u32,
}

pub struct ObjectDetail<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
    pub content_type: String,
    pub public: Option<bool>,
    /// The torrent, or why there is none (S3's message).
    pub torrent: Result<TorrentInfo, String>,
    pub swarm: SwarmNumbers,
    pub traffic: ObjectTraffic,
    pub csrf: &'a str,
}

pub fn object(d: &ObjectDetail<'_>) -> String {
    let (qb, qk) = (q(d.bucket), q(d.key));
    let fields = [("bucket", d.bucket), ("key", d.key)];
    let mut body = format!(
        r#"<section class="card"><p class="crumbs"><a href="/buckets">Buckets</a> / <a href="/objects?bucket={qb}">{b}</a></p>
<h1 class="key">{k}</h1>
<dl class="facts"><dt>Size</dt><dd title="{size} bytes">{hs}</dd><dt>ETag</dt><dd><code>{etag}</code></dd><dt>Modified</dt><dd>{m}</dd><dt>Content type</dt><dd>{ct}</dd>
<dt>Access</dt><dd id="access">{access}</dd></dl>
<div class="row">{toggle}{del}</div></section>"#,
        b = esc(d.bucket),
        k = esc(d.key),
        size = d.size,
        hs = human(d.size),
        etag = esc(d.etag.trim_matches('"')),
        m = esc(&d.last_modified),
        ct = esc(&d.content_type),
        access = match d.public {
            Some(true) => r#"<span class="badge public">public</span>"#,
            Some(false) => r#"<span class="badge">private</span>"#,
            None => "unknown",
        },
        toggle = match d.public {
            Some(p) => button_form(
                "/objects/public",
                d.csrf,
                &[
                    fields[0],
                    fields[1],
                    ("public", if p { "off" } else { "on" })
                ],
                if p { "Make private" } else { "Make public" },
                "secondary",
                None,
            ),
            None => String::new(),
        },
        del = button_form(
            "/objects/delete",
            d.csrf,
            &fields,
            "Delete",
            "danger",
            Some(&format!("Delete {}?", d.key)),
        ),
    );
    body.push_str(r#"<section class="card"><h2>BitTorrent</h2>"#);
    match &d.torrent {
        Ok(t) => {
            let _ = write!(
                body,
                r#"<p><a class="button" id="torrent-link" href="/torrent?bucket={qb}&amp;key={qk}">Download .torrent</a></p>
<label class="copy">Magnet link<span class="row"><input id="magnet" readonly value="{magnet}"><button type="button" data-copy="magnet">Copy</button></span></label>
<label class="copy">Webseed URL<span class="row"><input id="webseed" readonly value="{webseed}"><button type="button" data-copy="webseed">Copy</button></span></label>
<dl class="facts"><dt>Format</dt><dd>{format}{private}</dd><dt>Piece length</dt><dd>{pl}</dd>{v1}{v2}</dl>"#,
                magnet = esc(&t.magnet),
                webseed = esc(&t.webseed),
                format = esc(&t.format),
                private = if t.private { ", private" } else { "" },
                pl = human(t.piece_length),
                v1 = info_hash_fact("v1", t.info_hash_v1.as_deref()),
                v2 = info_hash_fact("v2", t.info_hash_v2.as_deref()),
            );
        }
        Err(why) => {
            let _ = write!(body, r#"<p class="empty">No torrent: {}</p>"#, esc(why));
        }
    }
    body.push_str("</section>");
    let t = &d.traffic;
    let _ = write!(
        body,
        r#"<section class="card" id="live-stats" data-src="/api/object-stats?bucket={qb}&amp;key={qk}&amp;ih={ih}"><h2>Swarm and traffic <small>(live)</small></h2>
<div class="tiles">
<div class="tile"><span class="n" data-field="seeders">{s}</span><span>seeders</span></div>
<div class="tile"><span class="n" data-field="leechers">{l}</span><span>leechers</span></div>
<div class="tile"><span class="n" data-field="finished">{c}</span><span>downloads finished</span></div>
</div>
<table class="figures"><tbody>
<tr><th>Sent by HTTP GET</th><td class="num" data-field="get">{g}</td></tr>
<tr><th>Sent by the webseed</th><td class="num" data-field="webseed">{w}</td></tr>
<tr><th>Sent over the peer wire</th><td class="num" data-field="peer">{p}</td></tr>
</tbody></table>
<p class="hint">Bytes since this server started. Seeders include this server's own seeder. A download counts as finished when its client announces <code>completed</code>, or stops with nothing left to fetch.</p></section>"#,
        ih = d
            .torrent
            .as_ref()
            .map(|t| q(t.swarm_hash()))
            .unwrap_or_default(),
        s = d.swarm.seeders,
        l = d.swarm.leechers,
        c = finished(&d.swarm, t),
        g = human(t.get),
        w = human(t.webseed),
        p = human(t.peer),
    );
    body
}

/// The info-hash of one BitTorrent version, as a fact of the object page (nothing when the
/// torrent has none).
fn info_hash_fact(version: &str, hash: Option<&str>) -> String {
    hash.map(|h| {
        format!(
            r#"<dt>Info-hash ({version})</dt><dd><code id="info-hash-{version}">{}</code></dd>"#,
            esc(h)
        )
    })
    .unwrap_or_default()
}

/// Finished downloads of an object: the tracker's `completed` count, or the downloads this
/// server saw finish since it started (clients that stop at once announce `stopped`, never
/// `completed`), whichever is larger.
pub fn finished(swarm: &SwarmNumbers, traffic: &ObjectTraffic) -> u64 {
    u64::from(swarm.completed).max(traffic.completed)
}

/// The totals page: figures since start and the chart.
pub fn totals(now: &Totals, stored: Option<seedbucket_store::Usage>, samples: &[Sample]) -> String {
    let sent = now.server_torrent_bytes();
    let share = if now.delivered > 0 {
        format!("{:.0}%", 100.0 * now.saved() as f64 / now.delivered as f64)
    } else {
        "–".to_owned()
    };
    format!(
        r#"<section class="card" id="totals"><h1>Totals</h1>
<div class="tiles">
<div class="tile"><span class="n" id="saved">{saved}</span><span>egress saved by peers</span></div>
<div class="tile"><span class="n" id="delivered">{delivered}</span><span>delivered to BitTorrent clients</span></div>
<div class="tile"><span class="n" id="sent">{sent}</span><span>sent by the server (peer wire + webseed)</span></div>
<div class="tile"><span class="n" id="share">{share}</span><span>of BitTorrent bytes came from peers</span></div>
</div>
<table class="figures"><tbody>
<tr><th>Sent by HTTP GET</th><td class="num">{get}</td></tr>
<tr><th>Sent by the webseed</th><td class="num">{webseed}</td></tr>
<tr><th>Sent over the peer wire</th><td class="num">{peer}</td></tr>
{stored}</tbody></table>
<h2>Delivered against sent</h2>{chart}
<p class="hint">Since this server started. A BitTorrent download counts its object's size as delivered when it finishes (its client announces <code>completed</code>, or stops with nothing left to fetch); downloads still running are not counted. What the server did not send, the peers sent each other.</p>
</section>"#,
        saved = human(now.saved()),
        delivered = human(now.delivered),
        sent = human(sent),
        get = human(now.get),
        webseed = human(now.webseed),
        peer = human(now.peer),
        chart = chart(samples),
        stored = stored
            .map(|u| format!(
                r#"<tr><th>Stored</th><td class="num" id="stored">{} in {} objects{}</td></tr>"#,
                human(u.bytes),
                u.objects,
                if u.noncurrent_versions > 0 {
                    format!(" and {} older versions", u.noncurrent_versions)
                } else {
                    String::new()
                }
            ))
            .unwrap_or_default(),
    )
}

/// An SVG line chart of bytes delivered to BitTorrent clients and bytes the server sent them,
/// both cumulative, over the samples' time.
pub fn chart(samples: &[Sample]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const PAD: f64 = 36.0;
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return String::new();
    };
    let span = (last.at.saturating_sub(first.at)).max(1) as f64;
    let top = samples
        .iter()
        .map(|s| s.totals.delivered.max(s.totals.server_torrent_bytes()))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let line = |value: &dyn Fn(&Totals) -> u64| -> String {
        samples
            .iter()
            .map(|s| {
                let x = PAD + (s.at.saturating_sub(first.at)) as f64 / span * (W - 2.0 * PAD);
                let y = H - PAD - value(&s.totals) as f64 / top * (H - 2.0 * PAD);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let minutes = span / 60.0;
    format!(
        r##"<figure class="chart"><svg id="egress-chart" viewBox="0 0 {W} {H}" role="img" aria-label="bytes delivered to clients against bytes the server sent">
<line x1="{PAD}" y1="{base}" x2="{right}" y2="{base}" stroke="#9aa4b2"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{base}" stroke="#9aa4b2"/>
<text x="{PAD}" y="{ty}" font-size="11" fill="#5b6472">{top_label}</text>
<text x="{right}" y="{bx}" font-size="11" fill="#5b6472" text-anchor="end">now</text>
<text x="{PAD}" y="{bx}" font-size="11" fill="#5b6472">{minutes:.0} min ago</text>
<polyline fill="none" stroke="#1f9d55" stroke-width="2.5" points="{delivered}"/>
<polyline fill="none" stroke="#d9480f" stroke-width="2.5" stroke-dasharray="6 4" points="{sent}"/>
</svg><figcaption><span class="key-delivered">━ delivered to clients</span> <span class="key-sent">╍ sent by the server</span></figcaption></figure>"##,
        base = H - PAD,
        right = W - PAD,
        ty = PAD - 8.0,
        bx = H - PAD + 16.0,
        top_label = esc(&human(top as u64)),
        delivered = line(&|t| t.delivered),
        sent = line(&|t| t.server_torrent_bytes()),
    )
}

/// A page that says what went wrong (a refused S3 call, a missing object).
pub fn problem(title: &str, message: &str, back: &str) -> String {
    format!(
        r#"<section class="card"><h1>{}</h1><p class="flash" role="alert">{}</p><p><a href="{}">Back</a></p></section>"#,
        esc(title),
        esc(message),
        esc(back)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(q("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn hostile_names_stay_text() {
        let rows = [ObjectRow {
            key: "<script>alert(1)</script>".into(),
            size: 1,
            etag: "\"x\"".into(),
            last_modified: String::new(),
            public: Some(false),
        }];
        let html = objects(&ObjectList {
            bucket: "b\"onload=\"x",
            prefix: "",
            rows: &rows,
            next: None,
            csrf: "t",
            part_size: 8,
        });
        assert!(!html.contains("<script>"));
        assert!(!html.contains("b\"onload"));
    }

    #[test]
    fn chart_draws_both_lines() {
        let s = |at, delivered, peer| Sample {
            at,
            totals: Totals {
                delivered,
                peer,
                ..Totals::default()
            },
        };
        let svg = chart(&[s(0, 0, 0), s(60, 100, 40), s(120, 300, 60)]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(chart(&[]).is_empty());
    }
}
