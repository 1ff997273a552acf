"""Browser swarm for bench/webtorrent.sh: TABS headless Chromium tabs download one SIZE_MB public
object with the WebTorrent page (examples/web), each tab opened once the one before has received
its first bytes, all kept open (a tab that finished keeps sending to the others). Measures what
the server's webseed sent (its metric, and the access log's webseed lines as a cross-check)
against what the tabs received (TABS x the object), and prints a Markdown report.

  python bench/webtorrent.py OUT_DIR       (env: SIZE_MB=64 TABS=8 WEBCONNS STRATEGY, SEEDBUCKET_BIN)
"""
import hashlib
import os
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from browser import Browser  # noqa: E402
from conftest import Server, make_client  # noqa: E402
from test_webtorrent import STATUS, announce_urls, publish_page, wait_done  # noqa: E402

TARGET = 3.0  # webseed bytes / object size


def webseed_log_bytes(path):
    """Sum of the bytes sent by the access log's webseed lines (text format: time, channel,
    remote, key, operation, resource, status, bytes out, ...)."""
    total = 0
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) > 7 and f[1] == "webseed":
            total += int(f[7])
    return total


def main(work):
    size_mb, tabs_n = int(os.environ.get("SIZE_MB", 64)), int(os.environ.get("TABS", 8))
    size = size_mb << 20
    load = os.getloadavg()[0]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "access.log"
    server = Server(work, admin=True, torrent_max=1 << 40, extra=["--access-log", str(log)])
    try:
        s3 = make_client(server)
        s3.create_bucket(Bucket="bench")
        publish_page(s3, "bench")
        data = os.urandom(size)
        s3.put_object(Bucket="bench", Key="object.bin", Body=data, ACL="public-read")
        announce = announce_urls(server, "bench", "object.bin")
        if not any(u.startswith("ws") for u in announce):
            sys.exit(f"the torrent lists no WebSocket tracker ({announce}): this server cannot "
                     "introduce browsers to each other")
        query = {"src": "/bench/object.bin?torrent", "sha256": hashlib.sha256(data).hexdigest()}
        for env, param in (("WEBCONNS", "webconns"), ("STRATEGY", "strategy")):
            if os.environ.get(env):
                query[param] = os.environ[env]
        url = f"{server.url}/bench/web/index.html?" + urllib.parse.urlencode(query)
        m = server.metrics()
        before = m['seedbucket_uploaded_bytes_total{via="webseed"}']
        log_before = webseed_log_bytes(log)
        start = time.time()
        with Browser(work / "browser") as browser:
            tabs = []
            for i in range(tabs_n):
                tab = browser.open(url, name=f"tab{i + 1}")
                tabs.append(tab)
                tab.wait_for(f"{STATUS} && ({STATUS}.bytesFromWebseed + {STATUS}.bytesFromPeers > 0"
                             f" || {STATUS}.state === 'failed')", timeout=120,
                             what="the first bytes to arrive")
            statuses = [wait_done(tab, timeout=600) for tab in tabs]
            elapsed = time.time() - start
        sent = server.metrics()['seedbucket_uploaded_bytes_total{via="webseed"}'] - before
        time.sleep(0.5)  # a request's log line is written once its body is done
        logged = webseed_log_bytes(log) - log_before
    finally:
        server.stop()

    bad = [t.name for t, s in zip(tabs, statuses) if s["sha256Ok"] is not True]
    ratio = sent / size
    out = [f"# WebTorrent benchmark ({time.strftime('%Y-%m-%d')}, {size_mb} MiB public object, "
           f"{tabs_n} Chromium tabs)\n",
           "Each tab opened once the one before had received its first bytes; all stayed open. "
           f"Piece order: {os.environ.get('STRATEGY') or 'rarest (the page default)'}; "
           f"requests in flight to the webseed per tab: {os.environ.get('WEBCONNS') or '4 (default)'}; "
           f"load average at the start: {load:.1f} on {os.cpu_count()} cores.\n",
           "| tab | from the webseed | from other tabs | sent to other tabs | tabs connected | seconds |",
           "|---|---|---|---|---|---|"]
    for t, s in zip(tabs, statuses):
        out.append(f"| {t.name} | {s['bytesFromWebseed']} | {s['bytesFromPeers']} | "
                   f"{s['bytesToPeers']} | {s['peersSeen']} | {s['seconds']:.1f} |")
    out += ["", "| figure | value |", "|---|---|",
            f"| bytes the tabs received ({tabs_n} x the object) | {tabs_n * size} |",
            f"| bytes the server's webseed sent (metric) | {int(sent)} |",
            f"| the same, from the access log's webseed lines | {logged} |",
            f"| webseed / object size | {ratio:.2f} (plain HTTP: {tabs_n}.00; target <= {TARGET:.2f}: "
            f"{'met' if ratio <= TARGET else 'MISSED'}) |",
            f"| share of the tabs' bytes that came from other tabs | "
            f"{sum(s['bytesFromPeers'] for s in statuses) / (tabs_n * size):.0%} |",
            f"| time from the first tab to the last finish, s | {elapsed:.1f} |",
            f"| every tab's SHA-256 matches | {'yes' if not bad else 'NO: ' + ', '.join(bad)} |"]
    print("\n".join(out))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
