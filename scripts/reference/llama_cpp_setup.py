"""llama-cpp-python set-up shared by the reference scripts and Benchmarks/engine/compare.py.

On a CPU that reports AMX, llama.cpp 0.3.36 repacks Q4_0/Q4_1/Q8_0/Q4_K/Q6_K weights for AMX tiles.
In a VM that does not enable AMX tile state for the process (the Intel Xeon these sessions met),
its first tile instruction is SIGILL (gdb: `tilezero` in tinygemm_kernel_amx<block_q8_0>). Loading
without extra buffer types keeps llama.cpp on its AVX-512 (VNNI) kernels there; other CPUs are
left as they are.
"""
import llama_cpp


def cpu_reports_amx():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_tile" in line for line in f)
    except OSError:
        return False


def avoid_amx_repacking():
    """Makes every later `llama_cpp.Llama` load without extra buffer types when the CPU reports AMX.
    Returns whether it did."""
    if not cpu_reports_amx():
        return False
    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p
    llama_cpp.llama_cpp.llama_model_default_params = params
    return True
