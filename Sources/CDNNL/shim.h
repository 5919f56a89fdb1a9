// oneDNN (Debian libdnnl-dev, 2.6.3), whose CPU runtime is OpenMP (DNNL_CPU_RUNTIME ==
// DNNL_RUNTIME_OMP, GNU libgomp): oneDNN 2.x has no thread-count call of its own, so the team size
// of its parallel regions is OpenMP's nthreads-var, set with omp_set_num_threads. That variable is
// per calling thread for threads OpenMP did not create, so it is set on the thread that calls the
// GEMM (Int8Gemm does, before every call).
#include <oneapi/dnnl/dnnl.h>

// libgomp's omp.h lives in GCC's private include directory, which clang does not search.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
