"""README.md runs as written: its shell blocks, in order, in one bash with `set -euo pipefail`,
in an empty working directory, against a fresh server, as a user following it would.

Which blocks run: every fenced block whose info string starts with `sh`, `bash` or `shell`,
except those marked on the line just before the fence with

    <!-- readme-test: skip (why it cannot run here) -->

(a block that starts a server in the foreground, or needs other machines). The reasons are
listed in the test's output; the `serve` flags and `./` paths those blocks name are still checked.

What the test does that a user would do by hand, and nothing more:
- starts the server the README's first block starts (conftest.Server, the prebuilt binary), with
  its data in `./seedbucket-data` of the working directory as `cargo run -- serve` would have it,
  but on free ports (S3, seeder and admin listener; SEEDBUCKET_ADMIN_LISTEN tells the `bucket`
  and `stats` commands where the default 127.0.0.1:9001 went) so that it can run beside other
  tests, and with conftest's
  root key (which the README lets a user choose with SEEDBUCKET_ROOT_*) and torrent size limit
  (20 MB; the README's objects are smaller);
- fills in what the README leaves to the reader, all in `as_run_here`: the server's port for the
  default 127.0.0.1:9000, and the root key for `<access key>` / `<secret key>`;
- puts `seedbucket` (SEEDBUCKET_BIN) first on PATH, as `cargo install` would;
- runs with HOME set to an empty directory holding only `~/.aria2/aria2.conf`, which turns
  aria2c's DHT, local peer discovery and peer exchange off (every peer is on 127.0.0.1, and the
  README's aria2c commands stay what a user types) and gives it a free listen port. That HOME
  also keeps any ~/.aws of the machine out; AWS_* and SEEDBUCKET_* variables are dropped too.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ACCESS_KEY, ROOT, SECRET_KEY, Server, _binary, _free_port

README = ROOT / "README.md"
SHELL_LANGUAGES = {"sh", "bash", "shell"}
SKIP_MARKER = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->\s*$")
ANY_MARKER = re.compile(r"^\s*<!--.*readme-test")
FENCE = re.compile(r"^```(?P<info>.*)$")
# What is left of a placeholder such as `<canonical user id>` after `as_run_here`.
PLACEHOLDER = re.compile(r"<[a-z][a-z ]*[a-z]>")
# The tools the README's runnable blocks call.
TOOLS = ["bash", "aws", "curl", "jq", "aria2c"]
TIMEOUT = 600  # seconds for all blocks together; the whole run takes well under a minute


class Block:
    def __init__(self, line: int, language: str, text: str, skip_reason):
        self.line = line  # README line of the opening fence
        self.language = language
        self.text = text
        self.skip_reason = skip_reason

    def shown(self) -> str:
        return f"README.md line {self.line}:\n```{self.language}\n{self.text}```"


def readme_shell_blocks() -> list:
    """The shell blocks of README.md in order. A skip marker must sit on the line just before a
    shell block; a `readme-test:` comment that is not one is an error, not silently ignored."""
    lines = README.read_text().splitlines(keepends=True)
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i].rstrip("\n")
        fence = FENCE.match(line)
        if ANY_MARKER.search(line):
            assert SKIP_MARKER.match(line), f"README.md line {i + 1}: not a `<!-- readme-test: skip (why) -->` marker: {line}"
            follows = FENCE.match(lines[i + 1].rstrip("\n")) if i + 1 < len(lines) else None
            assert follows and language_of(follows["info"]) in SHELL_LANGUAGES, \
                f"README.md line {i + 1}: a skip marker must be on the line just before a shell block"
        if fence:
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip("\n") != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"README.md line {start + 1}: the block is never closed"
            language = language_of(fence["info"])
            if language in SHELL_LANGUAGES:
                before = SKIP_MARKER.match(lines[start - 1].rstrip("\n")) if start > 0 else None
                blocks.append(Block(start + 1, language, "".join(body), before["reason"] if before else None))
        i += 1
    return blocks


def language_of(info: str) -> str:
    words = info.split()
    return words[0] if words else ""


def as_run_here(text: str, server: Server) -> str:
    """The one place the README's text is changed before it runs: the server's free port for the
    default port, and the root key for the placeholders the README asks the reader to fill in."""
    return (text.replace("127.0.0.1:9000", f"127.0.0.1:{server.port}")
                .replace("<access key>", ACCESS_KEY)
                .replace("<secret key>", SECRET_KEY))


def test_readme_blocks_are_found():
    runnable = [b for b in readme_shell_blocks() if b.skip_reason is None]
    assert len(runnable) >= 5, f"only {len(runnable)} runnable shell blocks found in README.md"


def test_skipped_blocks_name_real_flags_and_files():
    """Skipped blocks are not run, but what they name must exist: every flag after `serve` is one
    `seedbucket serve` takes, and every `./path` is in the repository."""
    help_text = subprocess.run([_binary(), "serve", "--help"], capture_output=True, text=True,
                               check=True).stdout
    known = set(re.findall(r"--[a-z0-9-]+", help_text))
    for b in readme_shell_blocks():
        if b.skip_reason is None:
            continue
        for command in b.text.replace("\\\n", " ").splitlines():
            words = command.split("#", 1)[0].split()
            if "serve" in words:
                flags = [w.split("=", 1)[0] for w in words[words.index("serve") + 1:] if w.startswith("--")]
                unknown = [f for f in flags if f not in known]
                assert not unknown, f"{b.shown()}\nflags `seedbucket serve` does not take: {unknown}"
            for w in words:
                if w.startswith("./"):
                    assert (ROOT / w).exists(), f"{b.shown()}\nno {w} in the repository"


def test_readme_runs_as_written(tmp_path):
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"the README's examples need {missing} (scripts/test.sh installs them)"

    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (home / ".aria2").mkdir(parents=True)
    (home / ".aria2" / "aria2.conf").write_text(
        "enable-dht=false\nenable-dht6=false\nbt-enable-lpd=false\nenable-peer-exchange=false\n"
        f"listen-port={_free_port()}\n"
        "bt-stop-timeout=60\n")  # a stalled download ends with an error rather than at TIMEOUT
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "seedbucket").symlink_to(os.path.abspath(_binary()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SEEDBUCKET_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    blocks = readme_shell_blocks()
    # The admin listener on a free port, where the README assumes the default 127.0.0.1:9001
    # (the `bucket` and `stats` commands find it in SEEDBUCKET_ADMIN_LISTEN, as they would in
    # the `--config` file).
    server = Server(tmp_path, data_dir=work / "seedbucket-data", admin=True)
    env["SEEDBUCKET_ADMIN_LISTEN"] = f"127.0.0.1:{server.admin_port}"
    try:
        run_blocks(blocks, server, work, env)
    finally:
        server.stop()

    # What the examples fetched is what they stored (file names as in README.md).
    same = [("weights.safetensors", "copy.safetensors"), ("weights.safetensors", "presigned.safetensors"),
            ("weights.safetensors", "downloads/weights.safetensors"), ("readme.txt", "downloads/readme.txt"),
            ("secret.bin", "out.bin")]
    for original, fetched in same:
        assert (work / fetched).read_bytes() == (work / original).read_bytes(), f"{fetched} differs from {original}"


def marker(i: int) -> str:
    return f"@@readme-test: block {i} starts@@"


ALL_RAN = "@@readme-test: every block ran@@"


def run_blocks(blocks, server, work: Path, env):
    """Runs the runnable blocks in one bash, so that what one sets (S3, MAGNET) the next sees;
    a line printed before each block tells which one failed."""
    script = ["set -euo pipefail\n"]
    runnable = []
    for b in blocks:
        if b.skip_reason is not None:
            print(f"skipped: README.md line {b.line}: {b.skip_reason}")
            continue
        text = as_run_here(b.text, server)
        left = PLACEHOLDER.findall(text)
        assert not left, f"{b.shown()}\nplaceholders nobody fills in: {left}"
        script.append(f"printf '\\n%s\\n' '{marker(len(runnable))}'\n{text}")
        runnable.append(b)
    script.append(f"printf '\\n%s\\n' '{ALL_RAN}'\n")
    (work.parent / "readme.sh").write_text("".join(script))

    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(work.parent / "readme.sh")], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
        how = f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        how = f"still running after {TIMEOUT} s"
    output = output.decode(errors="replace")
    print(f"README blocks: {len(runnable)} ran in {time.monotonic() - started:.1f} s")
    if proc.returncode == 0 and ALL_RAN in output:
        return
    last = max((i for i in range(len(runnable)) if marker(i) in output), default=0)
    block_output = output.split(marker(last), 1)[-1]
    pytest.fail(f"{runnable[last].shown()}\nfailed ({how}); its output (last 6000 characters):\n"
                f"{block_output[-6000:]}\n--- server log (last 3000 characters):\n{server.logs()[-3000:]}",
                pytrace=False)
