import json, os, socket, struct, tiktoken, axon_pb2 as pb
from tiktoken.load import load_tiktoken_bpe
from google.protobuf.internal.encoder import _VarintBytes
from google.protobuf.internal.decoder import _DecodeVarint32
# The network's standard tokenizer, GPT-2: the ranks of `Models/fetch gpt2` (their sha256 is INFO's network_tokenizer_sha256).
gpt2 = tiktoken.Encoding("gpt2", pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                         mergeable_ranks=load_tiktoken_bpe("Models/gpt2.tiktoken"), special_tokens={"<|endoftext|>": 50256})
ids = gpt2.encode("The capital of France is")               # standard ids, whatever model the axon runs
fwd = pb.ForwardRequest(tokens=pb.Tensor(buffer=struct.pack(f"<{len(ids)}i", *ids), shape=[1, len(ids)], dtype=pb.INT32),
                        synapses=[pb.Synapse(type=pb.TEXT_CAUSAL_LM_NEXT, topk=5)], space=pb.NETWORK)
req = pb.Request(id=1, method=pb.FORWARD, body=fwd.SerializeToString()).SerializeToString()
s = socket.create_connection(("127.0.0.1", int(os.environ.get("AXON_PORT", 8091)))); s.sendall(_VarintBytes(len(req)) + req)
buf = b"";  n, at = 0, 0
while not buf or len(buf) < at + n: buf += s.recv(1 << 20); n, at = _DecodeVarint32(buf, 0)
response = pb.Response.FromString(buf[at:at + n])
if response.code != pb.Success: raise SystemExit(f"axon answered {pb.ReturnCode.Name(response.code)}: {response.message}")
res = response.forward.results[0]
if res.code != pb.Success: raise SystemExit(f"synapse answered {pb.ReturnCode.Name(res.code)}: {res.message}")
probabilities, phrases, floor = res.tensors                  # [1, k], [1, k, L] padded with -1, [1]
k, width = phrases.shape[1], phrases.shape[2]
flat = struct.unpack(f"<{k * width}i", phrases.buffer)
for c, p in enumerate(struct.unpack(f"<{k}f", probabilities.buffer)):
    phrase = [t for t in flat[c * width:(c + 1) * width] if t != -1]
    print(f"{json.dumps(gpt2.decode(phrase)):12} {p:.4f}  phrase {phrase}")
print(f"floor {struct.unpack('<f', floor.buffer)[0]:.3e}")
