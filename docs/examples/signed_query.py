#!/usr/bin/env python3
"""Query an axon from Python with a signed FORWARD (the validator side of docs/PROTOCOL.md).

    pip install protobuf pynacl
    protoc --python_out=. Protos/axon.proto          # Debian: apt-get install protobuf-compiler
    axon keygen --out validator.json                 # or any ed25519 seed
    python3 docs/examples/signed_query.py validator.json 127.0.0.1:8091 504 3575 282 4649 314
"""
import hashlib, json, socket, struct, sys, time, uuid

import nacl.signing
from google.protobuf.internal.decoder import _DecodeVarint32
from google.protobuf.internal.encoder import _VarintBytes

import axon_pb2 as pb

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def ss58(public_key: bytes, prefix: int = 42) -> str:
    payload = bytes([prefix]) + public_key
    data = payload + hashlib.blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def call(sock, request):
    frame = request.SerializeToString()
    sock.sendall(_VarintBytes(len(frame)) + frame)
    buf = b""
    while True:
        buf += sock.recv(1 << 20)
        try:
            n, at = _DecodeVarint32(buf, 0)
        except IndexError:
            continue  # the length prefix itself is incomplete
        if len(buf) >= at + n:
            return pb.Response.FromString(buf[at:at + n])


def main():
    key_file, endpoint, ids = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3:]]
    key = nacl.signing.SigningKey(bytes.fromhex(json.load(open(key_file))["secret_seed"]))
    sender = ss58(bytes(key.verify_key))
    host, port = endpoint.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    receiver = call(sock, pb.Request(id=1, method=pb.INFO)).info.hotkey  # INFO is open

    body = pb.ForwardRequest(
        tokens=pb.Tensor(buffer=struct.pack(f"<{len(ids)}i", *ids), shape=[1, len(ids)], dtype=pb.INT32),
        synapses=[pb.Synapse(type=pb.TEXT_CAUSAL_LM_NEXT, topk=5)]).SerializeToString()
    nonce, session = time.time_ns(), str(uuid.uuid4())
    message = f"{nonce}.{sender}.{receiver}.{session}.{hashlib.sha256(body).hexdigest()}"
    auth = pb.Auth(hotkey=sender, nonce=nonce, uuid=session, signature=key.sign(message.encode()).signature)
    response = call(sock, pb.Request(id=2, method=pb.FORWARD, body=body, auth=auth))
    if response.code != pb.Success:
        sys.exit(f"axon answered {pb.ReturnCode.Name(response.code)}: {response.message}")
    result = response.forward.results[0]
    probs = struct.unpack(f"<5f", result.tensors[0].buffer)
    top = struct.unpack(f"<5i", result.tensors[1].buffer)
    for token, p in zip(top, probs):
        print(f"{token:6d}  {p:.4f}")


if __name__ == "__main__":
    main()
