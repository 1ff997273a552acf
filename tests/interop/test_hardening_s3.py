"""Hardening of the S3 port (issue 14, items 1, 3 and the SigV4 part of 6), against the real
server over real sockets: anonymous bodies are refused before they are read, slow and idle
connections are closed on time, a stalled upload is cut and leaves no temporary file, one
address cannot hold more than its share of connections, and SigV4 forms S3 refuses are refused.

The server runs with short timeouts so the limits bite within seconds; each client that plays
the attacker binds its own loopback address (127.0.0.x), so the per-address cap of one test
does not touch another, while boto3 (127.0.0.1) keeps working throughout."""
import socket
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ACCESS_KEY, SECRET_KEY, Server, make_client

HEADER_TIMEOUT = 2
IDLE_TIMEOUT = 3
BODY_TIMEOUT = 2
PER_ADDRESS = 40
# Margin for a loaded 2-core machine on top of each timeout.
SLACK = 2.5


@pytest.fixture(scope="module")
def hserver():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(Path(tmp), extra=[
            "--http-header-timeout", str(HEADER_TIMEOUT),
            "--http-idle-timeout", str(IDLE_TIMEOUT),
            "--http-body-timeout", str(BODY_TIMEOUT),
            "--http-max-connections-per-address", str(PER_ADDRESS),
        ])
        yield s
        s.stop()


@pytest.fixture(scope="module")
def hs3(hserver):
    return make_client(hserver)


@pytest.fixture(scope="module")
def hbucket(hs3):
    name = "h-" + uuid.uuid4().hex[:12]
    hs3.create_bucket(Bucket=name)
    return name


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect(server, source_ip: str, timeout=10.0) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source_ip, 0))
    s.connect(("127.0.0.1", server.port))
    return s


