// Python bindings: raw data pointers (tensor.data_ptr()), sizes and dtype names in,
// numpy arrays out. The GIL is released while the passes run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "kernel.h"
#include "rows.h"

namespace py = pybind11;
using mtcli::DType;

namespace {

DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::F32;
  if (name == "bfloat16") return DType::BF16;
  if (name == "float16") return DType::F16;
  throw std::invalid_argument("unsupported gradient dtype " + name + " (expected float32, bfloat16 or float16)");
}

void check_shape(int64_t tasks, int64_t n) {
  if (tasks < 1 || tasks > 64) throw std::invalid_argument("tasks must be between 1 and 64");
  if (n < 0) throw std::invalid_argument("n must be >= 0");
}

const void* as_ptr(uintptr_t address) { return reinterpret_cast<const void*>(address); }

py::array_t<double> gram(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype) {
  check_shape(tasks, n);
  const DType d = parse_dtype(dtype);
  py::array_t<double> out({tasks, tasks});
  double* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    mtcli::gram_cpu(as_ptr(grads), d, tasks, n, dst);
  }
  return out;
}

void combine(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype,
             py::array_t<double, py::array::c_style | py::array::forcecast> weights, uintptr_t out) {
  check_shape(tasks, n);
  if (weights.size() != tasks) throw std::invalid_argument("weights must have one entry per task");
  const DType d = parse_dtype(dtype);
  const double* w = weights.data();
  py::gil_scoped_release release;
  mtcli::combine_cpu(as_ptr(grads), d, tasks, n, w, reinterpret_cast<void*>(out));
}

// ---- the rows family's passes (rows.h)

using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Indices = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

void check_per_task(const py::array& values, int64_t tasks, const char* what) {
  if (values.size() != tasks) throw std::invalid_argument(std::string(what) + " must have one entry per task");
}

void graddrop(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype, Doubles leak, uint64_t seed,
              uint64_t counter, uintptr_t out, uintptr_t stream, bool cuda) {
  check_shape(tasks, n);
  check_per_task(leak, tasks, "leak");
  const DType d = parse_dtype(dtype);
  const double* l = leak.data();
  py::gil_scoped_release release;
#ifdef MTCLI_WITH_CUDA
  if (cuda) return mtcli::graddrop_cuda(as_ptr(grads), d, tasks, n, l, seed, counter, reinterpret_cast<void*>(out), reinterpret_cast<void*>(stream));
#endif
  if (cuda) throw std::invalid_argument("mtcli._kernel was built without CUDA");
  mtcli::graddrop_cpu(as_ptr(grads), d, tasks, n, l, seed, counter, reinterpret_cast<void*>(out));
}

void trimmed_mean(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype, int64_t trim, uintptr_t out,
                  uintptr_t stream, bool cuda) {
  check_shape(tasks, n);
  if (trim < 0 || tasks - 2 * trim < 1) throw std::invalid_argument("trim must leave at least one row per column");
  const DType d = parse_dtype(dtype);
  py::gil_scoped_release release;
#ifdef MTCLI_WITH_CUDA
  if (cuda) return mtcli::trimmed_mean_cuda(as_ptr(grads), d, tasks, n, trim, reinterpret_cast<void*>(out), reinterpret_cast<void*>(stream));
#endif
  if (cuda) throw std::invalid_argument("mtcli._kernel was built without CUDA");
  mtcli::trimmed_mean_cpu(as_ptr(grads), d, tasks, n, trim, reinterpret_cast<void*>(out));
}

void ema_rows(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype, uintptr_t state, Indices rows,
              double keep, Doubles coef, uintptr_t stream, bool cuda) {
  check_shape(tasks, n);
  check_per_task(rows, tasks, "rows");
  check_per_task(coef, tasks, "coef");
  const DType d = parse_dtype(dtype);
  const int64_t* r = rows.data();
  const double* c = coef.data();
  float* s = reinterpret_cast<float*>(state);
  py::gil_scoped_release release;
#ifdef MTCLI_WITH_CUDA
  if (cuda) return mtcli::ema_rows_cuda(as_ptr(grads), d, tasks, n, s, r, keep, c, reinterpret_cast<void*>(stream));
#endif
  if (cuda) throw std::invalid_argument("mtcli._kernel was built without CUDA");
  mtcli::ema_rows_cpu(as_ptr(grads), d, tasks, n, s, r, keep, c);
}

