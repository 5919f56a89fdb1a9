#!/usr/bin/env python3
"""Independent reference for the Identity module: ed25519 (PyNaCl), SS58 (hashlib.blake2b + a
few lines of base58) and the request-signature contract. Writes
Tests/IdentityTests/Fixtures/identity_fixtures.json, which the Swift tests compare against
byte for byte (ed25519 signatures are deterministic).

    "$(scripts/venv)" scripts/reference/identity_fixtures.py
"""
import hashlib
import json
import os

from nacl.signing import SigningKey

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "IdentityTests", "Fixtures", "identity_fixtures.json")

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def ss58_checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]


def ss58(pubkey: bytes, prefix: int = 42) -> str:
    payload = bytes([prefix]) + pubkey
    return b58encode(payload + ss58_checksum(payload))


def key_entry(seed: bytes) -> dict:
    sk = SigningKey(seed)
    pk = bytes(sk.verify_key)
    return {"seed": seed.hex(), "public_key": pk.hex(), "ss58": ss58(pk)}


def signed_message(nonce: int, sender: str, receiver: str, uuid: str, body: bytes) -> str:
    return f"{nonce}.{sender}.{receiver}.{uuid}.{hashlib.sha256(body).hexdigest()}"


def main() -> None:
    # Self-check against a published vector: Substrate's well-known dev account //Alice
    # (0xd435…a27d) is 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY at prefix 42.
    alice = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
    assert ss58(alice) == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"

    fixed_seed = hashlib.sha256(b"axon identity fixture seed").digest()
    receiver_seed = hashlib.sha256(b"axon identity fixture receiver").digest()
    fixed = key_entry(fixed_seed)
    receiver = key_entry(receiver_seed)
    signer = SigningKey(fixed_seed)

    more_seeds = [bytes(32), bytes([0xFF] * 32), bytes(range(32))] + [
        hashlib.sha256(f"axon identity extra {i}".encode()).digest() for i in range(5)
    ]
    keys = [key_entry(s) for s in more_seeds]

    bodies = [b"", b"hello axon", bytes(range(256)) * 4, "h\u00e9llo \u2603".encode()]
    signatures = []
    for i, body in enumerate(bodies):
        nonce = [0, 1, 1_700_000_000_123_456_789, 2**64 - 1][i]
        uuid = ["0b1c1f62-7d4e-4b0e-9a4b-0d4a1c3e5f60", "session-a", "s", "x" * 64][i]
        message = signed_message(nonce, fixed["ss58"], receiver["ss58"], uuid, body)
        signature = signer.sign(message.encode("utf-8")).signature
        signatures.append({
            "nonce": str(nonce),  # decimal string: JSON numbers lose precision above 2**53
            "sender": fixed["ss58"],
            "receiver": receiver["ss58"],
            "uuid": uuid,
            "body": body.hex(),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "message": message,
            "signature": signature.hex(),
        })

    valid = fixed["ss58"]
    payload = bytes([42]) + bytes.fromhex(fixed["public_key"])
    bad_checksum = b58encode(payload + bytes(b ^ 0xFF for b in ss58_checksum(payload)))
    polkadot = ss58(bytes.fromhex(fixed["public_key"]), prefix=0)
    kusama = ss58(bytes.fromhex(fixed["public_key"]), prefix=2)
    invalid = [
        {"address": bad_checksum, "error": "badChecksum"},
        {"address": polkadot, "error": "wrongPrefix"},
        {"address": kusama, "error": "wrongPrefix"},
        {"address": valid[:10] + "0" + valid[11:], "error": "invalidCharacter"},
        {"address": valid[:10] + "l" + valid[11:], "error": "invalidCharacter"},
        {"address": valid[:-1], "error": "wrongLength"},
        {"address": b58encode(payload), "error": "wrongLength"},
        {"address": b58encode(payload + ss58_checksum(payload) + b"\x00"), "error": "wrongLength"},
        {"address": "", "error": "wrongLength"},
    ]

    fixtures = {
        "generator": "scripts/reference/identity_fixtures.py (PyNaCl + hashlib)",
        "published": {"public_key": alice.hex(), "ss58": ss58(alice)},
        "fixed": fixed,
        "receiver": receiver,
        "keys": keys,
        "signatures": signatures,
        "invalid_addresses": invalid,
    }
    with open(OUT, "w") as f:
        json.dump(fixtures, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
