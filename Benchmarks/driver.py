#!/usr/bin/env python3
"""Every Axon benchmark side by side with its anchor, interleaved in one run (see Benchmarks/run).

Each comparison alternates Axon and the anchor REPEATS times and reports the ratio of the two
figures as min/median/max over the repeats, so drift on a shared machine hits both sides alike.
Writes Benchmarks/results/<date>.json, Benchmarks/RESULTS.md and two PNG plots.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def spread(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


# ---------------------------------------------------------------- machine
def machine(args):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    blas = subprocess.run(["pkg-config", "--modversion", "openblas"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    system = json.loads(run([args.axon, "inspect", "--system", "--json"]))
    return {"cpu": cpu, "cores": os.cpu_count(), "openblas": blas, "kernel": platform.release(),
            "commit": commit + ("-dirty" if dirty else ""), "command": args.command,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""), "system": system}


BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def engine_environments(args):
    """(label, environment) pairs the engine is measured in: as given, and with OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE unset when the environment sets either; plus the fastest core this CPU supports
    when OpenBLAS's own choice is slower (0.3.21 falls back to Prescott on CPUs it does not know)."""
    given = {k: os.environ[k] for k in BLAS_VARIABLES if k in os.environ}
    unset = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    label = " ".join(f"{k}={v}" for k, v in sorted(given.items()))
    envs = [(f"as given ({label})", dict(os.environ))] if given else []
    envs.append(("OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset", unset))
    auto = json.loads(run([args.axon, "inspect", "--system", "--json"], env=unset))
    if auto["core_slower_than_cpu"] and auto.get("fastest_core"):
        envs.append((f"OPENBLAS_CORETYPE={auto['fastest_core']} (the fastest core this CPU supports)",
                     dict(unset, OPENBLAS_CORETYPE=auto["fastest_core"])))
    return envs


# ---------------------------------------------------------------- tokenizer
def bench_tokenizer(args):
    """Three rows, each Axon against its exactness reference, alternated per repeat: the default
    model's BPE against HF tokenizers, Gemma 3's SentencePiece vocabulary against llama.cpp's
    tokenize (llama-cpp-python, vocab_only), and the network's GPT-2 ranks against tiktoken's
    encode_ordinary. All one thread, cold caches, the same corpus."""
    sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
    import tokenizer_fixtures as ref  # the same HF reference the tests' fixtures come from
    tmp = tempfile.mkdtemp(prefix="axon-bench-tok-")
    corpus = os.path.join(tmp, "corpus.txt")
    run([sys.executable, os.path.join(HERE, "tokenizer", "corpus.py"), corpus])
    text = open(corpus, encoding="utf-8").read()
    size_mb = len(text.encode("utf-8")) / 1e6
    g = ref.read_gguf(args.model)
    gemma = os.path.join(ROOT, "Models", "gemma-3-270m-q4_k_m.gguf")
    ranks = os.path.join(ROOT, "Models", "gpt2.tiktoken")

    def axon_rate(*extra):
        out = run([args.axon, "tokenize", *extra, "--bench", corpus, "--bench-repeats", "1"])
        return float(re.search(r"= ([0-9.]+) MB/s", out).group(1))

    def timed(encode):
        start = time.perf_counter()
        encode()
        return size_mb / (time.perf_counter() - start)

    def hf():
        tok = ref.smollm_reference(g)
        return timed(lambda: tok.encode(text, add_special_tokens=False))

    # Gemma's row encodes one paragraph per call on both sides: in one call on the whole corpus,
    # llama.cpp's special-token partition walks its fragment list per newline match (quadratic),
    # 0.011 MB/s here, which would flatter the ratio.
    paragraphs = text.split("\n\n")
    paragraphs = [p.encode("utf-8") + b"\n\n" for p in paragraphs[:-1]] + [paragraphs[-1].encode("utf-8")]

    def llama():
        import llama_cpp
        vocab = llama_cpp.Llama(model_path=gemma, vocab_only=True, verbose=False)
        return timed(lambda: [vocab.tokenize(p, add_bos=False, special=False) for p in paragraphs])

    def tiktoken_rate():
        import tiktoken
        import tiktoken.load
        enc = tiktoken.Encoding("gpt2", pat_str=ref.GPT2_REGEX, mergeable_ranks=tiktoken.load.load_tiktoken_bpe(ranks),
                                special_tokens={"<|endoftext|>": 50256})
        return timed(lambda: enc.encode_ordinary(text))

    specs = [("SmolLM2 (byte-level BPE)", "HF tokenizers", ["--model", args.model], hf),
             ("Gemma 3 (SentencePiece), one call per paragraph", "llama.cpp", ["--model", gemma, "--bench-paragraphs"], llama),
             ("network GPT-2 (tiktoken ranks)", "tiktoken", ["--space", "network"], tiktoken_rate)]
    rows = []
    for name, anchor, extra, reference in specs:
        axon_runs, ref_runs, ratios = [], [], []
        for i in range(args.repeats):
            a = axon_rate(*extra)
            r = reference()
            axon_runs.append(a); ref_runs.append(r); ratios.append(a / r)
            log(f"tokenizer {name} {i + 1}/{args.repeats}: axon {a:.1f} MB/s, {anchor} {r:.2f} MB/s")
        rows.append({"name": name, "anchor": anchor, "axon_mb_s": spread(axon_runs), "anchor_mb_s": spread(ref_runs),
                     "ratio": spread(ratios)})
    shutil.rmtree(tmp, ignore_errors=True)
    first = rows[0]
    return {"corpus_bytes": int(size_mb * 1e6), "axon_mb_s": first["axon_mb_s"], "hf_mb_s": first["anchor_mb_s"],
            "ratio": first["ratio"], "rows": rows}


