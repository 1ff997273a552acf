"""`seedbucket key`: importing a known pair, finding the data dir as `serve` does (flag,
SEEDBUCKET_DATA_DIR, the config file's data_dir) and refusing a directory that holds no server,
the root key kept, and a key that still owns buckets deleted only with --transfer-to. Each test
runs its own server, embedded and in gateway mode (in front of an embedded seedbucket)."""

import os
import subprocess
import time
import uuid

import botocore.exceptions
import pytest

from conftest import Server, _binary, make_client, start_backend


def cli(server, *args, check=True, env=None, data_dir=True):
    where = ["--data-dir", str(server.data_dir)] if data_dir and not server.backend_args else []
    p = subprocess.run([_binary(), "key", *args, *where, *server.backend_args],
                       env=env or server.env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"key {' '.join(args)} failed:\n{p.stderr}")
    return p


def refused(p, *words):
    assert p.returncode != 0, p.stdout
    for w in words:
        assert w in p.stderr, p.stderr
    assert "corrupt" not in p.stderr.lower(), p.stderr


@pytest.fixture(params=["embedded", "gateway"])
def fresh(request, tmp_path):
    backend = start_backend("seedbucket", tmp_path) if request.param == "gateway" else None
    s = Server(tmp_path, backend=backend)
    yield s
    s.stop()
    if backend is not None:
        backend.stop()


def settle(server):
    if server.backend_args:
        time.sleep(2.5)  # gateway nodes re-read the keys every 2 s


def test_a_known_pair_is_imported_and_checked(fresh):
    ak, sk = "IMPORTED-" + uuid.uuid4().hex[:8].upper(), "imported-secret-" + uuid.uuid4().hex
    out = cli(fresh, "create", "imported", "--access-key", ak, "--secret-key", sk).stdout
    assert ak in out and sk in out
    settle(fresh)
    assert make_client(fresh, access_key=ak, secret_key=sk).list_buckets()["Buckets"] == []
    refused(cli(fresh, "create", "short", "--access-key", "SHORTSECRET0001", "--secret-key", "x" * 15,
                check=False), "at least 16 characters")
    refused(cli(fresh, "create", "slash", "--access-key", "A/B", "--secret-key", "s" * 20, check=False),
            "access key id")
    refused(cli(fresh, "create", "again", "--access-key", ak, "--secret-key", "s" * 20, check=False),
            "already in use")
    refused(cli(fresh, "create", "imported", check=False), "already exists")
    refused(cli(fresh, "create", "half", "--access-key", "ONLYHALF0001", check=False), "--secret-key")


def test_the_root_key_cannot_be_deleted(fresh):
    refused(cli(fresh, "delete", "root", check=False), "root key cannot be deleted")
    refused(cli(fresh, "delete", "nobody", check=False), "no key")
    assert "root" in cli(fresh, "list").stdout


def test_a_key_that_owns_buckets_is_deleted_only_with_transfer_to(fresh, tmp_path):
    ak, sk, _ = fresh.create_key("owner")
    heir_ak, heir_sk, _ = fresh.create_key("heir")
    owner = make_client(fresh, access_key=ak, secret_key=sk)
    name = "owned-" + uuid.uuid4().hex[:8]
    owner.create_bucket(Bucket=name)
    owner.put_object(Bucket=name, Key="k", Body=b"kept")
    refused(cli(fresh, "delete", "owner", check=False), "still owns", name, "--transfer-to")
    refused(cli(fresh, "delete", "owner", "--transfer-to", "nobody", check=False), "no other key")
    if not fresh.backend_args:
        # Embedded: the running server holds the database; handing over needs it stopped.
        refused(cli(fresh, "delete", "owner", "--transfer-to", "heir", check=False), "stop it")
        fresh.stop()
    out = cli(fresh, "delete", "owner", "--transfer-to", "heir").stdout
    assert name in out and "heir" in out
    if not fresh.backend_args:
        fresh = Server(tmp_path, port=fresh.port)
    else:
        settle(fresh)
    heir = make_client(fresh, access_key=heir_ak, secret_key=heir_sk)
    # Gateway nodes keep bucket records up to 5 s (at once with --redis, docs/deployment.md).
    deadline = time.time() + 8
    while name not in [b["Name"] for b in heir.list_buckets()["Buckets"]] and time.time() < deadline:
        time.sleep(0.5)
    assert name in [b["Name"] for b in heir.list_buckets()["Buckets"]]
    assert heir.get_object(Bucket=name, Key="k")["Body"].read() == b"kept"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        owner.list_buckets()
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    if not fresh.backend_args:
        fresh.stop()


