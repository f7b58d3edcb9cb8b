// Passes of the rows family: methods that read the task gradients coordinate by coordinate
// or keep per-task state the size of the gradients, each one fused read of the (T, n) buffer.
//
//   graddrop      GradDrop (Chen et al. 2020): per coordinate the sign purity
//                 P = (1 + sum_t g_t / sum_t |g_t|) / 2 against a uniform draw U; a row
//                 passes where it has the sign the draw picked; out = sum_t (l_t + (1 - l_t) M_t) g_t
//   trimmed_mean  per coordinate the mean of the T values less the `trim` largest and smallest
//   ema_rows      state[rows[t]] = keep * state[rows[t]] + (1 - keep) * coef[t] * g_t, in place
//                 (MoCo's tracked gradients, DB-MTL's gradient buffer)
//   excess_stats  state[rows[t]] += g_t^2, then w[t] = sum_k g_tk^2 / sqrt(state + 1e-7)
//                 (ExcessMTL's accumulated squared gradients and excess risks)
//
// State buffers are float32, (rows_total, n), indexed by `rows` (the step's tasks among the
// run's). GradDrop's draws come from a counter-based hash of (seed, counter, column), so
// they do not depend on threads or devices: U_k = (splitmix64(key + k) >> 40) * 2^-24 with
// key = splitmix64(seed ^ splitmix64(counter)).
#pragma once

#include <cstdint>

#include "kernel.h"

namespace mtcli {

#if defined(__CUDACC__)
#define MTCLI_HD __host__ __device__
#else
#define MTCLI_HD
#endif

MTCLI_HD inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t draw_key(uint64_t seed, uint64_t counter) { return splitmix64(seed ^ splitmix64(counter)); }
MTCLI_HD inline double uniform_at(uint64_t key, int64_t k) {
  return static_cast<double>(splitmix64(key + static_cast<uint64_t>(k)) >> 40) * (1.0 / 16777216.0);
}

void graddrop_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* leak, uint64_t seed,
                  uint64_t counter, void* out);
void trimmed_mean_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, int64_t trim, void* out);
void ema_rows_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                  double keep, const double* coef);
void excess_stats_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                      double* w_out);

#ifdef MTCLI_WITH_CUDA
void graddrop_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* leak, uint64_t seed,
                   uint64_t counter, void* out, void* stream);
void trimmed_mean_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, int64_t trim, void* out, void* stream);
void ema_rows_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                   double keep, const double* coef, void* stream);
void excess_stats_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                       double* w_out, void* stream);
#endif

}  // namespace mtcli
