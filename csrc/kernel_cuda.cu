// CUDA passes on the caller's stream. The only host synchronisation is the read-back of
// the T x T Gram matrix (T(T+1)/2 doubles) at the end of pass 1.
//
//   pass 1  gram_kernel: grid-stride over columns, 16-byte vector loads, every thread keeps
//           T(T+1)/2 fp32 partial dot products in registers; warp shuffles and shared memory
//           reduce a block to one partial per pair; reduce_partials sums the per-block
//           partials in a fixed order (fp64), so the result is deterministic.
//   pass 2  combine_kernel: out[k] = sum_t w[t] g[t][k], weights passed by value.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernel.h"

namespace mtcli {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxCudaTasks = 8;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

template <typename T> struct Elem;
template <> struct Elem<float> {
  static constexpr int kVec = 4;  // elements per 16-byte load
  __device__ static float load(const float* p) { return *p; }
  __device__ static void load_vec(const float* p, float* out) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
  }
  __device__ static void store_vec(float* p, const float* in) { *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]); }
  __device__ static void store(float* p, float v) { *p = v; }
};
template <typename H, float (*ToF)(H), H (*FromF)(float)> struct HalfElem {
  static constexpr int kVec = 8;
  __device__ static float load(const H* p) { return ToF(*p); }
  __device__ static void load_vec(const H* p, float* out) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const H* h = reinterpret_cast<const H*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = ToF(h[i]);
  }
  __device__ static void store_vec(H* p, const float* in) {
    uint4 raw;
    H* h = reinterpret_cast<H*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) h[i] = FromF(in[i]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
  __device__ static void store(H* p, float v) { *p = FromF(v); }
};
__device__ float bf16_to_f(__nv_bfloat16 h) { return __bfloat162float(h); }
__device__ __nv_bfloat16 f_to_bf16(float f) { return __float2bfloat16_rn(f); }
__device__ float f16_to_f(__half h) { return __half2float(h); }
__device__ __half f_to_f16(float f) { return __float2half_rn(f); }
template <> struct Elem<__nv_bfloat16> : HalfElem<__nv_bfloat16, bf16_to_f, f_to_bf16> {};
template <> struct Elem<__half> : HalfElem<__half, f16_to_f, f_to_f16> {};

template <typename T, int NT, bool VEC>
__global__ void gram_kernel(const T* __restrict__ g, int64_t n, float* __restrict__ partials) {
  constexpr int P = NT * (NT + 1) / 2;
  constexpr int V = VEC ? Elem<T>::kVec : 1;
  float acc[P];
#pragma unroll
  for (int p = 0; p < P; ++p) acc[p] = 0.f;
  const int64_t chunks = n / V;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < chunks; c += int64_t(gridDim.x) * blockDim.x) {
    float x[NT][V];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if constexpr (VEC) Elem<T>::load_vec(g + t * n + c * V, x[t]);
      else x[t][0] = Elem<T>::load(g + t * n + c);
    }
    int p = 0;
#pragma unroll
    for (int i = 0; i < NT; ++i)
#pragma unroll
      for (int j = i; j < NT; ++j, ++p)
#pragma unroll
        for (int v = 0; v < V; ++v) acc[p] = fmaf(x[i][v], x[j][v], acc[p]);
  }
  if (VEC && blockIdx.x == 0) {  // the tail that does not fill a vector
    for (int64_t k = chunks * V + threadIdx.x; k < n; k += blockDim.x) {
      int p = 0;
#pragma unroll
      for (int i = 0; i < NT; ++i)
#pragma unroll
        for (int j = i; j < NT; ++j, ++p) acc[p] = fmaf(Elem<T>::load(g + i * n + k), Elem<T>::load(g + j * n + k), acc[p]);
    }
  }
  __shared__ float warp_sums[kThreads / 32][P];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int p = 0; p < P; ++p) {
    float v = acc[p];
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) warp_sums[warp][p] = v;
  }
  __syncthreads();
  if (threadIdx.x < P) {
    float s = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) s += warp_sums[w][threadIdx.x];
    partials[blockIdx.x * int64_t(P) + threadIdx.x] = s;
  }
}

// One block: sum the per-block partials of each pair in block order, in fp64.
__global__ void reduce_partials(const float* __restrict__ partials, int blocks, int pairs, double* __restrict__ out) {
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    double s = 0.0;
    for (int b = 0; b < blocks; ++b) s += partials[int64_t(b) * pairs + p];
    out[p] = s;
  }
}

struct Weights { float w[kMaxCudaTasks]; };

template <typename T, int NT, bool VEC>
__global__ void combine_kernel(const T* __restrict__ g, int64_t n, Weights weights, T* __restrict__ out) {
  constexpr int V = VEC ? Elem<T>::kVec : 1;
  const int64_t chunks = n / V;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < chunks; c += int64_t(gridDim.x) * blockDim.x) {
    float sum[V], x[V];
#pragma unroll
    for (int v = 0; v < V; ++v) sum[v] = 0.f;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if constexpr (VEC) Elem<T>::load_vec(g + t * n + c * V, x);
      else x[0] = Elem<T>::load(g + t * n + c);
#pragma unroll
      for (int v = 0; v < V; ++v) sum[v] = fmaf(weights.w[t], x[v], sum[v]);
    }
    if constexpr (VEC) Elem<T>::store_vec(out + c * V, sum);
    else Elem<T>::store(out + c, sum[0]);
  }
  if (VEC && blockIdx.x == 0) {
    for (int64_t k = chunks * V + threadIdx.x; k < n; k += blockDim.x) {
      float s = 0.f;
#pragma unroll
      for (int t = 0; t < NT; ++t) s = fmaf(weights.w[t], Elem<T>::load(g + t * n + k), s);
      Elem<T>::store(out + k, s);
    }
  }
}

