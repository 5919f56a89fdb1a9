import json, os, socket, struct, subprocess, axon_pb2 as pb
from google.protobuf.internal.encoder import _VarintBytes
from google.protobuf.internal.decoder import _DecodeVarint32
ids = [504, 3575, 282, 4649, 314]                          # "The capital of France is" (axon tokenize)
fwd = pb.ForwardRequest(tokens=pb.Tensor(buffer=struct.pack(f"<{len(ids)}i", *ids), shape=[1, len(ids)], dtype=pb.INT32),
                        synapses=[pb.Synapse(type=pb.TEXT_CAUSAL_LM_NEXT, topk=5)])
req = pb.Request(id=1, method=pb.FORWARD, body=fwd.SerializeToString()).SerializeToString()
s = socket.create_connection(("127.0.0.1", int(os.environ.get("AXON_PORT", 8091)))); s.sendall(_VarintBytes(len(req)) + req)
buf = b"";  n, at = 0, 0
while not buf or len(buf) < at + n: buf += s.recv(1 << 20); n, at = _DecodeVarint32(buf, 0)
response = pb.Response.FromString(buf[at:at + n])
if response.code != pb.Success: raise SystemExit(f"axon answered {pb.ReturnCode.Name(response.code)}: {response.message}")
res = response.forward.results[0]
if res.code != pb.Success: raise SystemExit(f"synapse answered {pb.ReturnCode.Name(res.code)}: {res.message}")
for p, i in zip(struct.unpack("<5f", res.tensors[0].buffer), struct.unpack("<5i", res.tensors[1].buffer)):
    text = subprocess.run([".build/release/axon", "detokenize"], input=str(i), capture_output=True, text=True).stdout
    print(f"{json.dumps(text):12} {p:.4f}  id {i}")
