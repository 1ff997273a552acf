"""docs/grafana-dashboard.json against a real server: the dashboard is importable (valid JSON
with the structure Grafana needs: panels with targets, unique ids, a grid that fits), and every
metric name in every PromQL expression (panels and template variables) is one the server really
exposes on the admin listener's /metrics after traffic that exercises each family: S3 PUT, GET
and a 404, ?torrent, an HTTP and a UDP announce, an HTTP scrape, a webseed range GET, a
WebSocket (browser) announce, and a download over the peer wire. The exact label values the
dashboard selects on (`via="peer"`, `operation="GetObject"`, ...) must be in the scrape too;
every `seedbucket_*` family the server exposes must be on some panel, and docs/metrics.md must
name every family (process figures included).

No tool is optional here: a missing package (prometheus_client, websockets, libtorrent, boto3)
or binary fails the test instead of skipping it."""

import json
import os
import re
import struct
import urllib.parse
import urllib.request

import libtorrent as lt
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from conftest import ROOT, Server, make_client
from test_get_object_torrent import torrent_of
from test_seeder import lt_download, sha, without_webseed
from test_tracker import announce, udp_announce, udp_connect
from test_websocket_tracker import announce as ws_announce
from test_websocket_tracker import recv as ws_recv
from test_websocket_tracker import ws_url

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

# Labels Prometheus adds at scrape time (they are not in the exposition), and the histogram's.
SCRAPE_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Words of PromQL that look like names but are not metrics.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                "and", "or", "unless", "inf", "nan"}
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
STRING = r'"(?:[^"\\]|\\.)*"'
MATCHER = re.compile(rf"({NAME})\s*(=~|!=|!~|=)\s*({STRING})")
SELECTOR = re.compile(rf"({NAME})\s*\{{([^}}]*)\}}")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(" + NAME + r")\s*\)\s*$", re.S)


# --- the dashboard ------------------------------------------------------------------------


def load_dashboard():
    assert DASHBOARD.exists(), f"{DASHBOARD} is missing"
    return json.loads(DASHBOARD.read_text())


def all_panels(dash):
    """Every panel, those inside rows included."""
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def expressions(dash):
    """(where, PromQL) for every panel target and every Prometheus template variable. A
    variable's `label_values(selector, label)` gives its selector."""
    for p in all_panels(dash):
        for t in p.get("targets", []):
            yield f"panel {p['id']} ({p['title']}) {t['refId']}", t["expr"]
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = LABEL_VALUES.match(q)
        yield f"variable ${v['name']}", m.group(1) if m else q


def without_strings_and_variables(expr):
    expr = re.sub(STRING, '""', expr)
    return re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)


