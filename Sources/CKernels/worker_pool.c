// A small pool of persistent threads for the decode step's many short parallel sections (a batch-1
// projection is 20–200 µs of work; a libdispatch round trip costs several µs, and a parked thread
// takes tens of µs to wake). See CKernels.h, axon_pool_*.
//
// One job at a time: the caller publishes (task, context) and then, in one 64-bit claim word, the
// job's epoch, its part count and the next unclaimed part; it then claims parts itself like any
// worker. A claim is a compare-and-swap of that word, and a worker reads the task and context only
// after its claim succeeded: the job is then unfinished (its part is not done), and the caller writes
// a job's fields only once every part of the previous one is done, so they are that job's.
//
// Workers spin on the claim word for `spin_ns` after their last part (a decode step's sections come
// every few to few tens of µs), then park on a condition variable until the next job.
#include "CKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

struct axon_pool {
    int threads;   // including the caller
    int64_t spin_ns;
    pthread_t *workers;
    _Atomic uint64_t claim;   // epoch << 40 | parts << 20 | next unclaimed part
    _Atomic(axon_pool_task) task;
    _Atomic(void *) context;
    _Atomic ptrdiff_t done;
    _Atomic int sleepers;
    _Atomic int stop;
    atomic_flag busy;   // a job is running (a second caller runs its job inline)
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

#define PART_BITS 20
#define PART_MASK ((UINT64_C(1) << PART_BITS) - 1)
#define EPOCH_OF(word) ((uint32_t)((word) >> (2 * PART_BITS)))
#define EPOCH_MASK ((UINT32_C(1) << (64 - 2 * PART_BITS)) - 1)

// Claims and runs parts of the job published under `epoch` until none is left.
static void run_parts(axon_pool *pool, uint32_t epoch) {
    uint64_t word = atomic_load_explicit(&pool->claim, memory_order_acquire);
    for (;;) {
        if (EPOCH_OF(word) != epoch) return;
        ptrdiff_t parts = (ptrdiff_t)((word >> PART_BITS) & PART_MASK), part = (ptrdiff_t)(word & PART_MASK);
        if (part >= parts) return;
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &word, word + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        axon_pool_task task = atomic_load_explicit(&pool->task, memory_order_relaxed);
        void *context = atomic_load_explicit(&pool->context, memory_order_relaxed);
        task(context, part, parts);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        word = atomic_load_explicit(&pool->claim, memory_order_acquire);
    }
}

static void *worker_main(void *argument) {
    axon_pool *pool = argument;
    uint32_t seen = EPOCH_OF(atomic_load(&pool->claim));
    while (!atomic_load_explicit(&pool->stop, memory_order_acquire)) {
        int64_t until = now_ns() + pool->spin_ns;
        uint32_t epoch = seen;
        for (int i = 0;; i++) {
            epoch = EPOCH_OF(atomic_load_explicit(&pool->claim, memory_order_acquire));
            if (epoch != seen || atomic_load_explicit(&pool->stop, memory_order_relaxed)) break;
            CPU_RELAX();
            if ((i & 63) == 63 && now_ns() > until) {
                // Park. sleepers is raised before the epoch is read again (both sequentially
                // consistent), and the caller bumps the epoch before reading sleepers: one of the two
                // sees the other, and a broadcast under the lock cannot fall between check and wait.
                pthread_mutex_lock(&pool->lock);
                atomic_fetch_add(&pool->sleepers, 1);
                while (EPOCH_OF(atomic_load(&pool->claim)) == seen && !atomic_load(&pool->stop))
                    pthread_cond_wait(&pool->wake, &pool->lock);
                atomic_fetch_sub(&pool->sleepers, 1);
                pthread_mutex_unlock(&pool->lock);
                until = now_ns() + pool->spin_ns;
            }
        }
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        seen = epoch;
        run_parts(pool, epoch);
    }
    return NULL;
}

axon_pool *axon_pool_create(int threads, int64_t spin_ns) {
    axon_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->threads = threads < 1 ? 1 : threads;
    pool->spin_ns = spin_ns < 0 ? 0 : spin_ns;
    atomic_init(&pool->claim, 0);
    atomic_init(&pool->task, NULL);
    atomic_init(&pool->context, NULL);
    atomic_init(&pool->done, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, 0);
    atomic_flag_clear(&pool->busy);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    int workers = pool->threads - 1;
    pool->workers = workers > 0 ? calloc((size_t)workers, sizeof(pthread_t)) : NULL;
    int started = 0;
    if (workers > 0 && pool->workers) {
        for (; started < workers; started++)
            if (pthread_create(&pool->workers[started], NULL, worker_main, pool) != 0) break;
    }
    pool->threads = started + 1;   // what could start (the caller alone at worst)
    return pool;
}

void axon_pool_destroy(axon_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->threads - 1; i++) pthread_join(pool->workers[i], NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int axon_pool_threads(const axon_pool *pool) { return pool ? pool->threads : 1; }

void axon_pool_run(axon_pool *pool, axon_pool_task task, void *context, ptrdiff_t parts) {
    if (parts <= 0) return;
    if (!pool || pool->threads == 1 || parts == 1 || (uint64_t)parts > PART_MASK || atomic_flag_test_and_set(&pool->busy)) {
        for (ptrdiff_t p = 0; p < parts; p++) task(context, p, parts);
        return;
    }
    atomic_store_explicit(&pool->task, task, memory_order_relaxed);
    atomic_store_explicit(&pool->context, context, memory_order_relaxed);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    uint32_t epoch = (EPOCH_OF(atomic_load(&pool->claim)) + 1) & EPOCH_MASK;
    // Releases the job's fields with the word that announces it.
    atomic_store(&pool->claim, (uint64_t)epoch << (2 * PART_BITS) | (uint64_t)parts << PART_BITS);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    run_parts(pool, epoch);
    // Parts claimed by workers may still run; a worker the OS has set aside holds up only its part.
    for (int i = 0; atomic_load_explicit(&pool->done, memory_order_acquire) < parts; i++) {
        CPU_RELAX();
        if ((i & 1023) == 1023) sched_yield();
    }
    atomic_flag_clear(&pool->busy);
}

ptrdiff_t axon_split(ptrdiff_t count, ptrdiff_t part, ptrdiff_t parts, ptrdiff_t alignment) {
    if (part >= parts) return count;
    ptrdiff_t start = (count * part / parts) / alignment * alignment;
    return start < count ? start : count;
}

// One part of a decode product: a contiguous block of outputs (axon_decode_gemm_pooled).
typedef struct {
    int isa, format, accumulate;
    const float *x;
    ptrdiff_t ldx, m;
    const void *w;
    const float *scales;
    ptrdiff_t k, n0, count;
    float *y;
    ptrdiff_t ldy, alignment;
} gemm_job;

static void gemm_part(void *context, ptrdiff_t part, ptrdiff_t parts) {
    const gemm_job *j = context;
    ptrdiff_t a = j->n0 + axon_split(j->count, part, parts, j->alignment);
    ptrdiff_t b = j->n0 + axon_split(j->count, part + 1, parts, j->alignment);
    axon_decode_gemm(j->isa, j->format, j->x, j->ldx, j->m, j->w, j->scales, j->k, a, b, j->y, j->ldy, j->accumulate);
}

void axon_decode_gemm_pooled(axon_pool *pool, ptrdiff_t parts, ptrdiff_t alignment, int isa, int format,
                             const float *x, ptrdiff_t ldx, ptrdiff_t m, const void *w, const float *scales,
                             ptrdiff_t k, ptrdiff_t n0, ptrdiff_t n1, float *y, ptrdiff_t ldy, int accumulate) {
    gemm_job job = {isa, format, accumulate, x, ldx, m, w, scales, k, n0, n1 - n0, y, ldy, alignment < 1 ? 1 : alignment};
    axon_pool_run(pool, gemm_part, &job, parts);
}