int grid_size(int64_t work) {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  const int64_t wanted = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t(sms) * 4)));
}

template <typename T>
bool vectorisable(const void* grads, int64_t n, const void* out = nullptr) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return aligned(grads) && (out == nullptr || aligned(out)) && (n * int64_t(sizeof(T))) % 16 == 0;
}

template <typename T, int NT>
void gram_typed(const void* grads, int64_t n, double* host_out, cudaStream_t stream) {
  constexpr int P = NT * (NT + 1) / 2;
  const bool vec = vectorisable<T>(grads, n);
  const int blocks = grid_size(vec ? n / Elem<T>::kVec : n);
  float* partials = nullptr;
  double* pairs = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&partials), sizeof(float) * blocks * P, stream), "cudaMallocAsync");
  check(cudaMallocAsync(reinterpret_cast<void**>(&pairs), sizeof(double) * P, stream), "cudaMallocAsync");
  const T* g = static_cast<const T*>(grads);
  if (vec) gram_kernel<T, NT, true><<<blocks, kThreads, 0, stream>>>(g, n, partials);
  else gram_kernel<T, NT, false><<<blocks, kThreads, 0, stream>>>(g, n, partials);
  check(cudaGetLastError(), "gram_kernel");
  reduce_partials<<<1, 64, 0, stream>>>(partials, blocks, P, pairs);
  check(cudaGetLastError(), "reduce_partials");
  double packed[P];
  check(cudaMemcpyAsync(packed, pairs, sizeof(double) * P, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
  check(cudaFreeAsync(partials, stream), "cudaFreeAsync");
  check(cudaFreeAsync(pairs, stream), "cudaFreeAsync");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // the one sync: the Gram matrix is needed on the host
  int p = 0;
  for (int i = 0; i < NT; ++i)
    for (int j = i; j < NT; ++j, ++p) host_out[i * NT + j] = host_out[j * NT + i] = packed[p];
}

template <typename T, int NT>
void combine_typed(const void* grads, int64_t n, const double* weights, void* out, cudaStream_t stream) {
  Weights w{};
  for (int t = 0; t < NT; ++t) w.w[t] = static_cast<float>(weights[t]);
  const bool vec = vectorisable<T>(grads, n, out);
  const int blocks = grid_size(vec ? n / Elem<T>::kVec : n);
  const T* g = static_cast<const T*>(grads);
  if (vec) combine_kernel<T, NT, true><<<blocks, kThreads, 0, stream>>>(g, n, w, static_cast<T*>(out));
  else combine_kernel<T, NT, false><<<blocks, kThreads, 0, stream>>>(g, n, w, static_cast<T*>(out));
  check(cudaGetLastError(), "combine_kernel");
}

template <template <typename, int> class Fn, typename T, typename... Args>
void by_tasks(int64_t tasks, Args... args) {
  switch (tasks) {
    case 1: return Fn<T, 1>::run(args...);
    case 2: return Fn<T, 2>::run(args...);
    case 3: return Fn<T, 3>::run(args...);
    case 4: return Fn<T, 4>::run(args...);
    case 5: return Fn<T, 5>::run(args...);
    case 6: return Fn<T, 6>::run(args...);
    case 7: return Fn<T, 7>::run(args...);
    case 8: return Fn<T, 8>::run(args...);
    default: throw std::invalid_argument("the CUDA passes take 1 to 8 tasks");
  }
}
template <typename T, int NT> struct GramFn { static void run(const void* g, int64_t n, double* o, cudaStream_t s) { gram_typed<T, NT>(g, n, o, s); } };
template <typename T, int NT> struct CombineFn {
  static void run(const void* g, int64_t n, const double* w, void* o, cudaStream_t s) { combine_typed<T, NT>(g, n, w, o, s); }
};

}  // namespace

int cuda_max_tasks() { return kMaxCudaTasks; }

void gram_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, double* gram_out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::F32: return by_tasks<GramFn, float>(tasks, grads, n, gram_out, s);
    case DType::BF16: return by_tasks<GramFn, __nv_bfloat16>(tasks, grads, n, gram_out, s);
    case DType::F16: return by_tasks<GramFn, __half>(tasks, grads, n, gram_out, s);
  }
}

void combine_cuda(const void* grads, DType dtype, int64_t tasks, int64_t n, const double* weights, void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::F32: return by_tasks<CombineFn, float>(tasks, grads, n, weights, out, s);
    case DType::BF16: return by_tasks<CombineFn, __nv_bfloat16>(tasks, grads, n, weights, out, s);
    case DType::F16: return by_tasks<CombineFn, __half>(tasks, grads, n, weights, out, s);
  }
}

}  // namespace mtcli