# ---------------------------------------------------------------- engine vs llama.cpp
ENGINE_MODELS = {"smollm2": ("SmolLM2-135M-Instruct Q4_1", None),
                 "gemma3": ("Gemma 3 270M Q4_K_M", os.path.join(ROOT, "Models", "gemma-3-270m-q4_k_m.gguf"))}


def bench_engine(args):
    """Prefill of each model (`--models`) at each shape, beside llama.cpp on the same GGUF, with the
    useful GFLOP/s over the sgemm roofline of that model's projection shapes (same process)."""
    sys.path.insert(0, os.path.join(HERE, "engine"))
    import compare  # Benchmarks/engine/compare.py: one fresh process per measurement, both sides
    if args.shapes:
        shapes = args.shapes.split(",")
    else:
        shapes = ["1x128", "8x128"] if args.quick else ["1x128", "8x128", "1x512", "4x512"]
    # f32 in every OpenBLAS environment; int8 (oneDNN, whose GEMM OpenBLAS's variables do not touch) in the
    # first one only. Each is asked for explicitly: axon's own default depends on the CPU.
    blas = engine_environments(args)
    envs = []
    for precision in args.precisions.split(","):
        for label, env in (blas if precision == "f32" else blas[:1]):
            envs.append((f"{precision}, {label}", env, precision))
    rows = []
    for key in args.models.split(","):
        name, path = ENGINE_MODELS[key]
        model = path or args.model
        for mode in args.logits.split(","):
            for shape in shapes:
                # One llama.cpp figure per repeat, and the engine in each environment right beside it.
                llama_runs, axon_runs, reports = [], {label: [] for label, _, _ in envs}, {}
                for i in range(args.repeats):
                    l = compare.llama_bench(sys.executable, model, args.threads, shape, mode, 2)
                    llama_runs.append(l)
                    for label, env, precision in envs:
                        a, reports[label] = compare.axon_bench(args.axon, model, args.threads, shape, mode, 2, env=env,
                                                               roofline=True, precision=precision)
                        axon_runs[label].append(a)
                        log(f"engine {name} {shape} logits={mode} {i + 1}/{args.repeats} [{label}]: "
                            f"axon {a:.0f} tok/s, llama.cpp {l:.0f} tok/s")
                for label, _, precision in envs:
                    report = reports[label]
                    result = report["results"][0]
                    rows.append({"model": name, "shape": shape, "logits": mode, "environment": label, "precision": precision,
                                 "int8_gemm_gops": result.get("int8_gemm_gops"), "int8_gemm_fraction": result.get("int8_gemm_fraction"),
                                 "machine": report["machine"]["line"], "openblas_core": report["machine"]["openblas_core"],
                                 "f32_gemm": report.get("f32_gemm"),
                                 "axon_tokens_per_s": spread(axon_runs[label]), "llama_tokens_per_s": spread(llama_runs),
                                 "ratio": spread([a / l for a, l in zip(axon_runs[label], llama_runs)]),
                                 "useful_gflops": result.get("useful_gflops"),
                                 "sgemm_roofline_gflops": result.get("sgemm_roofline_gflops"),
                                 "roofline_fraction": result.get("roofline_fraction"),
                                 "load_seconds": report.get("load_seconds"), "peak_rss_mb": report.get("peak_rss_mb")})
    import llama_cpp
    return {"threads": args.threads, "llama_cpp_python": llama_cpp.__version__, "environments": [e[0] for e in envs],
            "results": rows}


