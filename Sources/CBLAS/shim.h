#include <cblas.h>
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/// 1 when the kernel lets processes use AMX tile data (XTILEDATA, bit 18, in arch_prctl's
/// ARCH_GET_XCOMP_SUPP), 0 when it does not: CPUID and /proc/cpuinfo may still list amx_tile (a VM
/// or kernel that does not enable its state), and tile instructions then raise SIGILL. -1 elsewhere.
static inline int axon_amx_state_supported(void) {
#if defined(__linux__) && defined(__x86_64__)
    unsigned long features = 0;
    if (syscall(SYS_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_SUPP */, &features) != 0) return 0;
    return (int)((features >> 18) & 1);
#else
    return -1;
#endif
}
