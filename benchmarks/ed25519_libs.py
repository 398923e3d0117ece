"""Ed25519 sign and verify per pub/sub message with each library at hand.

Our gossipsub adapter signs every published message and verifies every
received one (StrictSign); on this machine those two calls are most of a
message's CPU (``pubsub_compare.py --profile``). This times them on the
exact bytes a 128-byte payload is signed over (``codec.signing_payload``)
with: libsodium through PyNaCl (what ``gossipsub/signing.py`` uses: the
``crypto_sign_open`` binding, and PyNaCl's high-level classes), OpenSSL
through ``cryptography``, pycryptodome, and — if the system has it — the
system libsodium's ``crypto_sign_verify_detached`` through ctypes (the same
algorithm without PyNaCl's buffer copies). Each figure is the best of
``--repeats`` runs of ``--n`` calls, in CPU microseconds per call.

    .venv/bin/python benchmarks/ed25519_libs.py
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import emit


def best_us(fn: Callable[[], Any], n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(n):
            fn()
        times.append(time.process_time() - t)
    return round(1e6 * min(times) / n, 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="calls per run (default 2000)")
    p.add_argument("--repeats", type=int, default=5, help="runs; the best counts (default 5)")
    p.add_argument("--size", type=int, default=128, help="payload bytes (default 128)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    n, reps = args.n, args.repeats

    from nacl.bindings import crypto_sign, crypto_sign_open
    from nacl.signing import SigningKey

    from agentp2p.network.identity import Identity
    from agentp2p.protocol.gossipsub.codec import signing_payload
    from agentp2p.protocol.gossipsub.rpc import Message

    ident = Identity.generate()
    msg = signing_payload(Message("bench", os.urandom(args.size), ident.peer_id.to_bytes(), os.urandom(8)))
    seed = os.urandom(32)
    nacl_sk = SigningKey(seed)
    nacl_vk = nacl_sk.verify_key
    raw_pub = bytes(nacl_vk)
    sk64 = bytes(nacl_sk._signing_key)  # libsodium's 64-byte secret key
    sig = bytes(nacl_sk.sign(msg).signature)
    results: dict[str, float] = {}

    results["sign: PyNaCl SigningKey.sign (libsodium; signing.py today)"] = best_us(
        lambda: nacl_sk.sign(msg).signature, n, reps)
    results["sign: PyNaCl bindings.crypto_sign (libsodium, no wrapper objects)"] = best_us(
        lambda: crypto_sign(msg, sk64)[:64], n, reps)
    results["verify: PyNaCl bindings.crypto_sign_open (libsodium; signing.py today)"] = best_us(
        lambda: crypto_sign_open(sig + msg, raw_pub), n, reps)
    results["verify: PyNaCl VerifyKey.verify (libsodium)"] = best_us(lambda: nacl_vk.verify(msg, sig), n, reps)

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    c_sk = Ed25519PrivateKey.from_private_bytes(seed)
    c_pk = c_sk.public_key()
    assert c_sk.sign(msg) == sig
    results["sign: cryptography Ed25519PrivateKey.sign (OpenSSL)"] = best_us(lambda: c_sk.sign(msg), n, reps)
    results["verify: cryptography Ed25519PublicKey.verify (OpenSSL, key object cached)"] = best_us(
        lambda: c_pk.verify(sig, msg), n, reps)

    try:
        from Crypto.Signature import eddsa

        verifier = eddsa.new(eddsa.import_public_key(raw_pub), "rfc8032")
        results["verify: pycryptodome eddsa"] = best_us(lambda: verifier.verify(msg, sig), max(20, n // 20), reps)
    except ImportError:
        pass

    name = ctypes.util.find_library("sodium")
    if name:
        so = ctypes.CDLL(name)
        so.sodium_init()
        verify_detached = so.crypto_sign_verify_detached
        verify_detached.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
        so.sodium_version_string.restype = ctypes.c_char_p
        assert verify_detached(sig, msg, len(msg), raw_pub) == 0
        version = so.sodium_version_string().decode()
        results[f"verify: system libsodium {version} crypto_sign_verify_detached (ctypes)"] = best_us(
            lambda: verify_detached(sig, msg, len(msg), raw_pub), n, reps)

    import cryptography
    import nacl

    result = {"benchmark": "ed25519_libs", "signed_bytes": len(msg), "cpu_us_per_call": results,
              "versions": {"pynacl": nacl.__version__, "cryptography": cryptography.__version__}}
    if args.json:
        emit(result, True)
    else:
        for k, v in results.items():
            print(f"{v:8.1f} us  {k}")
        print(f"(signing input {len(msg)} bytes; best of {reps} x {n} calls; PyNaCl {nacl.__version__}, "
              f"cryptography {cryptography.__version__})")
    return result


if __name__ == "__main__":
    main()