py::array_t<double> excess_stats(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype, uintptr_t state,
                                 Indices rows, uintptr_t stream, bool cuda) {
  check_shape(tasks, n);
  check_per_task(rows, tasks, "rows");
  const DType d = parse_dtype(dtype);
  const int64_t* r = rows.data();
  float* s = reinterpret_cast<float*>(state);
  py::array_t<double> out(tasks);
  double* w = out.mutable_data();
  {
    py::gil_scoped_release release;
#ifdef MTCLI_WITH_CUDA
    if (cuda) {
      mtcli::excess_stats_cuda(as_ptr(grads), d, tasks, n, s, r, w, reinterpret_cast<void*>(stream));
      return out;
    }
#endif
    if (cuda) throw std::invalid_argument("mtcli._kernel was built without CUDA");
    mtcli::excess_stats_cpu(as_ptr(grads), d, tasks, n, s, r, w);
  }
  return out;
}

#ifdef MTCLI_WITH_CUDA
py::array_t<double> gram_cuda(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype, uintptr_t stream) {
  check_shape(tasks, n);
  const DType d = parse_dtype(dtype);
  py::array_t<double> out({tasks, tasks});
  double* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    mtcli::gram_cuda(as_ptr(grads), d, tasks, n, dst, reinterpret_cast<void*>(stream));
  }
  return out;
}

void combine_cuda(uintptr_t grads, int64_t tasks, int64_t n, const std::string& dtype,
                  py::array_t<double, py::array::c_style | py::array::forcecast> weights, uintptr_t out, uintptr_t stream) {
  check_shape(tasks, n);
  if (weights.size() != tasks) throw std::invalid_argument("weights must have one entry per task");
  const DType d = parse_dtype(dtype);
  const double* w = weights.data();
  py::gil_scoped_release release;
  mtcli::combine_cuda(as_ptr(grads), d, tasks, n, w, reinterpret_cast<void*>(out), reinterpret_cast<void*>(stream));
}
#endif

}  // namespace

PYBIND11_MODULE(_kernel, m) {
  m.doc() = "Fused passes of the Gram-based weightings (Gram matrix, combination) over a contiguous (T, n) gradient buffer.";
  m.def("gram", &gram, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"),
        "Pass 1: the (T, T) Gram matrix of the buffer at address `grads`, accumulated in float64.");
  m.def("combine", &combine, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"), py::arg("weights"),
        py::arg("out"), "Pass 2: out = sum_t weights[t] * grads[t], written in the buffer's dtype.");
  m.def("cpu_threads", &mtcli::cpu_threads, "OpenMP threads the CPU passes use.");
  // the rows family (rows.h); `cuda` picks the device pass, queued on `stream`
  m.def("graddrop", &graddrop, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"), py::arg("leak"),
        py::arg("seed"), py::arg("counter"), py::arg("out"), py::arg("stream") = 0, py::arg("cuda") = false,
        "GradDrop: out = sum_t (leak_t + (1 - leak_t) M_t) g_t, M from the sign purity and the draws of (seed, counter).");
  m.def("trimmed_mean", &trimmed_mean, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"),
        py::arg("trim"), py::arg("out"), py::arg("stream") = 0, py::arg("cuda") = false,
        "Per column, the mean of the rows less the `trim` largest and smallest.");
  m.def("ema_rows", &ema_rows, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"), py::arg("state"),
        py::arg("rows"), py::arg("keep"), py::arg("coef"), py::arg("stream") = 0, py::arg("cuda") = false,
        "state[rows[t]] = keep * state[rows[t]] + (1 - keep) * coef[t] * g_t, in place (float32 state).");
  m.def("excess_stats", &excess_stats, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"),
        py::arg("state"), py::arg("rows"), py::arg("stream") = 0, py::arg("cuda") = false,
        "state[rows[t]] += g_t^2 in place; returns w[t] = sum g_t^2 / sqrt(state + 1e-7).");
#ifdef MTCLI_WITH_CUDA
  m.def("gram_cuda", &gram_cuda, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"), py::arg("stream"),
        "Pass 1 on the GPU, on CUDA stream `stream`; returns once the (T, T) Gram matrix is on the host.");
  m.def("combine_cuda", &combine_cuda, py::arg("grads"), py::arg("tasks"), py::arg("n"), py::arg("dtype"),
        py::arg("weights"), py::arg("out"), py::arg("stream"), "Pass 2 on the GPU, queued on `stream` (no sync).");
  m.attr("has_cuda") = true;
  m.attr("cuda_max_tasks") = mtcli::cuda_max_tasks();
#else
  m.attr("has_cuda") = false;
  m.attr("cuda_max_tasks") = 0;
#endif
}
