"""Writes subnet.json and axons.json for N UIDs spread over fake-backend axons on PORTS (round robin):
distinct SS58 hotkeys (ed25519 from seeded seeds, pynacl), for `axon validate`'s scale run.
    python make_subnet.py N OUTDIR PORT...
"""
import hashlib
import json
import pathlib
import sys

import nacl.signing

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def ss58(public, prefix=42):
    body = bytes([prefix]) + public
    return b58(body + hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2])


n, out, ports = int(sys.argv[1]), pathlib.Path(sys.argv[2]), [int(p) for p in sys.argv[3:]]
keys = [ss58(bytes(nacl.signing.SigningKey(hashlib.sha256(b"uid%d" % i).digest()).verify_key)) for i in range(n)]
(out / "subnet.json").write_text(json.dumps({"netuid": 1, "block": 1, "neurons": [
    {"uid": i, "hotkey": k, "stake": 1.0, "validator_permit": False} for i, k in enumerate(keys)]}))
(out / "axons.json").write_text(json.dumps([
    {"uid": i, "hotkey": k, "host": "127.0.0.1", "port": ports[i % len(ports)]} for i, k in enumerate(keys)]))
