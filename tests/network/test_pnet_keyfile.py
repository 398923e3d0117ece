"""Private network key files (agentp2p/network/psk.py), their config and CLI.

The format is libp2p's swarm.key (pnet/Private-Networks-PSK-V1.md), as
go-libp2p's core/pnet DecodeV1PSK reads it; every malformed file is one
clear PSKError (a ConfigError), never a traceback or a silently wrong key.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from agentp2p.cli import _daemon_config, build_parser, main
from agentp2p.config import NodeConfig, build_config
from agentp2p.errors import ConfigError
from agentp2p.network.psk import (
    PSKError,
    decode_psk,
    encode_psk,
    fingerprint,
    generate_psk,
    read_psk_file,
    write_psk_file,
)

KEY = bytes(range(32))
HEX = KEY.hex()


def _file(body: bytes, encoding: bytes = b"/base16/") -> bytes:
    return b"/key/swarm/psk/1.0.0/\n" + encoding + b"\n" + body


# -- decoding ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_file(HEX.encode()), id="base16"),
        pytest.param(_file(HEX.encode() + b"\n"), id="base16-newline"),
        pytest.param(_file(HEX.upper().encode()), id="base16-upper"),
        pytest.param(_file(HEX[:32].encode() + b"\n" + HEX[32:].encode() + b"\n"), id="base16-wrapped"),
        pytest.param(b"/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + HEX.encode() + b"\r\n", id="base16-crlf"),
        pytest.param(_file(base64.b64encode(KEY), b"/base64/"), id="base64"),
        pytest.param(_file(base64.b64encode(KEY) + b"\n", b"/base64/"), id="base64-newline"),
        pytest.param(_file(KEY, b"/bin/"), id="bin"),
        pytest.param(_file(KEY + b"\n", b"/bin/"), id="bin-newline"),
    ],
)
def test_good_files_decode_to_the_key(data: bytes) -> None:
    assert decode_psk(data) == KEY


def test_bin_key_may_contain_newlines_and_zeros() -> None:
    key = b"\n" * 16 + b"\0" * 15 + b"\r"
    assert decode_psk(_file(key, b"/bin/")) == key
    assert decode_psk(encode_psk(key, "bin")) == key


@pytest.mark.parametrize("encoding", ["base16", "base64", "bin"])
def test_encode_round_trips(encoding: str) -> None:
    key = generate_psk()
    assert len(key) == 32
    assert decode_psk(encode_psk(key, encoding)) == key


def test_written_format_is_the_one_go_and_kubo_read() -> None:
    assert encode_psk(KEY) == b"/key/swarm/psk/1.0.0/\n/base16/\n" + HEX.encode() + b"\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "first line must be '/key/swarm/psk/1.0.0/'", id="empty"),
        pytest.param(b"/key/swarm/psk/2.0.0/\n/base16/\n" + HEX.encode(), "first line must be", id="bad-header"),
        pytest.param(HEX.encode(), "not a private network key", id="bare-hex"),
        pytest.param(b"/key/swarm/psk/1.0.0/", "ends after its first line", id="no-encoding-line"),
        pytest.param(_file(HEX.encode(), b"/base32/"), "unknown key encoding '/base32/'", id="bad-encoding"),
        pytest.param(_file(HEX[:-2].encode()), "must be 64 hex digits (32 bytes), got 62", id="base16-short"),
        pytest.param(_file(HEX.encode() + b"00"), "must be 64 hex digits (32 bytes), got 66", id="base16-long"),
        pytest.param(_file(HEX.encode() + b"\n" + HEX.encode()), "got 128", id="two-keys"),
        pytest.param(_file(b""), "got 0", id="base16-missing"),
        pytest.param(_file(HEX[:-1].encode() + b"g"), "not a hex digit", id="base16-not-hex"),
        pytest.param(_file(b"!" * 44, b"/base64/"), "not valid base64", id="base64-garbage"),
        pytest.param(_file(base64.b64encode(KEY[:31]), b"/base64/"), "decode to 32 bytes, got 31", id="base64-short"),
        pytest.param(_file(KEY[:31], b"/bin/"), "32 raw bytes, got 31", id="bin-short"),
        pytest.param(_file(KEY + b"xx", b"/bin/"), "32 raw bytes, got 34", id="bin-long"),
    ],
)
def test_bad_files_are_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(PSKError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_psk(data)


def test_psk_error_is_a_config_error() -> None:
    assert issubclass(PSKError, ConfigError)


def test_fingerprint_names_a_key_without_being_it() -> None:
    a, b = generate_psk(), generate_psk()
    assert fingerprint(a) == fingerprint(bytes(a)) != fingerprint(b)
    assert len(fingerprint(a)) == 16 and fingerprint(a) not in a.hex()


# -- files ---------------------------------------------------------------------


def test_write_creates_0600_file_and_parent_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "swarm.key"
    key = write_psk_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_psk_file(path) == key
    before = path.read_bytes()
    with pytest.raises(PSKError, match="already exists; refusing to overwrite"):
        write_psk_file(path)
    assert path.read_bytes() == before


def test_write_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "swarm.key"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PSKError, match="already exists"):
        write_psk_file(link)
    assert not (tmp_path / "elsewhere").exists()


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(PSKError, match=f"{missing} does not exist.*agentp2p psk new"):
        read_psk_file(missing)
    with pytest.raises(PSKError, match="not a regular file"):
        read_psk_file(tmp_path)
    bad = tmp_path / "bad.key"
    bad.write_bytes(_file(HEX[:10].encode()))
    bad.chmod(0o600)
    with pytest.raises(PSKError, match=f"key file {bad}: the /base16/ key must be 64 hex digits"):
        read_psk_file(bad)


def test_read_refuses_a_world_readable_file_but_allows_group(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    write_psk_file(path, KEY)
    path.chmod(0o644)
    with pytest.raises(PSKError, match="accessible by others.*chmod 600"):
        read_psk_file(path)
    path.chmod(0o640)
    assert read_psk_file(path) == KEY


# -- config and CLI -------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AGENTP2P_") or n == "LIBP2P_FORCE_PNET"]:
        monkeypatch.delenv(name)


def test_config_psk_from_toml_env_and_flag(tmp_path: Path, clean_env: None) -> None:
    a, b, c = (tmp_path / f"{n}.key" for n in "abc")
    for p in (a, b, c):
        write_psk_file(p)
    toml = tmp_path / "node.toml"
    toml.write_text(f'psk = "{a}"\n')
    assert build_config(toml, environ={}).psk == a
    assert build_config(toml, environ={"AGENTP2P_PSK": str(b)}).psk == b
    assert build_config(toml, environ={"AGENTP2P_PSK": str(b)}, overrides={"psk": str(c)}).psk == c
    assert build_config(environ={}).psk is None
    assert NodeConfig().psk is None


def test_config_with_a_bad_key_file_is_a_config_error(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(environ={"AGENTP2P_PSK": str(tmp_path / "missing.key")})
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"hello\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="not a private network key"):
        NodeConfig(psk=bad).validate()


def test_daemon_psk_flag(tmp_path: Path, clean_env: None) -> None:
    key = tmp_path / "swarm.key"
    write_psk_file(key)
    args = build_parser().parse_args(
        ["daemon", "--api", "off", "--identity", str(tmp_path / "id.key"), "--psk", str(key)]
    )
    assert _daemon_config(args).psk == key


def test_cli_psk_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["psk", "new"]) == 0
    default = tmp_path / ".agentp2p" / "swarm.key"
    key = read_psk_file(default)
    out = capsys.readouterr().out
    assert str(default) in out and fingerprint(key) in out and key.hex() not in out
    assert stat.S_IMODE(default.stat().st_mode) == 0o600

    named = tmp_path / "net" / "team.key"
    assert main(["psk", "new", str(named)]) == 0
    assert read_psk_file(named) != key

    before = named.read_bytes()
    assert main(["psk", "new", str(named)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert named.read_bytes() == before


def test_daemon_refuses_a_bad_key_file_in_one_line(tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(_file(b"abcd"))
    bad.chmod(0o600)
    rc = main(["daemon", "--full-import", "--api", "off", "--identity", str(tmp_path / "id.key"), "--psk", str(bad),
               "--listen", "/ip4/127.0.0.1/tcp/0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "must be 64 hex digits" in err and str(bad) in err
