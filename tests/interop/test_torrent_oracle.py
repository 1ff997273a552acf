"""Our torrents against libtorrent's: same bytes, name and piece length give the same
info-hashes, in v1, hybrid and v2 forms. Uses `seedbucket torrent create`, the same builder
GetObjectTorrent uses."""
import os
import subprocess

import libtorrent as lt
import pytest

from conftest import _binary

SIZES = [1, 16383, 16384, 16385, 32767, 32768, 32769, 100_000, 3 * 1024 * 1024 + 5]
FORMATS = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}


def libtorrent_hashes(path, piece_length, flags):
    fs = lt.file_storage()
    fs.add_file(os.path.basename(path), os.path.getsize(path))
    t = lt.create_torrent(fs, piece_length, flags=flags)
    lt.set_piece_hashes(t, os.path.dirname(path))
    ti = lt.torrent_info(lt.bencode(t.generate()))
    return ti.info_hashes()


def ours(path, piece_length, fmt, out):
    subprocess.run([_binary(), "torrent", "create", path, "--piece-length", str(piece_length),
                    "--format", fmt, "-o", out, "--quiet"], check=True, capture_output=True)
    with open(out, "rb") as f:
        data = f.read()
    return data, lt.torrent_info(lt.bdecode(data)).info_hashes()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("piece_length", [16384, 32768])
def test_info_hashes_equal_libtorrent(tmp_path, size, fmt, piece_length):
    path = str(tmp_path / "object.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    expected = libtorrent_hashes(path, piece_length, FORMATS[fmt])
    data, got = ours(path, piece_length, fmt, str(tmp_path / "o.torrent"))
    if fmt != "v2":
        assert str(got.v1) == str(expected.v1)
    if fmt != "v1":
        assert str(got.v2) == str(expected.v2)
    assert got.has_v1() == (fmt != "v2") and got.has_v2() == (fmt != "v1")
    # Deterministic: the same input makes the same bytes.
    again, _ = ours(path, piece_length, fmt, str(tmp_path / "o2.torrent"))
    assert again == data


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_large_file_hashed_in_units_equals_libtorrent(tmp_path, fmt):
    """`torrent create` splits a file into 32 MiB units hashed on every core and joins them;
    a 70 MiB file with an odd tail spans three units."""
    path = str(tmp_path / "large.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(70 * 1024 * 1024 + 12345))
    expected = libtorrent_hashes(path, 65536, FORMATS[fmt])
    _, got = ours(path, 65536, fmt, str(tmp_path / "o.torrent"))
    if fmt != "v2":
        assert str(got.v1) == str(expected.v1)
    if fmt != "v1":
        assert str(got.v2) == str(expected.v2)
