// CPU passes: OpenMP over column blocks, per-thread partial sums, vectorisable inner loops.
#include "kernel.h"
#include "halfs.h"

#include <algorithm>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace mtcli {
namespace {

// Columns per block: T rows of a block stay in L1/L2 while every pair is formed.
constexpr int64_t kBlock = 1024;
constexpr int kMaxTasks = 64;
// Outputs larger than this bypass the cache on the way out (no read-for-ownership).
constexpr int64_t kStreamingBytes = int64_t{8} << 20;

#if defined(__GNUC__)
typedef float f32x8 __attribute__((vector_size(32)));

// Columns whose fp32 partial sums are carried over to fp64: each lane sums 32 products,
// so a partial carries ~1e-7 relative rounding and the fp64 total over n stays far inside
// the 1e-5 the weightings are tested to. fp32 products do half the work of fp64 ones.
constexpr int64_t kChunk = 256;

typedef float f32x4h __attribute__((vector_size(16)));
typedef double f64x4h __attribute__((vector_size(32)));

// The 8 lanes' sum in fp64: two 4-lane widenings, one vector add, then 4 scalars.
inline double lanes_sum(f32x8 v) {
  const f32x4h lo = __builtin_shufflevector(v, v, 0, 1, 2, 3), hi = __builtin_shufflevector(v, v, 4, 5, 6, 7);
  const f64x4h s = __builtin_convertvector(lo, f64x4h) + __builtin_convertvector(hi, f64x4h);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// Index of pair (i, i) in row-major upper-triangle order.
constexpr int diagonal(int nt, int i) { return i * nt - i * (i - 1) / 2; }

// Row I against rows I..NT-1 over columns [lo, hi): NT - I fp32 accumulators, all indices
// known at compile time, so they live in registers. (The last row, when T is odd.)
template <int NT, int I>
inline void gram_row(const float* const* rows, int64_t lo, int64_t hi, double* total) {
  constexpr int M = NT - I;
  f32x8 sum[M] = {};
  for (int64_t k = lo; k < hi; k += 8) {
    f32x8 xi;
    std::memcpy(&xi, rows[I] + k, sizeof xi);
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      f32x8 xj;
      std::memcpy(&xj, rows[I + m] + k, sizeof xj);
      sum[m] += xi * xj;
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) total[diagonal(NT, I) + m] += lanes_sum(sum[m]);
}

// Rows I and I+1 against rows I..NT-1 together: each column of rows I+2.. is loaded once
// for two products, which halves the loads of the one-row version (the loads, not the
// multiply-adds, bounded it at T = 8). 2(NT-I)-1 accumulators in registers.
template <int NT, int I>
inline void gram_rows(const float* const* rows, int64_t lo, int64_t hi, double* total) {
  if constexpr (I + 1 == NT) {
    gram_row<NT, I>(rows, lo, hi, total);
  } else {
    constexpr int M = NT - I;
    f32x8 a[M] = {}, b[M - 1] = {};  // a[m]: row I . row I+m; b[m]: row I+1 . row I+1+m
    for (int64_t k = lo; k < hi; k += 8) {
      f32x8 x0, x1;
      std::memcpy(&x0, rows[I] + k, sizeof x0);
      std::memcpy(&x1, rows[I + 1] + k, sizeof x1);
      a[0] += x0 * x0;
      a[1] += x0 * x1;
      b[0] += x1 * x1;
#pragma GCC unroll 8
      for (int m = 2; m < M; ++m) {
        f32x8 xj;
        std::memcpy(&xj, rows[I + m] + k, sizeof xj);
        a[m] += x0 * xj;
        b[m - 1] += x1 * xj;
      }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) total[diagonal(NT, I) + m] += lanes_sum(a[m]);
#pragma GCC unroll 8
    for (int m = 0; m < M - 1; ++m) total[diagonal(NT, I + 1) + m] += lanes_sum(b[m]);
    if constexpr (I + 2 < NT) gram_rows<NT, I + 2>(rows, lo, hi, total);
  }
}

// All T(T+1)/2 dot products of T rows over one block, with T fixed at compile time. Per
// chunk (its rows in L1), rows meet the rows after them two at a time; each chunk's sums
// go to fp64.
template <int NT>
void gram_block(const float* const* rows, int64_t len, double* acc) {
  constexpr int P = NT * (NT + 1) / 2;
  double total[P] = {};
  const int64_t whole = len - len % 8;
  for (int64_t lo = 0; lo < whole; lo += kChunk) gram_rows<NT, 0>(rows, lo, std::min(lo + kChunk, whole), total);
  int p = 0;
  for (int i = 0; i < NT; ++i)
    for (int j = i; j < NT; ++j, ++p) {
      for (int64_t r = whole; r < len; ++r) total[p] += static_cast<double>(rows[i][r]) * static_cast<double>(rows[j][r]);
      acc[p] += total[p];
    }
}
#endif

// Any T: one pair at a time.
void gram_block_any(const float* const* rows, int64_t tasks, int64_t len, double* acc) {
  int64_t p = 0;
  for (int64_t i = 0; i < tasks; ++i) {
    const float* __restrict gi = rows[i];
    for (int64_t j = i; j < tasks; ++j, ++p) {
      const float* __restrict gj = rows[j];
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < len; ++k) s += static_cast<double>(gi[k]) * static_cast<double>(gj[k]);
      acc[p] += s;
    }
  }
}

void gram_block_dispatch(const float* const* rows, int64_t tasks, int64_t len, double* acc) {
#if defined(__GNUC__)
  switch (tasks) {
    case 1: return gram_block<1>(rows, len, acc);
    case 2: return gram_block<2>(rows, len, acc);
    case 3: return gram_block<3>(rows, len, acc);
    case 4: return gram_block<4>(rows, len, acc);
    case 5: return gram_block<5>(rows, len, acc);
    case 6: return gram_block<6>(rows, len, acc);
    case 7: return gram_block<7>(rows, len, acc);
    case 8: return gram_block<8>(rows, len, acc);
    default: break;
  }
#endif
  gram_block_any(rows, tasks, len, acc);
}

// Copy a finished block of floats out; large outputs use streaming stores.
inline void store_block(float* dst, const float* src, int64_t len, bool streaming) {
#if defined(__AVX__)
  if (streaming && (reinterpret_cast<uintptr_t>(dst) % 32) == 0) {
    int64_t k = 0;
    for (; k + 8 <= len; k += 8) _mm256_stream_ps(dst + k, _mm256_load_ps(src + k));
    for (; k < len; ++k) dst[k] = src[k];
    return;
  }
#endif
  (void)streaming;
  std::memcpy(dst, src, static_cast<size_t>(len) * sizeof(float));
}

// Rows of one column block as float pointers: fp32 rows are used in place, half
// rows are widened into the thread's scratch block.
template <DType D>
inline void load_block(const void* grads, int64_t tasks, int64_t n, int64_t lo, int64_t len, float* scratch,
                       const float** rows) {
  for (int64_t t = 0; t < tasks; ++t) {
    if constexpr (D == DType::F32) {
      rows[t] = static_cast<const float*>(grads) + t * n + lo;
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(grads) + t * n + lo;
      float* dst = scratch + t * kBlock;
      for (int64_t k = 0; k < len; ++k) dst[k] = D == DType::BF16 ? bf16_to_float(src[k]) : f16_to_float(src[k]);
      rows[t] = dst;
    }
  }
}

template <DType D>
void gram_impl(const void* grads, int64_t tasks, int64_t n, double* gram_out) {
  const int64_t pairs = tasks * (tasks + 1) / 2;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int threads = cpu_threads();
  std::vector<double> partial(static_cast<size_t>(threads) * pairs, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    double* acc = partial.data() + static_cast<int64_t>(tid) * pairs;
    std::vector<float> scratch(D == DType::F32 ? 0 : static_cast<size_t>(tasks) * kBlock);
    const float* rows[kMaxTasks];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * kBlock, len = std::min(kBlock, n - lo);
      load_block<D>(grads, tasks, n, lo, len, scratch.data(), rows);
      gram_block_dispatch(rows, tasks, len, acc);
    }
  }
  // Sum the per-thread partials in thread order: deterministic for a fixed thread count.
  std::vector<double> total(pairs, 0.0);
  for (int t = 0; t < threads; ++t)
    for (int64_t p = 0; p < pairs; ++p) total[p] += partial[static_cast<size_t>(t) * pairs + p];
  int64_t p = 0;
  for (int64_t i = 0; i < tasks; ++i)
    for (int64_t j = i; j < tasks; ++j, ++p) gram_out[i * tasks + j] = gram_out[j * tasks + i] = total[p];
}

