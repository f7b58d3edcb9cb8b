// CUDA passes of the rows family (rows.h), on the caller's stream. Grid-stride loops over
// columns; excess_stats reduces per-block partials in block order (fp64), so its numbers are
// deterministic, and synchronises once to hand them to the host.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "rows.h"

namespace mtcli {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxRowsTasks = 64;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

__device__ inline float ld(const float* p) { return *p; }
__device__ inline float ld(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ inline float ld(const __half* p) { return __half2float(*p); }
__device__ inline void st(float* p, float v) { *p = v; }
__device__ inline void st(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void st(__half* p, float v) { *p = __float2half_rn(v); }

struct PerTask { double v[kMaxRowsTasks]; int64_t rows[kMaxRowsTasks]; };

int grid_for(int64_t work) {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(sms) * 8)));
}

template <typename T>
__global__ void graddrop_kernel(const T* __restrict__ g, int tasks, int64_t n, PerTask leak, uint64_t key,
                                T* __restrict__ out) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    double sum = 0.0, abs_sum = 0.0;
    for (int t = 0; t < tasks; ++t) {
      const double x = ld(g + t * n + k);
      sum += x;
      abs_sum += fabs(x);
    }
    const double purity = 0.5 * (1.0 + sum / abs_sum), u = uniform_at(key, k);
    const bool positive = purity > u, negative = purity < u;
    float acc = 0.f;
    for (int t = 0; t < tasks; ++t) {
      const float x = ld(g + t * n + k), keep = static_cast<float>(leak.v[t]);
      const bool pass = (positive && x > 0.f) || (negative && x < 0.f);
      acc += (keep + (pass ? 1.f - keep : 0.f)) * x;
    }
    st(out + k, acc);
  }
}

template <typename T>
__global__ void trimmed_mean_kernel(const T* __restrict__ g, int tasks, int64_t n, int trim, T* __restrict__ out) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    float v[kMaxRowsTasks];
    for (int t = 0; t < tasks; ++t) {  // insertion sort: T is small
      const float x = ld(g + t * n + k);
      int i = t;
      for (; i > 0 && v[i - 1] > x; --i) v[i] = v[i - 1];
      v[i] = x;
    }
    double s = 0.0;
    for (int t = trim; t < tasks - trim; ++t) s += v[t];
    st(out + k, static_cast<float>(s / (tasks - 2 * trim)));
  }
}

template <typename T>
__global__ void ema_rows_kernel(const T* __restrict__ g, int tasks, int64_t n, float* __restrict__ state,
                                PerTask coef, float keep) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x)
    for (int t = 0; t < tasks; ++t) {
      float* s = state + coef.rows[t] * n + k;
      *s = keep * *s + static_cast<float>((1.0 - keep) * coef.v[t]) * ld(g + t * n + k);
    }
}

template <typename T>
__global__ void excess_kernel(const T* __restrict__ g, int tasks, int64_t n, float* __restrict__ state, PerTask rows,
                              double* __restrict__ partials) {
  __shared__ double block_sum[kThreads];
  for (int t = 0; t < tasks; ++t) {
    double w = 0.0;
    float* s = state + rows.rows[t] * n;
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
      const float x = ld(g + t * n + k), sq = x * x;
      const float total = s[k] + sq;
      s[k] = total;
      w += static_cast<double>(sq) / sqrt(static_cast<double>(total) + 1e-7);
    }
    block_sum[threadIdx.x] = w;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) block_sum[threadIdx.x] += block_sum[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) partials[int64_t(blockIdx.x) * tasks + t] = block_sum[0];
    __syncthreads();
  }
}

__global__ void sum_partials(const double* __restrict__ partials, int blocks, int tasks, double* __restrict__ out) {
  for (int t = threadIdx.x; t < tasks; t += blockDim.x) {
    double s = 0.0;
    for (int b = 0; b < blocks; ++b) s += partials[int64_t(b) * tasks + t];
    out[t] = s;
  }
}

PerTask per_task(int64_t tasks, const double* values, const int64_t* rows) {
  if (tasks < 1 || tasks > kMaxRowsTasks) throw std::invalid_argument("the CUDA rows passes take 1 to 64 tasks");
  PerTask p{};
  for (int64_t t = 0; t < tasks; ++t) {
    p.v[t] = values ? values[t] : 0.0;
    p.rows[t] = rows ? rows[t] : t;
  }
  return p;
}

template <typename Fn>
void by_dtype(DType dtype, Fn fn) {
  switch (dtype) {
    case DType::F32: return fn(float{});
    case DType::BF16: return fn(__nv_bfloat16{});
    case DType::F16: return fn(__half{});
  }
}

}  // namespace

void graddrop_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* leak, uint64_t seed,
                   uint64_t counter, void* out, void* stream) {
  const PerTask l = per_task(tasks, leak, nullptr);
  const uint64_t key = draw_key(seed, counter);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    graddrop_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(grads), int(tasks), n, l, key, static_cast<T*>(out));
  });
  check(cudaGetLastError(), "graddrop_kernel");
}

void trimmed_mean_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, int64_t trim, void* out, void* stream) {
  per_task(tasks, nullptr, nullptr);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    trimmed_mean_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(grads), int(tasks), n, int(trim), static_cast<T*>(out));
  });
  check(cudaGetLastError(), "trimmed_mean_kernel");
}

void ema_rows_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                   double keep, const double* coef, void* stream) {
  const PerTask c = per_task(tasks, coef, rows);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    ema_rows_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(grads), int(tasks), n, state, c, static_cast<float>(keep));
  });
  check(cudaGetLastError(), "ema_rows_kernel");
}

void excess_stats_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, float* state, const int64_t* rows,
                       double* w_out, void* stream) {
  const PerTask r = per_task(tasks, nullptr, rows);
  auto s = static_cast<cudaStream_t>(stream);
  const int blocks = grid_for(n);
  double *partials = nullptr, *sums = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(double) * blocks * tasks, s), "cudaMallocAsync");
  check(cudaMallocAsync(reinterpret_cast<void**>(&sums), sizeof(double) * tasks, s), "cudaMallocAsync");
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    excess_kernel<T><<<blocks, kThreads, 0, s>>>(static_cast<const T*>(grads), int(tasks), n, state, r, partials);
  });
  check(cudaGetLastError(), "excess_kernel");
  sum_partials<<<1, 64, 0, s>>>(partials, blocks, int(tasks), sums);
  check(cudaGetLastError(), "sum_partials");
  check(cudaMemcpyAsync(w_out, sums, sizeof(double) * tasks, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  check(cudaFreeAsync(partials, s), "cudaFreeAsync");
  check(cudaFreeAsync(sums, s), "cudaFreeAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

}  // namespace mtcli
