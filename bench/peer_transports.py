"""Peer transports for bench/seeder.sh: libtorrent (2.x) against seedbucket's seeder alone.

  python bench/peer_transports.py ROUNDS NOW.torrent BEFORE.torrent DATA_DIR

- Time to first block at libtorrent's defaults (uTP and encryption on), re-dialling the seeder
  every second as applications do: from the first connection attempt to the first block, for
  NOW (uTP and encrypted handshakes served) and BEFORE (a seedbucket with --seed-utp off
  --seed-encryption off: plain TCP only, what the seeder spoke before). Median of ROUNDS.
- Throughput of the whole object from NOW over plain TCP, over uTP alone, and over TCP with
  RC4 forced; best of ROUNDS (libtorrent checks every piece's hash). The same three with a
  libtorrent session seeding the file from DATA_DIR instead, as the reference for what each
  transport costs on this machine. Prints one JSON line.
"""
import json
import statistics
import sys
import tempfile
import time

import libtorrent as lt

BASE = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.connect_notification
        | lt.alert.category_t.block_progress_notification
        | lt.alert.category_t.piece_progress_notification}
PLAIN_TCP = {"enable_outgoing_utp": False, "enable_incoming_utp": False,
             "out_enc_policy": int(lt.enc_policy.disabled), "in_enc_policy": int(lt.enc_policy.disabled)}
UTP = {"enable_outgoing_tcp": False, "enable_incoming_tcp": False,
       "out_enc_policy": int(lt.enc_policy.disabled), "in_enc_policy": int(lt.enc_policy.disabled)}
RC4_TCP = {"enable_outgoing_utp": False, "enable_incoming_utp": False,
           "out_enc_policy": int(lt.enc_policy.forced), "in_enc_policy": int(lt.enc_policy.forced),
           "allowed_enc_level": int(lt.enc_level.rc4)}


def seeder_endpoint(meta):
    """The seeder's address from the torrent's tracker (the first peer it lists)."""
    import urllib.parse
    import urllib.request
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    q = urllib.parse.urlencode({"info_hash": ih, "peer_id": b"B" * 20, "port": 1, "uploaded": 0,
                                "downloaded": 0, "left": 0, "event": "stopped"})
    with urllib.request.urlopen(meta[b"announce"].decode() + "?" + q) as r:
        peers = lt.bdecode(r.read())[b"peers"]
    return "127.0.0.1", int.from_bytes(peers[4:6], "big")


def libtorrent_seeder(meta, data_dir, extra):
    """A libtorrent session seeding `meta` from `data_dir` with the same transport settings;
    returns (session, its endpoint)."""
    ses = lt.session(dict(BASE, **extra), flags=0)
    atp = lt.add_torrent_params()
    info = dict(meta)
    info.pop(b"announce", None)
    info.pop(b"announce-list", None)
    atp.ti = lt.torrent_info(info)
    atp.save_path = data_dir
    atp.flags |= lt.torrent_flags.seed_mode
    ses.add_torrent(atp)
    return ses, ("127.0.0.1", ses.listen_port())


def leech(meta, extra, whole, timeout=600, endpoint=None):
    """(seconds to the first block from the first attempt, seconds for the whole download).
    Without `whole`, gives up after 30 s and reports infinity: no block at all."""
    if not whole:
        timeout = 30
    ses = lt.session(dict(BASE, **extra), flags=0)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(meta)
    save = tempfile.mkdtemp(prefix="sb-transport-")
    atp.save_path = save
    endpoint = endpoint or seeder_endpoint(meta)
    start = time.monotonic()
    h = ses.add_torrent(atp)
    attempt = first = None
    next_dial = start
    try:
        while time.monotonic() - start < timeout:
            now = time.monotonic()
            if now >= next_dial and now - start < 10:
                h.connect_peer(endpoint)
                next_dial = now + 1
            for a in ses.pop_alerts():
                if isinstance(a, lt.peer_connect_alert) and attempt is None:
                    attempt = time.monotonic()
                if isinstance(a, (lt.block_finished_alert, lt.piece_finished_alert)) and first is None:
                    first = time.monotonic()
            if first is not None and not whole:
                return first - attempt, None
            if h.status().is_seeding:
                return (first - attempt if first and attempt else None), time.monotonic() - attempt
            time.sleep(0.005)
        if not whole:
            return float("inf"), None
        raise SystemExit(f"libtorrent did not finish in {timeout}s ({extra})")
    finally:
        ses.remove_torrent(h, lt.session.delete_files)


def main():
    rounds, now_t, before_t, data_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    now, before = lt.bdecode(open(now_t, "rb").read()), lt.bdecode(open(before_t, "rb").read())
    size = lt.torrent_info(now).total_size()
    out = {}
    for name, meta in (("ttfb_now_s", now), ("ttfb_before_s", before)):
        times = [leech(meta, {}, False)[0] for _ in range(max(rounds, 3))]
        median = statistics.median(times)
        out[name] = round(median, 3) if median != float("inf") else "no block in 30 s"
        out[name.replace("_s", "_runs")] = [round(t, 2) if t != float("inf") else None for t in times]
    for name, extra in (("tcp_mb_s", PLAIN_TCP), ("utp_mb_s", UTP), ("rc4_tcp_mb_s", RC4_TCP)):
        best = min(leech(now, extra, True)[1] for _ in range(rounds))
        out[name] = round(size / 1e6 / best, 1)
        seeder, endpoint = libtorrent_seeder(now, data_dir, extra)
        best = min(leech(now, extra, True, endpoint=endpoint)[1] for _ in range(rounds))
        out["libtorrent_" + name] = round(size / 1e6 / best, 1)
        del seeder
    print(json.dumps(out))


if __name__ == "__main__":
    main()
