// CPU passes of the rows family (rows.h): OpenMP over column blocks; per-thread partial sums
// reduced in thread order where a pass returns numbers (deterministic for a thread count).
#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "halfs.h"
#include "rows.h"

namespace mtcli {
namespace {

constexpr int64_t kBlock = 1024;
constexpr int kMaxTasks = 64;

template <DType D>
inline float load(const void* base, int64_t i) {
  if constexpr (D == DType::F32) return static_cast<const float*>(base)[i];
  else if constexpr (D == DType::BF16) return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
  else return f16_to_float(static_cast<const uint16_t*>(base)[i]);
}

template <DType D>
inline void store(void* base, int64_t i, float v) {
  if constexpr (D == DType::F32) static_cast<float*>(base)[i] = v;
  else if constexpr (D == DType::BF16) static_cast<uint16_t*>(base)[i] = float_to_bf16(v);
  else static_cast<uint16_t*>(base)[i] = float_to_f16(v);
}

int threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

template <DType D>
void graddrop_impl(const void* g, int64_t tasks, int64_t n, const double* leak, uint64_t key, void* out) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kBlock, len = std::min(kBlock, n - lo);
    double sum[kBlock], abs_sum[kBlock];
    float acc[kBlock];
    bool positive[kBlock], negative[kBlock];  // the sign the draw keeps at each column
    std::fill(sum, sum + len, 0.0);
    std::fill(abs_sum, abs_sum + len, 0.0);
    std::fill(acc, acc + len, 0.f);
    for (int64_t t = 0; t < tasks; ++t)
      for (int64_t k = 0; k < len; ++k) {
        const double x = load<D>(g, t * n + lo + k);
        sum[k] += x;
        abs_sum[k] += std::fabs(x);
      }
    for (int64_t k = 0; k < len; ++k) {
      const double purity = 0.5 * (1.0 + sum[k] / abs_sum[k]);  // NaN where every row is 0
      const double u = uniform_at(key, lo + k);
      positive[k] = purity > u;
      negative[k] = purity < u;
    }
    for (int64_t t = 0; t < tasks; ++t) {
      const float keep = static_cast<float>(leak[t]), drop = 1.f - keep;
      for (int64_t k = 0; k < len; ++k) {
        const float x = load<D>(g, t * n + lo + k);
        const bool pass = (positive[k] && x > 0.f) || (negative[k] && x < 0.f);
        acc[k] += (keep + (pass ? drop : 0.f)) * x;
      }
    }
    for (int64_t k = 0; k < len; ++k) store<D>(out, lo + k, acc[k]);
  }
}

template <DType D>
void trimmed_mean_impl(const void* g, int64_t tasks, int64_t n, int64_t trim, void* out) {
  const int64_t keep = tasks - 2 * trim;
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t k = 0; k < n; ++k) {
    float v[kMaxTasks];
    for (int64_t t = 0; t < tasks; ++t) v[t] = load<D>(g, t * n + k);
    std::sort(v, v + tasks);
    double s = 0.0;
    for (int64_t t = trim; t < trim + keep; ++t) s += v[t];
    store<D>(out, k, static_cast<float>(s / static_cast<double>(keep)));
  }
}

template <DType D>
void ema_rows_impl(const void* g, int64_t tasks, int64_t n, float* state, const int64_t* rows, double keep,
                   const double* coef) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const float a = static_cast<float>(keep);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads())
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t b = 0; b < blocks; ++b) {
      const float c = static_cast<float>((1.0 - keep) * coef[t]);
      float* __restrict s = state + rows[t] * n;
      const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      for (int64_t k = lo; k < hi; ++k) s[k] = a * s[k] + c * load<D>(g, t * n + k);
    }
}

template <DType D>
void excess_stats_impl(const void* g, int64_t tasks, int64_t n, float* state, const int64_t* rows, double* w_out) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int nthreads = threads();
  std::vector<double> partial(static_cast<size_t>(nthreads) * tasks, 0.0);
#pragma omp parallel num_threads(nthreads)
  {
    double* mine = partial.data() + static_cast<int64_t>(thread_id()) * tasks;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      for (int64_t t = 0; t < tasks; ++t) {
        float* __restrict s = state + rows[t] * n;
        double w = 0.0;
        for (int64_t k = lo; k < hi; ++k) {
          const float x = load<D>(g, t * n + k);
          const float sq = x * x;
          s[k] += sq;
          w += static_cast<double>(sq) / std::sqrt(static_cast<double>(s[k]) + 1e-7);
        }
        mine[t] += w;
      }
    }
  }
  for (int64_t t = 0; t < tasks; ++t) {
    double w = 0.0;
    for (int th = 0; th < nthreads; ++th) w += partial[static_cast<size_t>(th) * tasks + t];
    w_out[t] = w;
  }
}

}  // namespace

#define MTCLI_BY_DTYPE(dtype, fn, ...)                                  \
  switch (dtype) {                                                      \
    case DType::F32: return fn<DType::F32>(__VA_ARGS__);                \
    case DType::BF16: return fn<DType::BF16>(__VA_ARGS__);              \
    case DType::F16: return fn<DType::F16>(__VA_ARGS__);                \
  }

void graddrop_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* leak, uint64_t seed,
                  uint64_t counter, void* out) {
  MTCLI_BY_DTYPE(dtype, graddrop_impl, grads, tasks, n, leak, draw_key(seed, counter), out)
}

void trimmed_mean_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, int64_t trim, void* out) {
  MTCLI_BY_DTYPE(dtype, trimmed_mean_impl, grads, tasks, n, trim, out)
}

void ema_rows_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                  double keep, const double* coef) {
  MTCLI_BY_DTYPE(dtype, ema_rows_impl, grads, tasks, n, state, rows, keep, coef)
}

void excess_stats_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                      double* w_out) {
  MTCLI_BY_DTYPE(dtype, excess_stats_impl, grads, tasks, n, state, rows, w_out)
}

}  // namespace mtcli