def test_key_commands_find_the_data_dir_as_serve_does(tmp_path):
    s = Server(tmp_path)
    try:
        config = tmp_path / "seedbucket.toml"
        config.write_text(f'data_dir = "{s.data_dir}"\n')
        by_config = subprocess.run([_binary(), "key", "list", "--config", str(config)],
                                   env=s.env, capture_output=True, text=True)
        assert by_config.returncode == 0 and "root" in by_config.stdout, by_config.stderr
        env = dict(s.env, SEEDBUCKET_DATA_DIR=str(s.data_dir))
        by_env = subprocess.run([_binary(), "key", "list"], env=env, capture_output=True, text=True)
        assert by_env.returncode == 0 and "root" in by_env.stdout, by_env.stderr
        # A directory with no server's data is refused, and nothing is created there.
        empty = tmp_path / "not-a-data-dir"
        p = subprocess.run([_binary(), "key", "create", "x", "--data-dir", str(empty)],
                           env=s.env, capture_output=True, text=True)
        refused(p, "no seedbucket data")
        assert not empty.exists()
    finally:
        s.stop()


def test_generated_root_credentials_are_shown_once_after_the_listeners_bind(tmp_path):
    """A first start makes the root key and prints it on stdout (never into the log stream,
    JSON here) once it is listening; a first start that fails (its port is taken) shows nothing
    and keeps nothing, so the next start makes one and shows it."""
    import socket
    from conftest import _free_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDBUCKET_ROOT_")}
    data = tmp_path / "data"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    p = subprocess.run([_binary(), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{taken}",
                        "--peer-listen", "off", "--log-format", "json"],
                       env=env, capture_output=True, text=True, timeout=60)
    busy.close()
    assert p.returncode != 0
    assert "secret key" not in p.stdout + p.stderr
    port = _free_port()
    proc = subprocess.Popen([_binary(), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                             "--peer-listen", "off", "--log-format", "json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        shown = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert shown[0].startswith("Generated root credentials"), shown
    secret = shown[2].split(":", 1)[1].strip()
    assert len(secret) == 40
    assert secret not in err, "the secret went into the log stream"
    restarted = subprocess.run([_binary(), "key", "list", "--data-dir", str(data)], env=env,
                               capture_output=True, text=True)
    assert restarted.stdout.count("root") == 1


def test_an_admin_key_lists_and_manages_every_bucket(fresh):
    def made(name):
        out = cli(fresh, "create", name, *(["--admin"] if name == "admin" else [])).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return make_client(fresh, access_key=fields["access key"].strip(),
                           secret_key=fields["secret key"].strip()), out
    owner, _ = made("owner")
    admin, out = made("admin")
    other, _ = made("other")
    assert "role:        admin" in out
    listed = cli(fresh, "list").stdout.splitlines()
    roles = {line.split()[0]: line.split()[-1] for line in listed[1:]}
    assert roles["admin"] == "admin" and roles["root"] == "admin" and roles["owner"] == "user"
    settle(fresh)
    bucket = "own-" + uuid.uuid4().hex[:10]
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="private", Body=b"owner's bytes")
    # A plain key sees nothing of it; the admin sees and manages it as the owner would.
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    with pytest.raises(botocore.exceptions.ClientError):
        other.get_object(Bucket=bucket, Key="private")
    assert bucket in [b["Name"] for b in admin.list_buckets()["Buckets"]]
    assert admin.get_object(Bucket=bucket, Key="private")["Body"].read() == b"owner's bytes"
    admin.delete_object(Bucket=bucket, Key="private")
    admin.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in owner.list_buckets()["Buckets"]]
