"""Wire fixtures from an encoder independent of protobuf-c: Python `protobuf` (PyPI).

The message classes are built at run time from Protos/axon.proto by a small parser that fills a
google.protobuf.descriptor_pb2.FileDescriptorProto (no protoc binary needed). The script writes
delimited frames (varint length + message) and their expected decodings as JSON into
Tests/WireTests/Fixtures/wire_fixtures.json. Run: "$(scripts/venv)" scripts/reference/wire_fixtures.py
"""
import base64
import json
import pathlib
import re

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "Protos" / "axon.proto"
OUT = ROOT / "Tests" / "WireTests" / "Fixtures" / "wire_fixtures.json"

SCALARS = {
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
}


def parse_proto(text):
    """A FileDescriptorProto for the subset of proto3 that axon.proto uses (flat enums and messages)."""
    text = re.sub(r"//[^\n]*", "", text)
    fdp = descriptor_pb2.FileDescriptorProto(name="axon.proto", syntax="proto3")
    fdp.package = re.search(r"package\s+([\w.]+)\s*;", text).group(1)
    blocks = re.findall(r"(enum|message)\s+(\w+)\s*\{([^}]*)\}", text)
    enum_names = {name for kind, name, _ in blocks if kind == "enum"}
    for kind, name, body in blocks:
        if kind == "enum":
            enum = fdp.enum_type.add(name=name)
            for value_name, number in re.findall(r"(\w+)\s*=\s*(-?\d+)\s*;", body):
                enum.value.add(name=value_name, number=int(number))
            continue
        message = fdp.message_type.add(name=name)
        for label, type_name, field_name, number in re.findall(
                r"(repeated\s+|optional\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", body):
            field = message.field.add(name=field_name, number=int(number), json_name=field_name)
            field.label = (descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if label.startswith("repeated")
                           else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
            if label.startswith("optional"):
                # proto3 `optional`: a synthetic one-field oneof named _field, as protoc builds it.
                field.proto3_optional = True
                field.oneof_index = len(message.oneof_decl)
                message.oneof_decl.add(name=f"_{field_name}")
            if type_name in SCALARS:
                field.type = SCALARS[type_name]
            elif type_name in enum_names:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
                field.type_name = f".{fdp.package}.{type_name}"
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{fdp.package}.{type_name}"
    return fdp


fdp = parse_proto(PROTO.read_text())
pool = descriptor_pool.DescriptorPool()
pool.Add(fdp)
M = {d.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"axon.v1.{d.name}"))
     for d in fdp.message_type}


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(payload):
    return varint(len(payload)) + payload


def describe(message):
    # Bytes as base64, 64-bit integers as strings, enums as numbers, proto3 defaults omitted.
    return MessageToDict(message, preserving_proto_field_name=True, use_integers_for_enums=True)


def hexed(b):
    return b.hex()


def forward(tokens, dtype, shape, lengths, synapses):
    fmt = {3: "<i4", 4: "<i8"}[dtype]
    import numpy as np
    buffer = np.asarray(tokens, dtype=fmt).tobytes()
    fr = M["ForwardRequest"](tokens=M["Tensor"](buffer=buffer, shape=shape, dtype=dtype), lengths=lengths)
    for s in synapses:
        fr.synapses.add(**s)
    return fr


requests = []


def add_request(name, request, forward_request=None, payload=None):
    payload = request.SerializeToString() if payload is None else payload
    case = {"name": name, "frame": hexed(frame(payload)), "request": describe(request)}
    if forward_request is not None:
        case["forward"] = describe(forward_request)
    requests.append(case)


add_request("ping", M["Request"](id=1, method=1))
add_request("info with auth and the largest id", M["Request"](
    id=2**64 - 1, method=2, timeout_ms=5000,
    auth=M["Auth"](hotkey="5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX", nonce=2**63 + 7,
                   uuid="6b0f3c1e-uuid", signature=bytes(range(64)))))
fr = forward([[5, 6, 7], [2, 8, 9]], 3, [2, 3], [3, 2], [
    {"type": 1, "dtype": 6}, {"type": 2, "topk": 5}, {"type": 4, "topk": 4096, "dtype": 1}])
add_request("forward int32 left-padded with three synapses",
            M["Request"](id=300, method=3, timeout_ms=12000, body=fr.SerializeToString()), fr)
fr = forward([[49151, 0, 1, 2]], 4, [1, 4], [], [{"type": 4}])
add_request("forward int64", M["Request"](id=2**40, method=3, body=fr.SerializeToString()), fr)
# Network space and TEXT_SEQ_2_SEQ parameters: present fields holding their type's zero (topk 0,
# do_sample false) must stay present, absent ones absent.
fr = forward([[50256, 464, 3139]], 3, [1, 3], [2], [
    {"type": 3, "generation": M["Generation"](num_to_generate=16, topk=0, do_sample=False, top_p=0.5,
                                              temperature=0.75, seed=2**64 - 3, stop_tokens=[50256, -1])},
    {"type": 3, "generation": M["Generation"]()},
    {"type": 4, "topk": 4096}])
fr.space = 1
add_request("forward in network space with generation parameters",
            M["Request"](id=301, method=3, body=fr.SerializeToString()), fr)
fr = forward([[1, 2]], 3, [1, 2], [], [{"type": 3, "generation": M["Generation"](
    repetition_penalty=1.25, no_repeat_ngram_size=0, num_beams=4, length_penalty=-0.5, early_stopping=True)}])
add_request("forward with beam-search parameters", M["Request"](id=302, method=3, body=fr.SerializeToString()), fr)
add_request("unknown method", M["Request"](id=9, method=7))
# Unknown field 99 (varint) must be skipped.
add_request("unknown field is skipped", M["Request"](id=10, method=1),
            payload=M["Request"](id=10, method=1).SerializeToString() + varint(99 << 3) + varint(12345))

