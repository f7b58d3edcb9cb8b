// Python bindings: raw data pointers (tensor.data_ptr()), sizes and dtype names in,
// numpy arrays out. The GIL is released while the passes run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "kernel.h"

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
