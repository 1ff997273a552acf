"""Browsers download public objects with WebTorrent (examples/web, built into its dist/ by
scripts/test.sh) in headless Chromium: from the server's webseed, and from each other over
WebRTC once the server's WebSocket tracker introduces them.

The page is published as public objects of a bucket on the server under test, so it is served
from the same origin as the objects' .torrent files (see publish_page). The page checks the
SHA-256 of what it downloaded and counts where the bytes came from (window.seedbucketDownload).
"""
import contextlib
import hashlib
import os
import threading
import urllib.parse
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import libtorrent as lt
import pytest

from browser import Browser
from conftest import ROOT, Server, make_client

DIST = ROOT / "examples" / "web" / "dist"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript",
                 ".map": "application/json", ".txt": "text/plain; charset=utf-8"}
STATUS = "window.seedbucketDownload"


def require_page():
    """Fails (never skips) when the page was not built."""
    if not (DIST / "index.html").exists() or not (DIST / "main.js").exists():
        raise AssertionError(f"the example page is not built in {DIST}: "
                             "cd examples/web && npm ci && npm run build (scripts/test.sh does it)")


def publish_page(s3, bucket):
    """Uploads the built page as public objects under `web/` of `bucket`."""
    require_page()
    for f in sorted(DIST.iterdir()):
        s3.put_object(Bucket=bucket, Key=f"web/{f.name}", Body=f.read_bytes(), ACL="public-read",
                      ContentType=CONTENT_TYPES.get(f.suffix, "application/octet-stream"))


def page_url(base, torrent_url, data):
    """The page at `base` (its index.html URL), told to fetch `torrent_url` and expect `data`."""
    return base + "?" + urllib.parse.urlencode(
        {"src": torrent_url, "sha256": hashlib.sha256(data).hexdigest()})


def webseed_bytes(server):
    return int(server.metrics()['seedbucket_uploaded_bytes_total{via="webseed"}'])


def put_public(s3, bucket, key, size):
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
    return data


def announce_urls(server, bucket, key):
    with urllib.request.urlopen(f"{server.url}/{bucket}/{key}?torrent", timeout=10) as r:
        meta = lt.bdecode(r.read())
    tiers = meta.get(b"announce-list") or [[meta.get(b"announce", b"")]]
    return [u.decode() for tier in tiers for u in tier]


def wait_done(tab, timeout):
    """Waits for the page to have the whole object and its hash (or to fail); returns the status."""
    status = tab.wait_for(f"{STATUS} && ({STATUS}.done || {STATUS}.state === 'failed') && {STATUS}",
                          timeout=timeout, what="the download to finish and be hashed")
    assert status["state"] != "failed", f"tab {tab.name} failed: {status['errors']}"
    return status


@pytest.fixture
def site(tmp_path):
    """A server of its own (its counters are this test's alone) with the page published in
    bucket `site`; yields (server, s3)."""
    server = Server(tmp_path, admin=True, torrent_max=1 << 30,
                    extra=["--access-log", str(tmp_path / "access.log")])
    try:
        s3 = make_client(server)
        s3.create_bucket(Bucket="site")
        publish_page(s3, "site")
        yield server, s3
    finally:
        server.stop()


