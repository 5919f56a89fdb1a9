#!/usr/bin/env python3
"""Query an axon from Python with a signed FORWARD (the validator side of docs/PROTOCOL.md).

From the repository root, with `./scripts/serve` running (README, "From Python"):

    python3 -m venv .venv-examples && .venv-examples/bin/pip install protobuf pynacl
    protoc -I Protos --python_out=docs/examples Protos/axon.proto     # writes docs/examples/axon_pb2.py
    .build/release/axon keygen                                        # ~/.axon/default.json, unless it exists
    .venv-examples/bin/python docs/examples/signed_query.py

Arguments, all optional: KEY_FILE (default ~/.axon/default.json), HOST:PORT (default
127.0.0.1:8091), then token ids (default "The capital of France is").
"""
import hashlib, json, os, socket, struct, subprocess, sys, time, uuid

import nacl.signing
from google.protobuf.internal.decoder import _DecodeVarint32
from google.protobuf.internal.encoder import _VarintBytes

import axon_pb2 as pb

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
FRANCE = [504, 3575, 282, 4649, 314]  # "The capital of France is" (axon tokenize)


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
        chunk = sock.recv(1 << 20)
        if not chunk:
            sys.exit("the axon closed the connection without answering")
        buf += chunk
        try:
            n, at = _DecodeVarint32(buf, 0)
        except IndexError:
            continue  # the length prefix itself is incomplete
        if len(buf) >= at + n:
            return pb.Response.FromString(buf[at:at + n])


def token_text(token_id):
    """The token's text, from the axon binary the README builds (the wire carries ids only)."""
    axon = os.environ.get("AXON", ".build/release/axon")
    return subprocess.run([axon, "detokenize"], input=str(token_id), capture_output=True, text=True).stdout


def main():
    args = sys.argv[1:]
    key_file = args[0] if args else os.path.expanduser("~/.axon/default.json")
    endpoint = args[1] if len(args) > 1 else "127.0.0.1:8091"
    ids = [int(t) for t in args[2:]] or FRANCE
    if not os.path.exists(key_file):
        sys.exit(f"{key_file} does not exist: create it with `.build/release/axon keygen` (or pass a key file)")
    key = nacl.signing.SigningKey(bytes.fromhex(json.load(open(key_file))["secret_seed"]))
    sender = ss58(bytes(key.verify_key))
    host, port = endpoint.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    info = call(sock, pb.Request(id=1, method=pb.INFO))  # INFO is open
    if info.code != pb.Success:
        sys.exit(f"INFO answered {pb.ReturnCode.Name(info.code)}: {info.message}")
    receiver = info.info.hotkey

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
    if result.code != pb.Success:
        sys.exit(f"synapse answered {pb.ReturnCode.Name(result.code)}: {result.message}")
    probs = struct.unpack("<5f", result.tensors[0].buffer)
    top = struct.unpack("<5i", result.tensors[1].buffer)
    for token, p in zip(top, probs):
        print(f"{json.dumps(token_text(token)):12} {p:.4f}  id {token}")


if __name__ == "__main__":
    main()