def closed_within(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes `sock` (reads until EOF); fails past `limit`."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    raise AssertionError(f"connection still open after {limit} s")


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


class Traffic:
    """A boto3 client doing PUT/GET round trips in a thread; every one must succeed."""

    def __init__(self, s3, bucket):
        self.s3, self.bucket = s3, bucket
        self.done = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        i = 0
        while not self.stop.is_set():
            key = f"traffic/{i}"
            body = f"payload {i}".encode() * 100
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
                got = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                assert got == body
                self.done += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                self.errors.append(repr(e))
            i += 1
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


# --- 1. Anonymous bodies are refused before they are read -----------------------------------

BIG = 20 * 1024 * 1024


def attack_requests(bucket):
    """(request line, extra headers) of configuration calls an anonymous attacker sends."""
    return [
        (f"PUT /{bucket}?policy", ""),
        (f"PUT /{bucket}?acl", ""),
        (f"PUT /{bucket}?cors", ""),
        (f"PUT /{bucket}?tagging", ""),
        (f"POST /{bucket}?delete", ""),
        (f"PUT /new-{uuid.uuid4().hex[:8]}", ""),
        (f"POST /{bucket}/k?uploadId=abc", ""),
        (f"PUT /{bucket}/k?tagging", ""),
    ]


def send_big_body(server, source_ip, line, chunked, results, idx):
    """Offers a 20 MB body (declared or chunked): waits briefly for an early answer, then
    sends the body as fast as the server takes it. Records the answer's status, how long it
    took and how many body bytes were sent before it, or the failure."""
    start = time.monotonic()
    try:
        s = connect(server, source_ip)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
        s.sendall(f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n".encode())
        chunk = b"<x>" + b"A" * (64 * 1024 - 3)
        sent, answer = 0, b""
        s.settimeout(0.5)
        while not answer:
            try:
                answer = s.recv(4096)
                if not answer:
                    break
            except socket.timeout:
                pass
            if answer or sent >= BIG:
                break
            try:
                s.settimeout(0.05)
                piece = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") if chunked else chunk
                s.sendall(piece)
                sent += len(chunk)
            except socket.timeout:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
        s.settimeout(10)
        try:
            while not answer:
                part = s.recv(4096)
                if not part:
                    break
                answer += part
        except ConnectionResetError:
            pass
        results[idx] = (status_of(answer) if answer else None, time.monotonic() - start, sent)
        s.close()
    except Exception as e:  # noqa: BLE001
        results[idx] = (repr(e), time.monotonic() - start, 0)


def test_anonymous_config_bodies_are_refused_before_reading_and_memory_stays_flat(hserver, hbucket):
    """40 anonymous connections each offering a 20 MB configuration body (800 MB in all) get
    a 4xx within seconds and the server's RSS grows by less than 48 MiB."""
    lines = attack_requests(hbucket)
    n = 40
    results = [None] * n
    base = rss_kib(hserver.proc.pid)
    peak = base
    threads = []
    for i in range(n):
        line, _ = lines[i % len(lines)]
        source = f"127.0.0.{10 + i % 4}"
        t = threading.Thread(target=send_big_body,
                             args=(hserver, source, line, i % 2 == 1, results, i))
        threads.append(t)
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kib(hserver.proc.pid))
        time.sleep(0.02)
    for t in threads:
        t.join()
    growth_mib = (peak - base) / 1024
    print(f"RSS before {base} KiB, peak {peak} KiB (+{growth_mib:.1f} MiB); "
          f"slowest answer {max(r[1] for r in results):.2f} s; "
          f"most body bytes sent before the answer {max(r[2] for r in results)}")
    for (line, _), r in zip(lines * n, results):
        status, took, _sent = r
        assert isinstance(status, int) and 400 <= status < 500, (line, r)
        assert took < 5, (line, r)
    assert growth_mib < 48, growth_mib


def test_owner_bodies_over_s3_caps_get_s3_errors(hs3, hbucket):
    big_policy = '{"Version":"2012-10-17","Statement":[' + ",".join(
        ['{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/x"}'
         % hbucket] * 400) + "]}"
    assert len(big_policy) > 20 * 1024
    with pytest.raises(Exception) as e:
        hs3.put_bucket_policy(Bucket=hbucket, Policy=big_policy)
    err = e.value.response["Error"]
    assert err["Code"] == "MaxMessageLengthExceeded", err
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # A small policy still works.
    hs3.put_bucket_policy(Bucket=hbucket, Policy=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        '"Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/public/*"}]}' % hbucket))
    hs3.delete_bucket_policy(Bucket=hbucket)
    # DeleteObjects with more than 1000 keys: MalformedXML, as S3.
    with pytest.raises(Exception) as e:
        hs3.delete_objects(Bucket=hbucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert e.value.response["Error"]["Code"] == "MalformedXML"


def test_declared_oversize_object_is_entity_too_large_before_reading(hserver, hbucket):
    url = make_client(hserver).generate_presigned_url(
        "put_object", Params={"Bucket": hbucket, "Key": "huge"}, ExpiresIn=300)
    u = urllib.parse.urlsplit(url)
    s = connect(hserver, "127.0.0.20")
    s.sendall(f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\n"
              f"Content-Length: {6 * 1024 ** 3}\r\n\r\n".encode())
    answer = s.recv(65536)
    assert status_of(answer) == 400
    assert b"<Code>EntityTooLarge</Code>" in answer
    s.close()


def test_form_uploads_are_refused_before_reading(hserver, hbucket):
    s = connect(hserver, "127.0.0.21")
    s.sendall(f"POST /{hbucket} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              f"Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: {BIG}\r\n\r\n".encode())
    answer = s.recv(65536)
    assert status_of(answer) == 501
    assert b"<Code>NotImplemented</Code>" in answer
    s.close()


# --- 2. Slow and idle connections are closed on time -----------------------------------------

def test_slowloris_and_idle_connections_are_closed_while_boto3_keeps_working(hserver, hs3, hbucket):
    slow = [connect(hserver, "127.0.0.30") for _ in range(30)]
    silent = [connect(hserver, "127.0.0.31") for _ in range(30)]
    silent_opened = time.monotonic()
    # A kept-alive connection after one complete request.
    kept = connect(hserver, "127.0.0.32")
    kept.sendall(b"GET /_seedbucket/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(kept.recv(4096)) == 200
    kept_answered = time.monotonic()
    opened = time.monotonic()
    closed_at = {}
    stop = threading.Event()

    def drip():
        """One header byte every 0.5 s on each slow connection, as slowloris does."""
        head = b"GET /_seedbucket/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 1000
        i = 0
        while not stop.is_set() and i < len(head):
            for s in slow:
                if s in closed_at:
                    continue
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    closed_at[s] = time.monotonic() - opened
            i += 1
            time.sleep(0.5)

    def watch(sock, since, out):
        """Records when the server closes `sock`, in seconds since `since` (None: never)."""
        try:
            closed_within(sock, 15)
            out.append(time.monotonic() - since)
        except AssertionError:
            out.append(None)

    slow_times, silent_times, kept_times = [], [], []
    watchers = [threading.Thread(target=watch, args=(s, opened, slow_times)) for s in slow]
    watchers += [threading.Thread(target=watch, args=(s, silent_opened, silent_times)) for s in silent]
    watchers.append(threading.Thread(target=watch, args=(kept, kept_answered, kept_times)))
    with Traffic(hs3, hbucket) as traffic:
        t = threading.Thread(target=drip)
        t.start()
        for w in watchers:
            w.start()
        for w in watchers:
            w.join()
        stop.set()
        t.join()
    assert None not in slow_times + silent_times + kept_times
    kept_time = kept_times[0]
    print(f"slowloris closed after {max(slow_times):.2f} s (header timeout {HEADER_TIMEOUT} s), "
          f"silent after {max(silent_times):.2f} s, kept-alive after {kept_time:.2f} s "
          f"(idle timeout {IDLE_TIMEOUT} s); boto3 round trips meanwhile: {traffic.done}")
    assert max(slow_times) < HEADER_TIMEOUT + SLACK
    assert IDLE_TIMEOUT - 0.5 <= min(silent_times) <= max(silent_times) < IDLE_TIMEOUT + SLACK
    assert IDLE_TIMEOUT - 0.5 <= kept_time < IDLE_TIMEOUT + SLACK
    assert traffic.errors == []
    assert traffic.done >= 5


def test_a_stalled_put_is_cut_and_leaves_no_temporary_file(hserver, hs3, hbucket):
    url = hs3.generate_presigned_url("put_object", Params={"Bucket": hbucket, "Key": "stalled"},
                                     ExpiresIn=300)
    u = urllib.parse.urlsplit(url)
    tmp_dir = hserver.data_dir / "tmp"
    s = connect(hserver, "127.0.0.40")
    s.sendall(f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\n"
              f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode())
    s.sendall(b"x" * (2 * 1024 * 1024))
    # The body is being written to a temporary file...
    deadline = time.monotonic() + 5
    while not any(tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(tmp_dir.iterdir()), "the upload never reached a temporary file"
    stalled_at = time.monotonic()
    # ...then the client stalls: the server answers RequestTimeout and closes.
    s.settimeout(BODY_TIMEOUT + SLACK + 2)
    answer = b""
    try:
        while True:
            part = s.recv(65536)
            if not part:
                break
            answer += part
    except ConnectionResetError:
        pass
    took = time.monotonic() - stalled_at
    print(f"stalled PUT cut after {took:.2f} s (body timeout {BODY_TIMEOUT} s)")
    assert status_of(answer) == 400, answer[:300]
    assert b"<Code>RequestTimeout</Code>" in answer
    assert took < BODY_TIMEOUT + SLACK
    deadline = time.monotonic() + 3
    while any(tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_dir.iterdir()) == []
    with pytest.raises(Exception) as e:
        hs3.head_object(Bucket=hbucket, Key="stalled")
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_per_address_cap_bites_one_address_only(hserver, hs3, hbucket):
    held = [connect(hserver, "127.0.0.50") for _ in range(PER_ADDRESS)]
    # Each held connection is admitted (answers a request)...
    for s in held[:3]:
        s.sendall(b"GET /_seedbucket/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status_of(s.recv(4096)) == 200
    # ...one more from the same address gets 503 SlowDown and is closed...
    extra = connect(hserver, "127.0.0.50")
    extra.settimeout(5)
    answer = extra.recv(4096)
    assert status_of(answer) == 503 and b"SlowDown" in answer
    assert extra.recv(4096) == b""
    # ...while other addresses, and boto3, are served.
    hs3.put_object(Bucket=hbucket, Key="cap", Body=b"ok")
    assert hs3.get_object(Bucket=hbucket, Key="cap")["Body"].read() == b"ok"
    other = connect(hserver, "127.0.0.51")
    other.sendall(b"GET /_seedbucket/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(other.recv(4096)) == 200
    for s in held:
        s.close()
    time.sleep(0.3)
    again = connect(hserver, "127.0.0.50")
    again.sendall(b"GET /_seedbucket/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(again.recv(4096)) == 200


# --- 3. SigV4 forms S3 refuses ----------------------------------------------------------------

def error_code(r: requests.Response) -> str:
    return r.text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def v4_client(hserver):
    """boto3 presigns with SigV4 only when told to."""
    return make_client(hserver, signature_version="s3v4")


def test_presigned_expiry_over_a_week_is_refused(hserver, hs3, hbucket):
    hs3.put_object(Bucket=hbucket, Key="presigned", Body=b"data")
    hs3 = v4_client(hserver)
    week = hs3.generate_presigned_url("get_object", Params={"Bucket": hbucket, "Key": "presigned"},
                                      ExpiresIn=604800)
    assert requests.get(week, timeout=10).content == b"data"
    for expires in (604801, 10 * 365 * 86400):
        url = hs3.generate_presigned_url("get_object", Params={"Bucket": hbucket, "Key": "presigned"},
                                         ExpiresIn=expires)
        r = requests.get(url, timeout=10)
        assert r.status_code == 400, r.text
        assert error_code(r) == "AuthorizationQueryParametersError"
        assert "604800" in r.text


def test_presigned_algorithm_other_than_hmac_sha256_is_refused(hserver, hbucket):
    url = v4_client(hserver).generate_presigned_url("get_object", Params={"Bucket": hbucket, "Key": "presigned"},
                                     ExpiresIn=60)
    bad = url.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA512")
    assert bad != url
    r = requests.get(bad, timeout=10)
    assert r.status_code == 400
    assert error_code(r) == "AuthorizationQueryParametersError"


def signed_request(hserver, method, path, headers):
    req = AWSRequest(method=method, url=f"{hserver.url}{path}", headers=headers, data=b"")
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def test_header_algorithm_other_than_hmac_sha256_is_refused(hserver, hbucket):
    headers = signed_request(hserver, "GET", f"/{hbucket}", {})
    ok = requests.get(f"{hserver.url}/{hbucket}", headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    headers["Authorization"] = headers["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1)
    r = requests.get(f"{hserver.url}/{hbucket}", headers=headers, timeout=10)
    assert r.status_code == 400
    assert error_code(r) == "InvalidRequest"
    headers["Authorization"] = "Bearer abc"
    r = requests.get(f"{hserver.url}/{hbucket}", headers=headers, timeout=10)
    assert r.status_code == 400
    assert error_code(r) == "InvalidArgument"


def test_signed_headers_absent_from_the_request_are_refused(hserver, hbucket):
    headers = signed_request(hserver, "GET", f"/{hbucket}", {"x-amz-meta-signed": "yes"})
    assert "x-amz-meta-signed" in headers["Authorization"]
    ok = requests.get(f"{hserver.url}/{hbucket}", headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    del headers["x-amz-meta-signed"]
    r = requests.get(f"{hserver.url}/{hbucket}", headers=headers, timeout=10)
    assert r.status_code == 403
    assert error_code(r) == "SignatureDoesNotMatch"
    assert "<HeadersNotPresent>x-amz-meta-signed</HeadersNotPresent>" in r.text