def test_one_tab_downloads_from_the_webseed(site, tmp_path):
    """One visitor alone: every byte comes from the webseed (nobody else has the object), the
    page verifies them, and the server sent the object about once."""
    server, s3 = site
    size = (12 << 20) + 12_345  # the last piece is a short one
    data = put_public(s3, "site", "alone.bin", size)
    before = webseed_bytes(server)
    with Browser(tmp_path / "browser") as browser:
        tab = browser.open(page_url(f"{server.url}/site/web/index.html", "/site/alone.bin?torrent", data),
                           name="alone")
        status = wait_done(tab, timeout=120)
        tab.screenshot("done")
    assert status["sha256Ok"] is True, status
    assert status["length"] == size
    assert status["bytesFromWebseed"] == size, status
    assert status["bytesFromPeers"] == 0, status
    sent = webseed_bytes(server) - before
    assert size <= sent < 2 * size, f"webseed sent {sent} bytes for a {size}-byte object"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def static_site(directory):
    """Serves `directory` over HTTP on a free 127.0.0.1 port; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_page_on_another_origin_downloads_from_the_webseed(site, tmp_path):
    """The page hosted elsewhere than the server (here a static server on another port): the
    .torrent comes through the bucket's CORS rule, the webseed answers any origin."""
    server, s3 = site
    size = (4 << 20) + 1
    data = put_public(s3, "site", "elsewhere.bin", size)
    require_page()
    with static_site(DIST) as origin:
        s3.put_bucket_cors(Bucket="site", CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": [origin], "AllowedMethods": ["GET"]}]})
        with Browser(tmp_path / "browser") as browser:
            tab = browser.open(page_url(f"{origin}/index.html", f"{server.url}/site/elsewhere.bin?torrent",
                                        data), name="elsewhere")
            try:
                status = wait_done(tab, timeout=120)
            except AssertionError as e:
                refused = [c for c in tab.console if "CORS" in c or "requestfailed" in c]
                raise AssertionError(f"{e}\n" + "\n".join(refused[:6])) from None
    assert status["sha256Ok"] is True, status
    assert status["bytesFromWebseed"] == size, status


def tracker_exchange(tabs, limit=4, width=600):
    """What each tab sent to and got from WebSocket servers (for a failure's message)."""
    lines = []
    for tab in tabs:
        urls = sorted({f["url"] for f in tab.ws_frames})
        sent = [f for f in tab.ws_frames if f["dir"] == "sent"]
        got = [f for f in tab.ws_frames if f["dir"] == "received"]
        lines.append(f"tab {tab.name}: websockets {urls or 'none'}, {len(sent)} frames sent, "
                     f"{len(got)} received")
        for f in sorted(sent[:limit] + got[:limit], key=lambda f: f["t"]):
            lines.append(f"  {f['t']:8.3f}s {f['dir']:8} {f['data'][:width]}")
        ws_notes = [c for c in tab.console if "websocket" in c.lower()]
        lines += [f"  console: {c}" for c in ws_notes[:limit]]
    return "\n".join(lines)


def test_tabs_share_the_object_over_webrtc(site, tmp_path):
    """Four visitors of the page, each arriving once the one before has started downloading,
    all staying: every one ends with the exact bytes, the later ones get part of them from the
    earlier ones, and the server's webseed sends less than four times the object."""
    server, s3 = site
    size = 32 << 20
    data = put_public(s3, "site", "shared.bin", size)
    announce = announce_urls(server, "site", "shared.bin")
    url = page_url(f"{server.url}/site/web/index.html", "/site/shared.bin?torrent", data)
    before = webseed_bytes(server)
    with Browser(tmp_path / "browser") as browser:
        tabs = []
        try:
            for i in range(4):
                tab = browser.open(url, name=f"tab{i + 1}")
                tabs.append(tab)
                tab.wait_for(f"{STATUS} && ({STATUS}.progress > 0 || {STATUS}.bytesFromWebseed + "
                             f"{STATUS}.bytesFromPeers > 0 || {STATUS}.state === 'failed')",
                             timeout=60, what="the first bytes to arrive")
            statuses = [wait_done(tab, timeout=240) for tab in tabs]
            for tab in tabs:
                tab.screenshot("done")
        except AssertionError as e:
            raise AssertionError(f"{e}\nannounce URLs of the torrent: {announce}\n"
                                 f"{tracker_exchange(tabs)}") from None
        sent = webseed_bytes(server) - before
        summary = "\n".join(
            f"{t.name}: webseed {s['bytesFromWebseed']}, peers {s['bytesFromPeers']}, "
            f"sent to peers {s['bytesToPeers']}, peers seen {s['peersSeen']}, {s['seconds']:.1f} s"
            for t, s in zip(tabs, statuses))
        context = (f"\n{summary}\nserver webseed sent {sent}\nannounce URLs of the torrent: "
                   f"{announce}\n{tracker_exchange(tabs)}")
        for tab, s in zip(tabs, statuses):
            assert s["sha256Ok"] is True, f"{tab.name}: {s}"
            assert s["bytesFromWebseed"] + s["bytesFromPeers"] >= size, f"{tab.name}: {s}"
        for tab, s in zip(tabs[1:], statuses[1:]):
            assert s["bytesFromPeers"] > 0, f"{tab.name} got nothing from the other tabs{context}"
        assert sent < 4 * size, f"the webseed sent {sent} bytes, 4 x the object is {4 * size}{context}"
        (tmp_path / "summary.txt").write_text(context)