# ---------------------------------------------------------------- server under concurrency
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_server(args):
    port = free_port()
    endpoint = f"127.0.0.1:{port}"
    server = subprocess.Popen([args.axon, "serve", "--model", args.model, "--port", str(port),
                               "--threads", str(args.threads), "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if subprocess.run([args.axon, "query", "--endpoint", endpoint, "--ping"], capture_output=True).returncode == 0:
                break
            if server.poll() is not None:
                raise RuntimeError("axon serve exited: " + server.stderr.read())
            time.sleep(0.1)
        levels = [1, 2, 8] if args.quick else [1, 2, 4, 8, 16, 32]
        rows = []
        for c in levels:
            requests = max(2, 32 // c)  # at least 32 answers per level for the percentiles
            out = run([args.axon, "loadgen", "--endpoint", endpoint, "--connections", str(c), "--requests", str(requests),
                       "--warmup", "1", "--shape", "1x128", "--synapse", "next"])
            line = next(l for l in out.splitlines() if l.startswith("RESULT "))
            r = json.loads(line[len("RESULT "):])
            r["connections"] = c
            rows.append(r)
            log(f"server {c} connections: {r['tokens_per_second']:.0f} tok/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms")
        with open(f"/proc/{server.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
        return {"shape": "1x128", "synapse": "next", "levels": rows, "server_peak_rss_mb": hwm / 1024}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


# ---------------------------------------------------------------- load time
def bench_load(args):
    times = []
    for _ in range(args.repeats):
        report = json.loads(run([args.axon, "inspect", "--model", args.model, "--json", "--time-dequantize"]))
        times.append(report["load_seconds"] + report["dequantize_seconds"])
    return {"load_and_dequantize_seconds": spread(times)}


# ---------------------------------------------------------------- network token space (issue 12)
NETWORK_MODELS = {"smollm2": "smollm2-135m", "gemma3": "gemma3-270m"}


def bench_network(args):
    """Benchmarks/network/run: translation quality (healed and naive loss_val over the model's own
    next-token loss, per model, SAMPLE windows) and cost (network-space TEXT_CAUSAL_LM_NEXT 32x256
    against model space on the same texts, PAIRS alternating requests). Its RESULT lines are JSON:
    one {"model", "quality"} per model, then loadgen's versus_model_space line."""
    models = [NETWORK_MODELS[m] for m in args.models.split(",")]
    sample = args.network_sample or (50 if args.quick else 500)
    pairs = args.network_pairs or (1 if args.quick else 3)
    env = dict(os.environ, SAMPLE=str(sample), PAIRS=str(pairs), MODELS=" ".join(models))
    log(f"network: {sample} windows per model ({', '.join(models)}), cost over {pairs} request pairs")
    out = run([os.path.join(HERE, "network", "run")], env=env, cwd=ROOT)
    quality, cost = [], None
    for line in out.splitlines():
        if line.startswith("SUMMARY "):
            log("network " + line[len("SUMMARY "):])
        if not line.startswith("RESULT "):
            continue
        r = json.loads(line[len("RESULT "):])
        if "quality" in r:
            quality.append({"model": r["model"], **r["quality"]})
        elif r.get("mode") == "versus_model_space":
            cost = r
    return {"sample": sample, "pairs": pairs, "quality": quality, "cost": cost,
            "load_average_at_start": next((l.split(":", 1)[1].strip() for l in out.splitlines()
                                           if l.startswith("load average at start")), "")}


# ---------------------------------------------------------------- decode (issue 13)
def bench_decode(args):
    """Benchmarks/decode/compare.py's interleaved rounds for each model (`--models`): llama.cpp's greedy
    batch-1 decode beside `axon bench --decode` at 1 and 16 concurrent requests over the wire, the same
    GGUF, prompt, generation length and threads. Rows: batch-1 tok/s against llama.cpp's (bar ≥ 1.0×),
    the 16 requests' aggregate against llama.cpp's batch 1 (bar ≥ 4×), and the time to first token of a
    prompt arriving while 15 others decode against an idle server's (bar ≤ 1.5×)."""
    import importlib.util
    # Loaded by path under its own name: `compare` is already Benchmarks/engine/compare.py.
    spec = importlib.util.spec_from_file_location("decode_compare", os.path.join(HERE, "decode", "compare.py"))
    decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decode)
    generate = args.decode_generate or (32 if args.quick else 128)
    levels = [1, 16]
    rows = []
    for key in args.models.split(","):
        name, path = ENGINE_MODELS[key]
        model = path or args.model
        rounds = decode.interleaved_rounds(args.axon, model, args.threads, args.decode_prompt, generate, levels, args.repeats, [],
                                           log=lambda line, name=name: log(f"decode {name} {line}"))
        f = decode.per_round(rounds, levels)
        idle, loaded = f["levels"][1], f["levels"][16]
        rows.append({"model": name, "llama_tokens_per_s": spread(f["llama_tokens_per_s"]),
                     "llama_ttft_ms": spread(f["llama_ttft_ms"]),
                     "batch1_tokens_per_s": spread(idle["axon_tokens_per_s"]),
                     "batch1_ratio": spread(idle["ratio_to_llama_batch1"]),
                     "concurrent16_tokens_per_s": spread(loaded["axon_tokens_per_s"]),
                     "concurrent16_ratio": spread(loaded["ratio_to_llama_batch1"]),
                     "ttft_idle_ms": spread(idle["ttft_ms"]), "ttft_loaded_ms": spread(loaded["ttft_ms"]),
                     "ttft_ratio": spread(loaded["ttft_over_idle"])})
    import llama_cpp
    return {"threads": args.threads, "prompt": args.decode_prompt, "generate": generate,
            "llama_cpp_python": llama_cpp.__version__, "results": rows}


SECTIONS = {"tokenizer": bench_tokenizer, "engine": bench_engine, "decode": bench_decode, "server": bench_server,
            "load": bench_load, "network": bench_network}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--axon", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--command", default="Benchmarks/run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))
    p.add_argument("--quick", action="store_true", help="fewer repeats and shapes (smoke test)")
    p.add_argument("--shapes", help="engine shapes, comma-separated BATCHxSEQ (default: 1x128,8x128,1x512,4x512)")
    p.add_argument("--logits", default="last,all", help="engine logits modes, comma-separated (default: last,all)")
    p.add_argument("--precisions", default="f32,int8",
                   help="engine precisions, comma-separated (default: f32,int8; int8 in the first OpenBLAS environment only)")
    p.add_argument("--models", default="smollm2,gemma3",
                   help="engine and decode models, comma-separated: " + ",".join(ENGINE_MODELS) + " (default: both)")
    p.add_argument("--decode-prompt", type=int, default=128, help="decode section: prompt tokens per request (default 128)")
    p.add_argument("--decode-generate", type=int, help="decode section: tokens generated per request (default 128; 32 with --quick)")
    p.add_argument("--skip", help="comma-separated sections not to run (e.g. network: several minutes per model)")
    p.add_argument("--network-sample", type=int, help="network section: windows per model (default 500; 50 with --quick)")
    p.add_argument("--network-pairs", type=int, help="network section: cost request pairs (default 3; 1 with --quick)")
    args = p.parse_args()
    if args.quick:
        args.repeats = 1
    wanted = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [n for n in wanted + (args.skip.split(",") if args.skip else []) if n not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    if args.skip:
        wanted = [n for n in wanted if n not in args.skip.split(",")]
    result = {"machine": machine(args)}
    began = time.monotonic()
    for index, name in enumerate(wanted, 1):
        # Each section then logs one line per measurement, so a long run always shows where it is.
        log(f"== section {index}/{len(wanted)}: {name} (at {time.monotonic() - began:.0f} s)")
        result[name] = SECTIONS[name](args)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    path = os.path.join(HERE, "results", f"{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    log(f"wrote {path}")
    import report
    report.write(result, HERE)


if __name__ == "__main__":
    main()
