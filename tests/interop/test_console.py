"""The web console on the admin listener, in headless Chromium (Debian's, through Playwright)
against a real server: log in, create a bucket, upload through the page (multipart), copy the
magnet link, make an object public and fetch it anonymously, watch the object's swarm page
while aria2c downloads it, the totals page; a second key sees only its own buckets; CSRF,
cross-origin posts and missing sessions are refused. Screenshots go to the test's output
directory (SEEDBUCKET_UPDATE_SCREENSHOT=1 also copies the object page to docs/images/console.png,
the README's picture)."""
import hashlib
import http.client
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import libtorrent as lt
import pytest

from browser import Browser
from conftest import ACCESS_KEY, ROOT, SECRET_KEY, TEST_BACKEND, Server, make_client, start_backend
from test_get_object_torrent import ARIA


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory):
    """The server under test: embedded, or a gateway in front of SEEDBUCKET_TEST_BACKEND (the
    console is an S3 client of its own server, so it must work the same in both)."""
    tmp = tmp_path_factory.mktemp("console")
    backend = None if TEST_BACKEND == "embedded" else start_backend(TEST_BACKEND, tmp)
    srv = Server(tmp, admin=True, torrent_max=64 * 1024 * 1024, backend=backend)
    yield srv
    srv.stop()
    if backend is not None:
        backend.stop()


def console_url(srv, path=""):
    return f"http://127.0.0.1:{srv.admin_port}{path}"


def log_in(tab, access_key, secret_key):
    tab.page.fill("input[name=access_key]", access_key)
    tab.page.fill("input[name=secret_key]", secret_key)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url("**/buckets", timeout=10_000)