def metric_names(expr):
    """The metric names an expression reads: what is left once strings, label matchers, range
    selectors and grouping clauses are removed, minus function names, keywords and numbers."""
    e = without_strings_and_variables(expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = GROUPING.sub(" ", e)
    names = set()
    for m in re.finditer(rf"(?<![\w.]){NAME}", e):
        after = e[m.end():].lstrip()
        if after.startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(m.group(0))
    return names


def selectors(expr):
    """(metric, [(label, op, value)]) for every `metric{...}` in the expression."""
    out = []
    for m in SELECTOR.finditer(expr):
        matchers = [(lab, op, json.loads(val)) for lab, op, val in MATCHER.findall(m.group(2))]
        out.append((m.group(1), matchers))
    return out


def grouping_labels(expr):
    e = without_strings_and_variables(expr)
    return {lab.strip() for _, labels in GROUPING.findall(e) for lab in labels.split(",") if lab.strip()}


def test_metric_name_extraction():
    """The extractor itself, on the kinds of expressions the dashboard uses."""
    assert metric_names('histogram_quantile(0.99, sum by (le, operation) (rate(x_bucket{job=~"$job",a="b{c}"}[$__rate_interval])))') == {"x_bucket"}
    assert metric_names("time() - max(process_start_time_seconds{job=~\"$job\"})") == {"process_start_time_seconds"}
    assert metric_names("sum(rate(a_total[5m])) / (sum(rate(b_total[5m])) + 1e3) or vector(0)") == {"a_total", "b_total"}
    assert metric_names("topk(10, sum by (torrent) (rate(t_total[1m]))) offset 5m") == {"t_total"}
    assert selectors('rate(a{via="peer",job=~"$job"}[1m])') == [("a", [("via", "=", "peer"), ("job", "=~", "$job")])]
    assert grouping_labels("sum by (le, operation) (x) / on(instance) y") == {"le", "operation", "instance"}


def test_dashboard_structure():
    dash = load_dashboard()
    for key in ("title", "uid", "panels", "templating", "schemaVersion", "time"):
        assert key in dash, f"the dashboard has no {key!r}"
    assert dash.get("id") is None, "an exported dashboard must not carry its database id"
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {sorted(ids)}"
    cells = set()
    for p in all_panels(dash):
        where = f"panel {p['id']} ({p.get('title')})"
        g = p["gridPos"]
        assert {"h", "w", "x", "y"} <= g.keys(), where
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{where}: {g}"
        if p in dash["panels"]:  # (the panels of a collapsed row lie under it)
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{where} overlaps another panel"
            cells |= mine
        if p["type"] == "row":
            continue
        assert p["type"] in ("timeseries", "stat"), f"{where}: unexpected type {p['type']}"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert p.get("targets"), f"{where} has no targets"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: refIds repeat"
        for t in p["targets"]:
            assert t.get("expr", "").strip(), f"{where} {t['refId']}: empty expr"
            assert t["datasource"] == p["datasource"], where
            assert t["expr"].count("(") == t["expr"].count(")"), f"{where}: unbalanced {t['expr']}"
            assert metric_names(t["expr"]), f"{where}: no metric in {t['expr']}"
        # Every selector is scoped to the chosen job and instance.
        for t in p["targets"]:
            for metric, matchers in selectors(t["expr"]):
                labels = {lab for lab, _, _ in matchers}
                assert {"job", "instance"} <= labels, f"{where}: {metric} is not filtered by $job/$instance"
        for t in p["targets"]:
            bare = re.sub(rf"{NAME}\s*\{{[^}}]*\}}", "", without_strings_and_variables(t["expr"]))
            assert not any(n.startswith(("seedbucket_", "process_")) for n in metric_names(bare)), \
                f"{where}: a selector without label matchers in {t['expr']}"


# --- the server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scrape(tmp_path_factory):
    """/metrics of a server after traffic through every family, parsed by prometheus_client:
    {family name: (type, [samples])} (a counter's family is named without `_total`)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    s = Server(tmp, admin=True)
    try:
        s3 = make_client(s)
        s3.create_bucket(Bucket="dashboard")
        data = os.urandom(300_000)
        s3.put_object(Bucket="dashboard", Key="obj.bin", Body=data, ACL="public-read")
        assert s3.get_object(Bucket="dashboard", Key="obj.bin")["Body"].read() == data
        with pytest.raises(ClientError):
            s3.head_object(Bucket="dashboard", Key="missing")
        meta = lt.bdecode(torrent_of(s3, "dashboard", "obj.bin")["Body"].read())
        ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
        ann = meta[b"announce"].decode()
        announce(ann, ih, b"-DB0100-httppeer0001", 7000, 10, "started")
        sep = "&" if "?" in ann else "?"
        scrape_url = ann.replace("/announce", "/scrape") + sep + urllib.parse.urlencode({"info_hash": ih})
        with urllib.request.urlopen(scrape_url) as r:
            assert b"files" in r.read()
        reply = udp_announce(s.port, udp_connect(s.port), ih, b"-DB0100-udppeer00001", 7001, 10)
        assert struct.unpack(">I", reply[:4])[0] == 1, reply
        webseed = meta[b"url-list"]
        webseed = (webseed[0] if isinstance(webseed, list) else webseed).decode()
        with urllib.request.urlopen(urllib.request.Request(webseed, headers={"Range": "bytes=0-999"})) as r:
            assert r.status == 206 and r.read() == data[:1000]
        out = lt_download(tmp, without_webseed(meta), name="peer-wire")
        assert sha((out / "obj.bin").read_bytes()) == sha(data)
        with connect(ws_url(s)) as ws:
            ws_announce(ws, ih, os.urandom(20), uploaded=100_000, downloaded=300_000, left=0)
            assert "failure reason" not in ws_recv(ws)
            # Scraped while the browser is in its swarm: the browser gauges are live.
            with urllib.request.urlopen(f"http://127.0.0.1:{s.admin_port}/metrics", timeout=5) as r:
                text = r.read().decode()
    finally:
        s.stop()
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def exposed(scrape):
    """Sample name -> the samples' label sets; and histogram base names."""
    samples, histograms = {}, set()
    for name, (kind, family) in scrape.items():
        if kind in ("histogram", "summary"):
            histograms.add(name)
        for s in family:
            samples.setdefault(s.name, []).append(s.labels)
    return samples, histograms


def value(scrape, sample, **labels):
    return sum(s.value for _, (_, family) in scrape.items() for s in family
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def test_the_traffic_reached_every_family(scrape):
    """The scrape the dashboard is checked against is not just zeros registered at start."""
    moved = [
        ("seedbucket_s3_requests_total", {"operation": "GetObject", "status": "200"}),
        ("seedbucket_s3_requests_total", {"operation": "HeadObject", "status": "404"}),
        ("seedbucket_s3_request_duration_seconds_count", {"operation": "PutObject"}),
        ("seedbucket_s3_bytes_total", {"direction": "out", "operation": "GetObject"}),
        ("seedbucket_torrents_issued_total", {"format": "v1"}),
        ("seedbucket_piece_hashed_bytes_total", {}),
        ("seedbucket_uploaded_bytes_total", {"via": "webseed"}),
        ("seedbucket_uploaded_bytes_total", {"via": "peer"}),
        ("seedbucket_torrent_uploaded_bytes_total", {"torrent": "dashboard/obj.bin", "via": "peer"}),
        ("seedbucket_tracker_announces_total", {"transport": "http"}),
        ("seedbucket_tracker_announces_total", {"transport": "udp"}),
        ("seedbucket_tracker_announces_total", {"transport": "websocket"}),
        ("seedbucket_tracker_scrapes_total", {"transport": "http"}),
        ("seedbucket_tracker_peers", {}),
        ("seedbucket_tracker_torrents", {}),
        ("seedbucket_browser_swarms", {}),
        ("seedbucket_browser_peers", {}),
        ("seedbucket_browser_sockets", {}),
        ("seedbucket_browser_reported_uploaded_bytes", {}),
        ("seedbucket_browser_reported_downloaded_bytes", {}),
        ("seedbucket_seeder_connections_accepted_total", {}),
        ("seedbucket_seeder_blocks_sent_total", {}),
        ("process_resident_memory_bytes", {}),
        ("process_open_fds", {}),
    ]
    still = [(n, lab) for n, lab in moved if not value(scrape, n, **lab) > 0]
    assert not still, f"the traffic did not move: {still}"
    assert value(scrape, "seedbucket_uploaded_bytes_total", via="peer") >= 300_000


def test_every_metric_the_dashboard_uses_is_exposed(scrape):
    samples, histograms = exposed(scrape)
    missing, wrong_labels = [], []
    for where, expr in expressions(load_dashboard()):
        used = metric_names(expr)
        for name in sorted(used):
            if name not in samples:
                missing.append(f"{where}: {name}")
            elif name.endswith(HISTOGRAM_SUFFIXES) and name.rsplit("_", 1)[0] not in histograms:
                missing.append(f"{where}: {name} (a histogram suffix on a metric that is not one)")
        for metric, matchers in selectors(expr):
            for label, op, val in matchers:
                if label in SCRAPE_LABELS or metric not in samples:
                    continue
                have = {ls.get(label) for ls in samples[metric]} - {None}
                if not have:
                    wrong_labels.append(f"{where}: {metric} has no label {label!r}")
                elif op == "=" and "$" not in val and val not in have:
                    wrong_labels.append(f"{where}: {metric}{{{label}={val!r}}} is not exposed (values: {sorted(have)})")
        labels_here = {k for n in used if n in samples for ls in samples[n] for k in ls}
        for label in grouping_labels(expr) - SCRAPE_LABELS:
            if label not in labels_here:
                wrong_labels.append(f"{where}: grouping by {label!r}, a label none of {sorted(used)} has")
    for v in load_dashboard()["templating"]["list"]:
        m = LABEL_VALUES.match(v["query"]["query"] if isinstance(v["query"], dict) else v["query"]) \
            if v["type"] == "query" else None
        if m and m.group(2) not in SCRAPE_LABELS:
            have = {k for n in metric_names(m.group(1)) for ls in samples.get(n, []) for k in ls}
            if m.group(2) not in have:
                wrong_labels.append(f"variable ${v['name']}: no label {m.group(2)!r} on {m.group(1)}")
    assert not missing + wrong_labels, (
        "the dashboard reads what /metrics does not expose:\n" + "\n".join(missing + wrong_labels))


def test_the_dashboard_charts_every_seedbucket_family(scrape):
    """A family added to the server shows up here until the dashboard (and the docs) chart it."""
    used = set()
    for _, expr in expressions(load_dashboard()):
        used |= metric_names(expr)
    samples, histograms = exposed(scrape)

    def family(name):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        return base if base in histograms else name

    charted = {family(n) for n in used}
    uncharted = sorted({family(n) for n in samples if n.startswith("seedbucket_")} - charted)
    assert not uncharted, f"exposed but on no panel: {uncharted}"


def test_docs_name_every_exposed_family(scrape):
    doc = METRICS_DOC.read_text()
    samples, histograms = exposed(scrape)
    names = {n for n in samples if not n.endswith(HISTOGRAM_SUFFIXES) or n.rsplit("_", 1)[0] not in histograms}
    names |= histograms
    undocumented = sorted(n for n in names if f"`{n}`" not in doc)
    assert not undocumented, f"docs/metrics.md does not name: {undocumented}"
