"""Writes Benchmarks/RESULTS.md and the two plots from one driver result (see driver.py)."""
import os


def fmt(s, digits=1):
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def plots(result, here):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    engine = result.get("engine")
    if engine:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        envs = environments(engine)
        first = [r for r in engine["results"] if r.get("environment") == envs[0]]
        labels = [f"{r.get('model', 'SmolLM2').split()[0]}\n{r['shape']}\n{r['logits']}" for r in first]
        x = range(len(first))
        width = 0.8 / (len(envs) + 1)
        for j, env in enumerate(envs):
            rows = [r for r in engine["results"] if r.get("environment") == env]
            core = rows[0].get("openblas_core", "") if rows else ""
            ax.bar([i - 0.4 + width * (j + 0.5) for i in x], [r["axon_tokens_per_s"]["median"] for r in rows], width,
                   label=(f"Axon {rows[0].get('precision', '')}, OpenBLAS {core}" if core else "Axon") if rows else "Axon")
        ax.bar([i + 0.4 - width / 2 for i in x], [r["llama_tokens_per_s"]["median"] for r in first], width, label="llama.cpp")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("prefill tokens/s (median)")
        ax.set_title(f"Prefill, {engine['threads']} threads: Axon vs llama.cpp (llama-cpp-python {engine['llama_cpp_python']})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(here, "engine.png"), dpi=100)
        written.append("engine.png")
    server = result.get("server")
    if server:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        levels = server["levels"]
        c = [r["connections"] for r in levels]
        for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")):
            ax.plot(c, [r[key] for r in levels], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(c, [str(v) for v in c])
        ax.set_xlabel("concurrent clients (1x128 next-token requests)")
        ax.set_ylabel("latency, ms")
        ax2 = ax.twinx()
        ax2.plot(c, [r["tokens_per_second"] for r in levels], color="grey", linestyle="--", marker="s", label="tokens/s")
        ax2.set_ylabel("throughput, tokens/s")
        ax.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        ax.legend(loc="upper left")
        ax2.legend(loc="lower right")
        ax.set_title("Server latency and throughput against concurrency")
        fig.tight_layout()
        fig.savefig(os.path.join(here, "server.png"), dpi=100)
        written.append("server.png")
    return written


def environments(engine):
    """The environment labels of the engine figures, in run order (older results have none)."""
    return engine.get("environments") or [None]


def write(result, here):
    m = result["machine"]
    lines = ["# Benchmark results", "",
             "Written by `Benchmarks/run` (do not edit by hand). Every comparison is interleaved in one run;",
             "figures are median (min–max) over the repeats, and ratios are taken per repeat.", "",
             f"- commit: `{m['commit']}`, {m['date']}",
             f"- machine: {m['system']['line'] if 'system' in m else m['cpu']}; Linux {m['kernel']}",
             f"- command: `{m['command']}`", ""]
    tok = result.get("tokenizer")
    if tok:
        lines += ["## Tokenizer: encode MB/s, one thread, English prose",
                  "",
                  f"Corpus: {tok['corpus_bytes']:,} bytes (Python's documentation topics and docstrings, Benchmarks/tokenizer/corpus.py).",
                  "",
                  "| vocabulary | Axon MB/s | anchor | anchor MB/s | ratio |", "|---|---|---|---|---|"]
        rows = tok.get("rows") or [{"name": "SmolLM2 (byte-level BPE)", "anchor": "HF tokenizers", "axon_mb_s": tok["axon_mb_s"],
                                    "anchor_mb_s": tok["hf_mb_s"], "ratio": tok["ratio"]}]
        for r in rows:
            lines.append(f"| {r['name']} | {fmt(r['axon_mb_s'])} | {r['anchor']} | {fmt(r['anchor_mb_s'], 2)} | {fmt(r['ratio'])}× |")
        lines.append("")
    eng = result.get("engine")
    if eng:
        lines += [f"## Engine: prefill tokens/s, {eng['threads']} threads, against llama.cpp (llama-cpp-python {eng['llama_cpp_python']})", ""]
        envs = environments(eng)
        if len(envs) > 1:
            lines += ["The engine is measured in each OpenBLAS environment below, beside the same llama.cpp runs "
                      "(llama.cpp does not use OpenBLAS).", ""]
        if any(r.get("roofline_fraction") for r in eng["results"]):
            lines += ["Roofline: the forward pass's useful GFLOP/s (projections, attention, head) over the sgemm GFLOP/s "
                      "of the f32 library in use (OpenBLAS, or oneDNN's dnnl_sgemm where OpenBLAS runs an older kernel "
                      "core than the CPU supports: each table names it) on that model's own projection shapes, timed "
                      "in the same process; for int8 rows, over oneDNN dnnl_gemm_u8s8s32's GOP/s on the same shapes.", ""]
        for env in envs:
            rows = [r for r in eng["results"] if r.get("environment") == env]
            if env:
                gemm = {"openblas": "OpenBLAS", "onednn": "oneDNN"}.get(rows[0].get("f32_gemm"), "") if rows else ""
                machine_line = f"Machine: {rows[0]['machine']}" if rows and rows[0].get("machine") else ""
                if machine_line and gemm:
                    machine_line += f"; f32 products on {gemm} sgemm"
                lines += [f"### {env}", "", machine_line, ""]
            lines += ["| model | shape | logits | Axon tok/s | llama.cpp tok/s | ratio | useful GFLOP/s | of sgemm roofline |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in rows:
                if r.get("int8_gemm_fraction"):
                    # int8: useful GOP/s over dnnl_gemm_u8s8s32's own GOP/s on the same shapes.
                    roof = (f"{r['useful_gflops']:.0f} | {100 * r['int8_gemm_fraction']:.0f}% of dnnl_gemm_u8s8s32's "
                            f"{r['int8_gemm_gops']:.0f} GOP/s")
                else:
                    roof = (f"{r['useful_gflops']:.0f} | {100 * r['roofline_fraction']:.0f}% of {r['sgemm_roofline_gflops']:.0f}"
                            if r.get("roofline_fraction") else " | ")
                lines.append(f"| {r.get('model', 'SmolLM2-135M-Instruct Q4_1')} | {r['shape']} | {r['logits']} | "
                             f"{fmt(r['axon_tokens_per_s'], 0)} | {fmt(r['llama_tokens_per_s'], 0)} | {fmt(r['ratio'], 2)}× | {roof} |")
            lines.append("")
        big = [r for r in eng["results"] if r["shape"] == "4x512" and r.get("peak_rss_mb") and r.get("environment") == envs[0]]
        for r in big:
            lines.append(f"\nAxon {r.get('model', '')} at 4x512, logits {r['logits']}: peak RSS {r['peak_rss_mb']:.0f} MB, "
                         f"load {r['load_seconds']:.2f} s.")
        for r in eng["results"]:
            if r["shape"] == "4x512" and r.get("peak_rss_mb") and r.get("precision") == "int8":
                lines.append(f"\nAxon {r.get('model', '')} at 4x512 int8, logits {r['logits']}: peak RSS {r['peak_rss_mb']:.0f} MB, "
                             f"load {r['load_seconds']:.2f} s (calibration included).")
        lines += ["", "![prefill](engine.png)", ""]
    dec = result.get("decode")
    if dec:
        lines += [f"## Decode (TEXT_SEQ_2_SEQ): greedy, prompt {dec['prompt']}, generate {dec['generate']}, {dec['threads']} threads, "
                  f"against llama.cpp (llama-cpp-python {dec['llama_cpp_python']})", "",
                  "Benchmarks/decode/compare.py's rounds: llama.cpp's batch-1 greedy decode on the same GGUF beside "
                  "`axon bench --decode` (an in-process server over loopback, its default `--decode-precision`), interleaved "
                  "per repeat; ratios per repeat. Bars (issue 13): batch 1 ≥ 1.0×, 16 concurrent ≥ 4× llama.cpp's batch 1, "
                  "time to first token with 15 decoding ≤ 1.5× idle.", "",
                  "| model | row | Axon | llama.cpp | ratio | bar |", "|---|---|---|---|---|---|"]
        for r in dec["results"]:
            lines += [f"| {r['model']} | batch-1 decode tok/s | {fmt(r['batch1_tokens_per_s'])} | {fmt(r['llama_tokens_per_s'])} | "
                      f"{fmt(r['batch1_ratio'], 2)}× | ≥ 1.0× |",
                      f"| {r['model']} | 16 concurrent, aggregate tok/s | {fmt(r['concurrent16_tokens_per_s'])} | "
                      f"{fmt(r['llama_tokens_per_s'])} (batch 1) | {fmt(r['concurrent16_ratio'], 2)}× | ≥ 4× |",
                      f"| {r['model']} | time to first token, ms: with 15 decoding / idle | {fmt(r['ttft_loaded_ms'])} / "
                      f"{fmt(r['ttft_idle_ms'])} | {fmt(r['llama_ttft_ms'])} (idle) | {fmt(r['ttft_ratio'], 2)}× | ≤ 1.5× |"]
        lines.append("")
    load = result.get("load")
    if load:
        lines += ["## Model load", "", f"mmap + dequantize every tensor to f32: {fmt(load['load_and_dequantize_seconds'], 2)} s", ""]
    srv = result.get("server")
    if srv:
        lines += ["## Server: 1x128 next-token requests against concurrency", "",
                  "| clients | responses | tokens/s | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|---|---|"]
        for r in srv["levels"]:
            lines.append(f"| {r['connections']} | {r.get('responses', '')} | {r['tokens_per_second']:.0f} | "
                         f"{r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['p99_ms']:.0f} |")
        lines += ["", f"Server peak RSS over the run: {srv['server_peak_rss_mb']:.0f} MB.", "", "![server](server.png)", ""]
    net = result.get("network")
    if net:
        lines += ["## Network token space (issue 12)", "",
                  f"Benchmarks/network/run; load average at its start {net.get('load_average_at_start', '')}.", "",
                  f"### Translation quality: TEXT_CAUSAL_LM_NEXT top-k 4096, {net['sample']} random windows of held-out prose",
                  "",
                  "Mean loss_val in network space over the model's own next-token loss in model space at the same prefixes, "
                  "where the prefix's model tokens are a prefix of the whole text's. Bar 1.10×, moonshot 1.03×; naive: "
                  "each candidate's text in isolation, no boundary handling.", "",
                  "| model | compared / windows | model loss (nats) | healed loss_val | healed ratio | naive loss_val | naive ratio |",
                  "|---|---|---|---|---|---|---|"]
        for q in net["quality"]:
            lines.append(f"| {q['model']} | {q['compared']} / {q['windows']} | {q['model_loss']:.4f} | {q['network_loss']:.4f} | "
                         f"{q['ratio']:.3f}× | {q['naive_loss']:.4f} | {q['naive_ratio']:.3f}× |")
        lines.append("")
        c = net.get("cost")
        if c:
            lines += [f"### Cost: TEXT_CAUSAL_LM_NEXT {c['rows']}×{c['seq']} standard tokens, top-k 4096, SmolLM2", "",
                      "Network space against model space on the same texts, requests alternating (target ≥ 0.9×).", "",
                      "| pairs | model tokens per request | network std tokens/s | model space tokens/s | ratio | p50 ms network / model |",
                      "|---|---|---|---|---|---|",
                      f"| {c['pairs']} | {c['model_tokens_per_request']} | {c['network_tokens_per_second']:.0f} | "
                      f"{c['model_space_tokens_per_second']:.0f} | {c['ratio']:.3f}× | {c['network_p50_ms']:.0f} / {c['model_space_p50_ms']:.0f} |",
                      ""]
    lines += standalone_results(here)
    plots(result, here)
    with open(os.path.join(here, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def standalone_results(here):
    """The figures of the benchmark scripts Benchmarks/run does not drive (each too long or too
    specialised for it: the mixture with real miners, replicas behind HAProxy, int8 side by side),
    kept in Benchmarks/<name>/RESULTS.md with their own command, commit and machine line and copied
    here, so a new run never drops them."""
    lines = []
    for name in sorted(os.listdir(here)):
        path = os.path.join(here, name, "RESULTS.md")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                # One heading level down: they sit under this section's heading.
                text = "\n".join("#" + l if l.startswith("#") else l for l in f.read().rstrip().split("\n"))
                lines += [text, "", f"(From Benchmarks/{name}/RESULTS.md.)", ""]
    if lines:
        lines = ["## Other benchmark scripts, each run on its own (their commands, commits and machines are their own)", ""] + lines
    return lines
