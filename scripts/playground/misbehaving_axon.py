"""A misbehaving miner for the playground's browser test: it speaks the axon protocol (Python's
standard library only; protobuf encoded by hand, which is small for the few fields used here) and
answers INFO honestly, but TEXT_SEQ_2_SEQ with the standard ids it is given (a text holding
<script> and HTML), and TEXT_CAUSAL_LM_NEXT and TEXT_LAST_HIDDEN_STATE with absurd shapes.

  python3 misbehaving_axon.py PORT HOTKEY RANKS_SHA256 IDS_JSON

It prints "ready" once listening on 127.0.0.1:PORT and serves until killed.
"""
import json
import socket
import struct
import sys
import threading


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_string(number, text):
    return field_bytes(number, text.encode("utf-8"))


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def fields(data):
    """(number, value) for each field: ints for varints, bytes for length-delimited, skipped otherwise."""
    at = 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = read_varint(data, at)
        elif kind == 2:
            length, at = read_varint(data, at)
            value, at = data[at:at + length], at + length
        elif kind == 5:
            value, at = data[at:at + 4], at + 4
        elif kind == 1:
            value, at = data[at:at + 8], at + 8
        else:
            raise ValueError(f"wire type {kind}")
        yield number, value


FLOAT32, INT32 = 1, 3
SUCCESS = 1
TEXT_LAST_HIDDEN_STATE, TEXT_SEQ_2_SEQ, TEXT_CAUSAL_LM_NEXT = 1, 3, 4


def tensor(buffer, shape, dtype):
    return field_bytes(1, buffer) + b"".join(field_varint(2, d) for d in shape) + field_varint(3, dtype)


def synapse_result(kind, tensors):
    return field_varint(1, kind) + field_varint(2, SUCCESS) + b"".join(field_bytes(4, t) for t in tensors)


class Miner:
    def __init__(self, hotkey, ranks_sha256, ids):
        self.hotkey, self.ranks_sha256, self.ids = hotkey, ranks_sha256, ids

    def info(self):
        return (field_string(1, self.hotkey) + field_varint(2, (1 << 64) - 1) + field_string(4, "misbehaving fake")
                + field_string(5, "none") + field_varint(6, 50257) + field_varint(7, 8) + field_varint(8, 8)
                + field_varint(9, 4) + field_varint(10, 512) + field_varint(11, 2048) + field_string(12, "0" * 64)
                + field_string(17, "gpt2") + field_string(18, self.ranks_sha256) + field_varint(19, 50257))

    def result(self, kind):
        if kind == TEXT_SEQ_2_SEQ:
            ids = struct.pack(f"<{len(self.ids)}i", *self.ids)
            return synapse_result(kind, [tensor(ids, [1, len(self.ids)], INT32),
                                         tensor(struct.pack("<i", len(self.ids)), [1], INT32)])
        if kind == TEXT_CAUSAL_LM_NEXT:
            # A billion phrases claimed, three floats sent.
            return synapse_result(kind, [tensor(struct.pack("<3f", 0.9, 0.9, 0.9), [1, 1_000_000_000], FLOAT32),
                                         tensor(struct.pack("<3i", 1, 2, 3), [1, 1_000_000_000, 1 << 40], INT32),
                                         tensor(struct.pack("<f", 2.0), [1], FLOAT32)])
        return synapse_result(kind, [tensor(b"\x00" * 16, [2, 1 << 40, 8], FLOAT32)])

    def answer(self, request):
        parts = dict(fields(request))
        ident, method = parts.get(1, 0), parts.get(2, 0)
        head = field_varint(1, ident) + field_varint(2, SUCCESS)
        if method == 2:
            return head + field_bytes(11, self.info())
        if method == 3:
            synapses = [dict(fields(value)).get(1, 0) for number, value in fields(parts.get(4, b"")) if number == 3]
            results = b"".join(field_bytes(1, self.result(kind)) for kind in synapses)
            return head + field_bytes(10, results)
        return head

    def serve(self, connection):
        buffer = b""
        with connection:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while True:
                    try:
                        length, at = read_varint(buffer, 0)
                    except ValueError:
                        break
                    if len(buffer) < at + length:
                        break
                    request, buffer = buffer[at:at + length], buffer[at + length:]
                    reply = self.answer(request)
                    connection.sendall(varint(len(reply)) + reply)


def main():
    port, hotkey, ranks_sha256, ids = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    miner = Miner(hotkey, ranks_sha256, ids)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=miner.serve, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    main()
