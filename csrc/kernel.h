// Fused passes over a contiguous (T, n) buffer of flattened task gradients.
//
// Every Gram-based multitask weighting (PCGrad, MGDA, CAGrad, Nash-MTL, UPGrad, ...)
// combines the task gradients as sum_k w_k g_k with weights that depend only on the
// T x T Gram matrix. So each is two passes over memory and a little host arithmetic
// (in Python, mtcli/weightings/) in between:
//   pass 1  gram():    all T(T+1)/2 dot products in one read of the buffer
//   pass 2  combine(): out[k] = sum_t w[t] * g[t][k], one read of the buffer, one write of n
// No torch here: callers pass raw pointers, sizes and a dtype.
#pragma once

#include <cstdint>

namespace mtcli {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2 };

// gram_out: T*T doubles, row-major, symmetric. Accumulates in fp64.
void gram_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, double* gram_out);

// out may alias any memory except the buffer itself; it has the buffer's dtype.
void combine_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* weights, void* out);

int cpu_threads();

}  // namespace mtcli

#ifdef MTCLI_WITH_CUDA
namespace mtcli {
// CUDA passes on the stream `stream` (a cudaStream_t); T <= cuda_max_tasks().
// gram_cuda blocks until the Gram matrix is on the host (the only synchronisation).
void gram_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, double* gram_out, void* stream);
void combine_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* weights, void* out, void* stream);
int cuda_max_tasks();
}  // namespace mtcli
#endif
