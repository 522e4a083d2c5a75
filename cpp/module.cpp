// Python extension module fastvae._C: loading it registers the torch.ops.fastvae operators
// (cpp/ops.cpp) and exposes the long-running calls that need the GIL released and Python callbacks.
#include <torch/extension.h>

#include "train_loop.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastvae C++ core";
#ifdef FASTVAE_BUILT_AVX2
  m.attr("built_with_avx2") = true;
#else
  m.attr("built_with_avx2") = false;
#endif
  fastvae::bind_train_loop(m);
}