def test_console_end_to_end(console_server, tmp_path):
    srv = console_server
    s3 = make_client(srv)
    data = os.urandom(20 * 1024 * 1024 + 12345)  # three parts of 8 MiB
    upload = tmp_path / "weights.bin"
    upload.write_bytes(data)
    with Browser(tmp_path / "browser", loopback_webrtc=False) as b:
        b.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                    origin=console_url(srv))
        tab = b.open(console_url(srv, "/"), name="root")
        assert tab.page.url.endswith("/login")
        log_in(tab, ACCESS_KEY, SECRET_KEY)
        tab.page.on("dialog", lambda d: d.accept())

        # Create a bucket through the page.
        tab.page.fill("#create-bucket input[name=bucket]", "console-demo")
        tab.page.click("#create-bucket button[type=submit]")
        tab.page.wait_for_url("**/objects?bucket=console-demo", timeout=10_000)
        assert "console-demo" in [b["Name"] for b in s3.list_buckets()["Buckets"]]

        # Upload through the page: larger than a part, so a multipart upload with a progress bar.
        tab.page.set_input_files("#upload-file", str(upload))
        tab.page.click("#upload-form button[type=submit]")
        tab.wait_for("document.getElementById('upload-status').dataset.done === '1'",
                     timeout=60, what="the upload to finish")
        tab.page.wait_for_selector("tr[data-key='weights.bin']", timeout=10_000)
        got = s3.get_object(Bucket="console-demo", Key="weights.bin")
        assert sha(got["Body"].read()) == sha(data)
        assert got["ETag"].strip('"').endswith("-3"), got["ETag"]
        tab.screenshot("objects")

        # Private: anonymous GET refused.
        anon_url = f"{srv.url}/console-demo/weights.bin"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anon_url, timeout=10)
        assert refused.value.code == 403

        # The object page: torrent, magnet (copied), webseed, info-hash.
        tab.page.click("tr[data-key='weights.bin'] td.key a")
        tab.page.wait_for_selector("#magnet", timeout=20_000)
        tab.page.click("button[data-copy=magnet]")
        copied = tab.wait_for("navigator.clipboard.readText()", timeout=5, what="the copied magnet")
        envelope = s3_torrent_json(srv, "console-demo", "weights.bin")
        # The object is private: its URLs carry tokens that expire (a second apart here), so
        # compare what names the content.
        assert copied.startswith("magnet:?xt=urn:btih:")
        mine, theirs = (urllib.parse.parse_qs(m.split("?", 1)[1]) for m in (copied, envelope["magnet"]))
        assert [mine[k] for k in ("xt", "dn", "xl")] == [theirs[k] for k in ("xt", "dn", "xl")]
        untokened = lambda u: re.sub(r"/\d+\.\w+\.[0-9a-f]+\.[0-9a-f]+/", "/TOKEN/", u)
        assert untokened(tab.page.input_value("#webseed")) == untokened(envelope["webseed"])
        assert tab.page.inner_text("#info-hash-v1") == envelope["info_hash_v1"]

        # Toggle public, then fetch anonymously.
        tab.page.click("form[action='/objects/public'] button")
        tab.page.wait_for_selector("#access .badge.public", timeout=10_000)
        with urllib.request.urlopen(anon_url, timeout=30) as r:
            assert sha(r.read()) == sha(data)

        # The .torrent link gives what GetObjectTorrent gives.
        torrent = tab.page.request.get(console_url(srv, "/torrent?bucket=console-demo&key=weights.bin"))
        assert torrent.status == 200
        assert torrent.headers["content-type"] == "application/x-bittorrent"
        meta = lt.bdecode(torrent.body())
        assert meta[b"info"][b"length"] == len(data)

        # Watch the swarm page while aria2c downloads from the seeder (no webseed).
        def field(name):
            return tab.page.inner_text(f"#live-stats [data-field={name}]")
        assert field("finished") == "0"
        meta.pop(b"url-list", None)
        tfile = tmp_path / "weights.torrent"
        tfile.write_bytes(lt.bencode(meta))
        p = subprocess.run(["aria2c", "-d", str(tmp_path / "aria"), *ARIA, str(tfile)],
                           capture_output=True, text=True, timeout=180)
        assert sha((tmp_path / "aria" / "weights.bin").read_bytes()) == sha(data), p.stdout[-2000:]
        tab.wait_for("document.querySelector('#live-stats [data-field=finished]').textContent === '1'",
                     timeout=15, what="the finished download to show")
        # (aria2c with --seed-time=0 stops at once: it announces `stopped` with nothing left,
        # never `completed`, so the tracker's own `completed` count stays 0 and only the
        # server's finished-downloads figure moves.)
        assert field("peer") != "0 B"
        # The live numbers are the swarm of this object's own info-hash, never another's.
        stats = lambda ih: tab.page.request.get(console_url(  # noqa: E731
            srv, f"/api/object-stats?bucket=console-demo&key=weights.bin&ih={ih}")).json()
        assert stats(envelope["info_hash_v1"])["seeders"] >= 1
        assert stats("00" * 20)["seeders"] == 0
        tab.screenshot("object")
        if os.environ.get("SEEDBUCKET_UPDATE_SCREENSHOT") == "1":
            (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
            shutil.copy(b.out / "root-object.png", ROOT / "docs" / "images" / "console.png")

        # Totals (the root key is an administrator): delivered vs sent, with the chart.
        tab.page.goto(console_url(srv, "/totals"))
        assert tab.page.locator("#egress-chart polyline").count() == 2
        totals = tab.page.request.get(console_url(srv, "/api/totals")).json()
        assert totals["delivered"] >= len(data)
        assert totals["peer"] > 0
        tab.screenshot("totals")

        # A phone-sized window: nothing wider than the screen.
        tab.page.set_viewport_size({"width": 390, "height": 844})
        tab.page.goto(console_url(srv, "/objects?bucket=console-demo"))
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        tab.screenshot("phone")

        # Delete through the page.
        tab.page.set_viewport_size({"width": 1000, "height": 800})
        tab.page.click("tr[data-key='weights.bin'] form[action='/objects/delete'] button")
        tab.page.wait_for_selector("text=No objects.", timeout=10_000)
        assert s3.list_objects_v2(Bucket="console-demo").get("KeyCount") == 0


def s3_torrent_json(srv, bucket, key):
    """The `?torrent` JSON envelope, asked of the S3 port with the root key (presigned)."""
    s3 = make_client(srv)
    url = s3.generate_presigned_url("get_object_torrent", Params={"Bucket": bucket, "Key": key})
    import json
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["data"]


def test_a_key_sees_only_its_own_buckets(console_server, tmp_path):
    srv = console_server
    make_client(srv).create_bucket(Bucket="root-only")
    ak, sk, _ = srv.create_key("console-alice")
    with Browser(tmp_path / "browser", loopback_webrtc=False) as b:
        tab = b.open(console_url(srv, "/login"), name="alice")
        log_in(tab, ak, sk)
        assert tab.page.locator("tr[data-bucket='root-only']").count() == 0
        assert tab.page.locator("a[href='/totals']").count() == 0
        tab.page.fill("#create-bucket input[name=bucket]", "alice-bucket")
        tab.page.click("#create-bucket button[type=submit]")
        tab.page.wait_for_url("**/objects?bucket=alice-bucket", timeout=10_000)
        tab.page.goto(console_url(srv, "/buckets"))
        names = tab.page.locator("tr[data-bucket]").evaluate_all(
            "rows => rows.map(r => r.dataset.bucket)")
        assert names == ["alice-bucket"]
        # Someone else's bucket: S3's refusal, shown.
        tab.page.goto(console_url(srv, "/objects?bucket=root-only"))
        assert "AccessDenied" in tab.page.inner_text("main")
        # The totals are for administrators.
        assert tab.page.request.get(console_url(srv, "/totals")).status == 403
        tab.screenshot("alice")


class Plain:
    """Requests without a browser (no redirects followed)."""

    def __init__(self, srv):
        self.host = f"127.0.0.1:{srv.admin_port}"

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection(self.host, timeout=10)
        h = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        out = (r.status, r.headers, r.read())  # headers: case-insensitive
        c.close()
        return out

    def login(self, ak=ACCESS_KEY, sk=SECRET_KEY):
        status, h, _ = self.request("POST", "/login",
                                    urllib.parse.urlencode({"access_key": ak, "secret_key": sk}))
        assert status == 303, status
        cookie = h["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        return cookie.split(";")[0]


def csrf_of(page_html):
    return re.search(rb'name="csrf" value="([0-9a-f]+)"', page_html).group(1).decode()


def test_sessions_and_csrf_are_required(console_server):
    srv = console_server
    c = Plain(srv)
    s3 = make_client(srv)
    # No session: pages send to the login, actions are refused.
    status, h, _ = c.request("GET", "/buckets")
    assert status == 303 and h["Location"] == "/login"
    status, _, _ = c.request("POST", "/buckets/create", "bucket=no-session&csrf=x")
    assert status == 401
    status, _, _ = c.request("POST", "/buckets/create", "bucket=no-session",
                             {"Cookie": "seedbucket_console=" + "0" * 64})
    assert status == 401
    # A wrong secret logs nobody in.
    status, h, _ = c.request("POST", "/login", "access_key=%s&secret_key=wrong" % ACCESS_KEY)
    assert status == 401 and "Set-Cookie" not in h
    cookie = c.login()
    status, _, page = c.request("GET", "/buckets", headers={"Cookie": cookie})
    assert status == 200
    token = csrf_of(page)
    # Missing or wrong CSRF token, or another origin: refused, nothing created.
    for body, extra in [("bucket=csrf-none", {}),
                        ("bucket=csrf-wrong&csrf=" + "f" * 64, {}),
                        ("bucket=csrf-origin&csrf=" + token, {"Origin": "http://evil.example"})]:
        status, _, _ = c.request("POST", "/buckets/create", body, {"Cookie": cookie, **extra})
        assert status == 403, body
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not [n for n in names if n.startswith("csrf-")]
    # With the token: done.
    status, h, _ = c.request("POST", "/buckets/create", "bucket=csrf-ok&csrf=" + token,
                             {"Cookie": cookie, "Origin": f"http://{c.host}"})
    assert status == 303, status
    assert "csrf-ok" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # The upload API wants the token in its header.
    status, _, _ = c.request("PUT", "/api/upload/object?bucket=csrf-ok&key=x", b"data",
                             {"Cookie": cookie})
    assert status == 403
    status, _, _ = c.request("PUT", "/api/upload/object?bucket=csrf-ok&key=x", b"data",
                             {"Cookie": cookie, "X-CSRF-Token": token})
    assert status == 200
    assert s3.get_object(Bucket="csrf-ok", Key="x")["Body"].read() == b"data"
    # A body over the console's cap (two parts' worth) is refused, and nothing is written.
    status, _, _ = c.request("PUT", "/api/upload/object?bucket=csrf-ok&key=big", b"x" * (16 * 1024 * 1024 + 1),
                             {"Cookie": cookie, "X-CSRF-Token": token})
    assert status == 413
    assert s3.list_objects_v2(Bucket="csrf-ok", Prefix="big").get("KeyCount") == 0
    # Pages carry the headers that keep them out of frames and scripts out of them.
    status, h, _ = c.request("GET", "/buckets", headers={"Cookie": cookie})
    assert "script-src 'self'" in h["Content-Security-Policy"]
    assert h["X-Frame-Options"] == "DENY"
    # Logging out ends the session on the server, not only in the browser.
    status, _, _ = c.request("POST", "/logout", "csrf=" + token, {"Cookie": cookie})
    assert status == 303
    status, _, _ = c.request("GET", "/buckets", headers={"Cookie": cookie})
    assert status == 303


def test_console_off_keeps_metrics(tmp_path):
    srv = Server(tmp_path, admin=True, extra=["--console", "off"])
    try:
        c = Plain(srv)
        assert c.request("GET", "/metrics")[0] == 200
        assert c.request("GET", "/login")[0] == 404
    finally:
        srv.stop()


def cli(srv, *args, key=None):
    """`seedbucket ARGS` against the server's admin listener, as the root key (from the
    environment, as an operator's shell would have it) or as `key` (access, secret)."""
    env = dict(os.environ, SEEDBUCKET_ADMIN_LISTEN=f"127.0.0.1:{srv.admin_port}",
               SEEDBUCKET_ROOT_ACCESS_KEY=ACCESS_KEY, SEEDBUCKET_ROOT_SECRET_KEY=SECRET_KEY)
    if key:
        env.update(SEEDBUCKET_ACCESS_KEY=key[0], SEEDBUCKET_SECRET_KEY=key[1])
    from conftest import _binary
    return subprocess.run([_binary(), *args], env=env, capture_output=True, text=True, timeout=30)


def test_bucket_and_stats_commands(console_server):
    srv = console_server
    s3 = make_client(srv)
    ak, sk, user_id = srv.create_key("console-carol")
    made = cli(srv, "bucket", "create", "cli-bucket")
    assert made.returncode == 0, made.stderr
    assert "cli-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # chown: the bucket is carol's now, as S3 says.
    moved = cli(srv, "bucket", "chown", "cli-bucket", "console-carol")
    assert moved.returncode == 0, moved.stderr
    assert s3.get_bucket_acl(Bucket="cli-bucket")["Owner"]["ID"] == user_id
    listed = cli(srv, "bucket", "list")
    assert re.search(r"^cli-bucket\s+\S+ \S+ UTC\s+console-carol$", listed.stdout, re.M), listed.stdout
    # carol sees her bucket, without owners (not an administrator), and may not chown.
    mine = cli(srv, "bucket", "list", key=(ak, sk))
    assert "cli-bucket" in mine.stdout and "root-only" not in mine.stdout, mine.stdout
    refused = cli(srv, "bucket", "chown", "cli-bucket", "root", key=(ak, sk))
    assert refused.returncode != 0 and "administrator" in refused.stderr
    # public on: anonymous reads work; off: refused again.
    carol = make_client(srv, access_key=ak, secret_key=sk)
    carol.put_object(Bucket="cli-bucket", Key="open.txt", Body=b"for everyone")
    url = f"{srv.url}/cli-bucket/open.txt"
    assert cli(srv, "bucket", "public", "cli-bucket", "on", key=(ak, sk)).returncode == 0
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"for everyone"
    assert cli(srv, "bucket", "public", "cli-bucket", "off", key=(ak, sk)).returncode == 0
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 403
    # delete: refused while not empty (S3's error, shown), then done.
    full = cli(srv, "bucket", "delete", "cli-bucket", key=(ak, sk))
    assert full.returncode != 0 and "BucketNotEmpty" in full.stderr
    carol.delete_object(Bucket="cli-bucket", Key="open.txt")
    assert cli(srv, "bucket", "delete", "cli-bucket", key=(ak, sk)).returncode == 0
    assert "cli-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # stats: for administrators; the figures are the console's.
    stats = cli(srv, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    import json
    v = json.loads(stats.stdout)
    assert v["buckets"] >= 1 and v["get"] >= 0 and v["saved"] == max(0, v["delivered"] - v["peer"] - v["webseed"])
    text = cli(srv, "stats").stdout
    assert "egress saved by peers" in text
    if TEST_BACKEND == "embedded":  # a gateway does not count what its cluster stores
        assert v["objects"] >= 0 and v["bytes_stored"] >= 0 and "bytes stored" in text
    else:
        assert "objects" not in v and "bytes stored" not in text
    assert cli(srv, "stats", key=(ak, sk)).returncode != 0
    # A wrong secret: a clear refusal.
    wrong = cli(srv, "bucket", "list", key=(ak, "nope"))
    assert wrong.returncode != 0 and "wrong access key or secret key" in wrong.stderr