template <DType D>
void combine_impl(const void* grads, int64_t tasks, int64_t n, const double* weights, void* out) {
  float w[kMaxTasks];
  for (int64_t t = 0; t < tasks; ++t) w[t] = static_cast<float>(weights[t]);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const bool streaming = n * static_cast<int64_t>(sizeof(float)) >= kStreamingBytes;
#pragma omp parallel num_threads(cpu_threads())
  {
    std::vector<float> scratch(D == DType::F32 ? 0 : static_cast<size_t>(tasks) * kBlock);
    const float* rows[kMaxTasks];
    alignas(64) float sum[kBlock];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * kBlock, len = std::min(kBlock, n - lo);
      load_block<D>(grads, tasks, n, lo, len, scratch.data(), rows);
      const float* __restrict g0 = rows[0];
      const float w0 = w[0];
#pragma omp simd
      for (int64_t k = 0; k < len; ++k) sum[k] = w0 * g0[k];
      for (int64_t t = 1; t < tasks; ++t) {
        const float* __restrict gt = rows[t];
        const float wt = w[t];
#pragma omp simd
        for (int64_t k = 0; k < len; ++k) sum[k] += wt * gt[k];
      }
      if constexpr (D == DType::F32) {
        store_block(static_cast<float*>(out) + lo, sum, len, streaming);
      } else {
        uint16_t* dst = static_cast<uint16_t*>(out) + lo;
        for (int64_t k = 0; k < len; ++k) dst[k] = D == DType::BF16 ? float_to_bf16(sum[k]) : float_to_f16(sum[k]);
      }
    }
#if defined(__AVX__)
    if (streaming) _mm_sfence();  // streaming stores are visible before the pass returns
#endif
  }
}

}  // namespace

int cpu_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void gram_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, double* gram_out) {
  switch (dtype) {
    case DType::F32: return gram_impl<DType::F32>(grads, tasks, n, gram_out);
    case DType::BF16: return gram_impl<DType::BF16>(grads, tasks, n, gram_out);
    case DType::F16: return gram_impl<DType::F16>(grads, tasks, n, gram_out);
  }
}

void combine_cpu(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* weights, void* out) {
  switch (dtype) {
    case DType::F32: return combine_impl<DType::F32>(grads, tasks, n, weights, out);
    case DType::BF16: return combine_impl<DType::BF16>(grads, tasks, n, weights, out);
    case DType::F16: return combine_impl<DType::F16>(grads, tasks, n, weights, out);
  }
}

}  // namespace mtcli
