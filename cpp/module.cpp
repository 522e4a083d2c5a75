// Python extension module fastvae._C: loading it registers the torch.ops.fastvae operators
// (cpp/ops.cpp) and exposes the long-running calls that need the GIL released and Python callbacks.
// ATen and pybind11 with torch's casters (at::Tensor, at::Generator): what <torch/extension.h> gives
// these sources, without the C++ frontend (torch/nn, torch/optim) that doubles their compile time.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include "training/trainer.h"
#include "vae_spec.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastvae C++ core";
#ifdef FASTVAE_BUILT_AVX2
  m.attr("built_with_avx2") = true;
#else
  m.attr("built_with_avx2") = false;
#endif
  // The valid enum names, from the one table of each (cpp/vae_spec.cpp), in code order.
  auto names = [](const std::vector<std::string>& v) { return pybind11::tuple(pybind11::cast(v)); };
  m.attr("ACTIVATIONS") = names(fastvae::activation_names());
  m.attr("POSTERIORS") = names(fastvae::posterior_names());
  m.attr("ESTIMATORS") = names(fastvae::estimator_names());
  m.attr("LIKELIHOODS") = names(fastvae::likelihood_names());
  m.attr("IWAE_ESTIMATORS") = names(fastvae::iwae_estimator_names());
  m.attr("OBJECTIVES") = names(fastvae::objective_names());
  m.attr("GAUSSIAN_SCALES") = names(fastvae::gaussian_scale_names());
  m.attr("LATENTS") = names(fastvae::latent_names());
  // What data each likelihood takes ("binary", "unit_interval", "real"), from the likelihood table.
  pybind11::dict data;
  for (size_t i = 0; i < fastvae::likelihood_names().size(); ++i) {
    const auto lik = static_cast<fastvae::Likelihood>(i);
    data[fastvae::likelihood_name(lik)] = fastvae::likelihoods::data_name(fastvae::likelihood_data(lik));
  }
  m.attr("LIKELIHOOD_DATA") = data;
  fastvae::training::bind_trainer(m);
}
