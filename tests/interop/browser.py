"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright (which is told
to use that binary and never downloads a browser of its own).

    with Browser(tmp_path / "browser") as b:
        tab = b.open(url, name="first")
        tab.wait_for("window.ready === true", timeout=30, what="the page to load")
        value = tab.evaluate("window.something")
        tab.screenshot("loaded")

Everything a tab logs (console, page errors, failed requests, WebSocket frames) is kept, and
written under the output directory with a screenshot when a wait times out and when the
browser closes, so a failing test leaves what it saw behind.

WebRTC between tabs on one machine (loopback_webrtc, the default): Chromium offers ICE
candidates on the loopback interface only with --allow-loopback-in-peer-connection *and* once
the page may use a camera or microphone (loopback is not a "default route" network, and other
networks are enumerated only for pages with media permission); the context is granted both
permissions (no device is opened: they only widen what ICE gathers). Granted media permission
also stops Chromium from hiding host addresses behind random mDNS names, which
--disable-features=WebRtcHideLocalIpsWithMdns turns off besides. Chromium then gathers on every
interface, so an init script drops every non-127.0.0.0/8 candidate from the descriptions and
candidates a page sends and receives: peers only ever try 127.0.0.1. HTTP and WebSocket reach
only localhost and 127.0.0.1: every other host name and IP address resolves to nothing
(--host-resolver-rules).
"""
import json
import os
import shutil
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("SEEDBUCKET_TEST_CHROMIUM", "/usr/bin/chromium")

FLAGS = [
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-pings",
]

# Keeps WebRTC on 127.0.0.1: removes every ICE candidate that is not an IPv4 loopback address
# from the SDP a page sends (localDescription) and receives (setRemoteDescription), and ignores
# such trickled candidates. Connectivity checks only go to remote candidates, so no packet is
# sent to any other address.
LOOPBACK_WEBRTC = r"""
(() => {
  const PC = window.RTCPeerConnection
  if (!PC) return
  // "candidate:<foundation> <component> <transport> <priority> <address> <port> typ ..."
  const loopback = (line) => /^127\./.test(line.split(' ')[4] || '')
  const strip = (sdp) => sdp.split('\r\n')
    .filter((l) => !l.startsWith('a=candidate:') || loopback(l)).join('\r\n')
  const proto = PC.prototype
  const local = Object.getOwnPropertyDescriptor(proto, 'localDescription')
  Object.defineProperty(proto, 'localDescription', {
    configurable: true,
    get () {
      const d = local.get.call(this)
      return d && new RTCSessionDescription({ type: d.type, sdp: strip(d.sdp) })
    }
  })
  const setRemote = proto.setRemoteDescription
  proto.setRemoteDescription = function (d, ...rest) {
    if (d && d.sdp) d = { type: d.type, sdp: strip(d.sdp) }
    return setRemote.call(this, d, ...rest)
  }
  const addCandidate = proto.addIceCandidate
  proto.addIceCandidate = function (c, ...rest) {
    if (c && c.candidate && !loopback(c.candidate)) return Promise.resolve()
    return addCandidate.call(this, c, ...rest)
  }
})()
"""


def require_chromium():
    """Fails (never skips) when Debian's Chromium is not installed."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        raise AssertionError(f"Chromium is required at {CHROMIUM} (apt-get install chromium; "
                             "scripts/test.sh installs it)")


class Tab:
    """One page, with what it logged."""

    def __init__(self, browser, page, name):
        self.browser, self.page, self.name = browser, page, name
        self.console = []  # "type: text"
        self.ws_frames = []  # {"t", "url", "dir": "sent"|"received", "data"}
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on("requestfailed",
                lambda r: self.console.append(f"requestfailed: {r.method} {r.url} {r.failure}"))
        page.on("websocket", self._websocket)

    def _websocket(self, ws):
        url = ws.url
        self.console.append(f"websocket opened: {url}")
        ws.on("framesent", lambda data: self._frame(url, "sent", data))
        ws.on("framereceived", lambda data: self._frame(url, "received", data))
        ws.on("close", lambda _ws: self.console.append(f"websocket closed: {url}"))
        ws.on("socketerror", lambda err: self.console.append(f"websocket error: {url} {err}"))

    def _frame(self, url, direction, data):
        if isinstance(data, bytes):
            data = "binary:" + data.hex()
        self.ws_frames.append({"t": round(time.time() - self.browser.started, 3), "url": url,
                               "dir": direction, "data": data})

    def evaluate(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    def wait_for(self, condition, *, timeout, what, poll=0.25):
        """Polls the JS expression `condition` until it is truthy and returns its value; after
        `timeout` seconds raises AssertionError naming `what` was waited for (a screenshot and
        the tab's logs are saved first)."""
        deadline = time.time() + timeout
        while True:
            value = self.page.evaluate(condition)
            if value:
                return value
            if time.time() > deadline:
                shot = self.save(f"timeout-{self.name}")
                raise AssertionError(f"tab {self.name}: waited {timeout}s for {what} "
                                     f"({condition}); screenshot and logs: {shot}")
            self.page.wait_for_timeout(poll * 1000)

    def screenshot(self, label):
        path = self.browser.out / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def save(self, label):
        """Writes a screenshot, the console log and the WebSocket frames; returns the screenshot."""
        (self.browser.out / f"{self.name}-console.txt").write_text("\n".join(self.console) + "\n")
        with open(self.browser.out / f"{self.name}-websocket.jsonl", "w") as f:
            for fr in self.ws_frames:
                f.write(json.dumps(fr) + "\n")
        try:
            return self.screenshot(label)
        except Exception as e:  # a crashed page has no screenshot; the logs still count
            return f"(no screenshot: {e}) {self.browser.out}"


class Browser:
    """One headless Chromium with one browser context; tabs share its origin storage."""

    def __init__(self, out: Path, loopback_webrtc=True, extra_args=()):
        require_chromium()
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.tabs = []
        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=[*FLAGS, *extra_args], timeout=60_000)
            self.context = self.browser.new_context(viewport={"width": 1000, "height": 800})
            if loopback_webrtc:
                self.context.grant_permissions(["camera", "microphone"])
                self.context.add_init_script(LOOPBACK_WEBRTC)
        except BaseException:
            self._pw.stop()
            raise

    def open(self, url, name=None, timeout=30):
        """A new tab at `url`, once its load event fired."""
        page = self.context.new_page()
        tab = Tab(self, page, name or f"tab{len(self.tabs) + 1}")
        self.tabs.append(tab)
        page.goto(url, wait_until="load", timeout=timeout * 1000)
        return tab

    def close(self):
        for tab in self.tabs:
            try:
                tab.save("last")
            except Exception:
                pass
        try:
            self.browser.close()
        finally:
            self._pw.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
