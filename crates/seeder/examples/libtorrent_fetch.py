"""Downloads a torrent (file or magnet link) from one seeder on 127.0.0.1 with python
libtorrent and checks the result against the original file.

    python libtorrent_fetch.py TORRENT_OR_MAGNET PORT ORIGINAL_FILE

Pair it with `cargo run -p seedbucket-seeder --example seed_file -- ORIGINAL_FILE --port PORT`.
A magnet link exercises BEP 9 (the info dictionary over ut_metadata); a v2-only magnet
(`xt=urn:btmh:1220...`) also BEP 52 hash requests, since the piece layers then come from us.
Exits 0 when the downloaded file is identical.
"""

import hashlib
import os
import sys
import tempfile
import time

import libtorrent as lt


def main() -> int:
    what, port, original = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ses = lt.session({
        'listen_interfaces': '127.0.0.1:0',
        'enable_dht': False,
        'enable_lsd': False,
        'enable_upnp': False,
        'enable_natpmp': False,
        # The seeder speaks TCP only; libtorrent would try uTP first and time out.
        'enable_outgoing_utp': False,
        'enable_incoming_utp': False,
        'alert_mask': lt.alert.category_t.error_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.status_notification,
    })
    if what.startswith('magnet:'):
        atp = lt.parse_magnet_uri(what)
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(what)
    atp.save_path = tempfile.mkdtemp()
    handle = ses.add_torrent(atp)
    start = last = time.time()
    handle.connect_peer(('127.0.0.1', port))
    while time.time() - start < 120:
        status = handle.status()
        for alert in ses.pop_alerts():
            if isinstance(alert, (lt.peer_error_alert, lt.torrent_error_alert,
                                  lt.hash_failed_alert, lt.metadata_failed_alert)):
                print('alert:', type(alert).__name__, alert.message())
        if status.is_seeding:
            break
        if time.time() - last > 5:
            last = time.time()
            print(f'{status.state} {status.progress:.3f} peers={status.num_peers}')
            if status.num_peers == 0:
                # A peer added while the torrent is still being checked is dropped.
                handle.connect_peer(('127.0.0.1', port))
        time.sleep(0.05)
    status = handle.status()
    identical = False
    if status.is_seeding:
        name = handle.torrent_file().name()
        with open(os.path.join(atp.save_path, name), 'rb') as got, open(original, 'rb') as want:
            identical = hashlib.sha256(got.read()).digest() == hashlib.sha256(want.read()).digest()
    print(f'seeding={status.is_seeding} identical={identical} '
          f'seconds={time.time() - start:.2f} bytes={status.total_payload_download}')
    return 0 if identical else 1


if __name__ == '__main__':
    sys.exit(main())