malformed = [
    # A length-delimited field (body, tag 4) announcing 200 bytes but holding 3.
    {"name": "truncated body field", "frame": hexed(frame(bytes([0x08, 0x01, 0x22, 0xC8, 0x01, 1, 2, 3])))},
    # Wire type 7 does not exist.
    {"name": "invalid wire type", "frame": hexed(frame(bytes([0x0F, 0x01])))},
    # A varint field that never ends inside the message.
    {"name": "unterminated varint field", "frame": hexed(frame(bytes([0x08, 0xFF, 0xFF])))},
]
bad_body = M["Request"](id=11, method=3, body=bytes([0x0A, 0x10, 0x01]))
bad_frames = {
    "varint longer than 5 bytes": hexed(bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])),
    "frame of 16 MiB plus one byte": hexed(varint(16 * 1024 * 1024 + 1)),
}

# String fields whose bytes hold a NUL (valid proto3: Python keeps the whole text), or are not UTF-8
# (hand-encoded: Python refuses to write them). A decoder must refuse each, naming the field,
# never cut the text at the NUL.
def auth_request(hotkey="5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX", uuid="abc"):
    return M["Request"](id=12, method=3, auth=M["Auth"](hotkey=hotkey, nonce=1, uuid=uuid, signature=bytes(64)))


with_nul = [
    ("hotkey with a NUL", "auth.hotkey", auth_request(hotkey="5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX\0junk")),
    ("uuid abc NUL X", "auth.uuid", auth_request(uuid="abc\0X")),
    ("uuid abc NUL Y", "auth.uuid", auth_request(uuid="abc\0Y")),
    ("uuid of a lone NUL", "auth.uuid", auth_request(uuid="\0")),
]
invalid_strings = []
for name, field, request in with_nul:
    payload = request.SerializeToString()
    # Python reads back every byte, NUL included: the messages are valid protobuf.
    parsed = M["Request"]()
    parsed.ParseFromString(payload)
    assert parsed == request and "\0" in parsed.auth.hotkey + parsed.auth.uuid
    invalid_strings.append({"name": name, "field": field, "frame": hexed(frame(payload))})
# Request{id: 13, auth: Auth{uuid: b"ab\xff"}}: field 5 (auth), holding field 3 (uuid) of 3 bytes.
not_utf8 = bytes([0x08, 13, 0x2A, 5, 0x1A, 3, 0x61, 0x62, 0xFF])
try:
    M["Request"]().ParseFromString(not_utf8)
    raise AssertionError("Python protobuf accepted a uuid that is not UTF-8")
except Exception as error:  # Python refuses it too (DecodeError)
    assert "UTF-8" in str(error) or "utf-8" in str(error).lower() or "corrupt" in str(error).lower(), error
invalid_strings.append({"name": "uuid that is not UTF-8", "field": "auth.uuid", "frame": hexed(frame(not_utf8))})
invalid_response_strings = [
    {"name": "message with a NUL", "field": "message",
     "frame": hexed(frame(M["Response"](id=5, code=10, message="ok\0forged").SerializeToString()))},
]

responses = []


def add_response(name, response):
    responses.append({"name": name, "frame": hexed(frame(response.SerializeToString())),
                      "response": describe(response)})


add_response("success ping", M["Response"](id=1, code=1))
info = M["InfoResponse"](hotkey="hk", uid=-1, netuid=3, model="SmolLM2-135M-Instruct", architecture="llama",
                         vocab_size=49152, hidden_size=576, network_dim=1024, max_batch=64, max_seq=2048,
                         max_batch_tokens=4096, tokenizer_sha256="ab" * 32, version="0.1.0",
                         bos_id=1, eos_id=2, pad_id=2)
add_response("info", M["Response"](id=2, code=1, info=info))
info = M["InfoResponse"](hotkey="hk", model="m", architecture="gemma3", vocab_size=262144,
                         network_tokenizer="gpt2", network_tokenizer_sha256="30" * 32, network_vocab_size=50257)
add_response("info with the network tokenizer", M["Response"](id=3, code=1, info=info))
import numpy as np
probs = np.array([[0.5, 0.25], [0.75, 0.125]], dtype="<f4")
result = M["SynapseResult"](type=4, code=1, tensors=[
    M["Tensor"](buffer=probs.tobytes(), shape=[2, 2], dtype=1),
    M["Tensor"](buffer=np.array([[7, 3], [0, 49151]], dtype="<i4").tobytes(), shape=[2, 2], dtype=3),
    M["Tensor"](buffer=np.array([0.1, 0.2], dtype="<f2").tobytes(), shape=[2], dtype=6)])
failed = M["SynapseResult"](type=3, code=5, message="TEXT_SEQ_2_SEQ is not implemented")
add_response("forward with results", M["Response"](
    id=2**64 - 2, code=1, timing=M["Timing"](queue_us=12, compute_us=3456, batch_rows=8),
    forward=M["ForwardResponse"](results=[result, failed])))
add_response("error with message", M["Response"](id=5, code=10, message="batch 65 exceeds --max-batch 64"))

# Every valid request frame back to back: one read holding many frames.
stream = "".join(case["frame"] for case in requests)

OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps({
    "generator": "scripts/reference/wire_fixtures.py (Python protobuf, descriptors from Protos/axon.proto)",
    "requests": requests,
    "malformed_requests": malformed,
    "malformed_forward_body": {"frame": hexed(frame(bad_body.SerializeToString())), "request": describe(bad_body)},
    "bad_frames": bad_frames,
    "responses": responses,
    "invalid_string_requests": invalid_strings,
    "invalid_string_responses": invalid_response_strings,
    "stream": stream,
}, indent=1) + "\n")
print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")
