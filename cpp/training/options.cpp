#include "training/options.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <tuple>

namespace py = pybind11;

namespace fastvae {
namespace training {

const std::vector<std::string>& pixel_names() {
  static const std::vector<std::string> names{"threshold", "dynamic", "intensity"};
  return names;
}

Pixels parse_pixels(const std::string& name) {
  const auto& names = pixel_names();
  const auto it = std::find(names.begin(), names.end(), name);
  TORCH_CHECK(it != names.end(), "fastvae: unknown pixels '", name, "'; choose one of ['threshold', 'dynamic', "
              "'intensity']");
  return static_cast<Pixels>(it - names.begin());
}

namespace {

// The one table of training options the trainer reads, by the field names of fastvae.TrainOptions (all but
// fastvae.options.DRIVER_OPTIONS, which the Python driver implements for every model kind). A new option of the
// trainer is one line here and one field there; a name on one side only is an error on every call.
using OptionReader = void (*)(Options&, py::handle);
struct OptionField {
  const char* name;
  OptionReader read;
};
const OptionField kOptionFields[] = {
    {"batch_size", [](Options& o, py::handle v) { o.batch_size = v.cast<int64_t>(); }},
    {"n_samples", [](Options& o, py::handle v) { o.n_samples = v.cast<int64_t>(); }},
    {"lr", [](Options& o, py::handle v) { o.lr = v.cast<double>(); }},
    {"betas", [](Options& o, py::handle v) { std::tie(o.beta1, o.beta2) = v.cast<std::pair<double, double>>(); }},
    {"eps", [](Options& o, py::handle v) { o.eps = v.cast<double>(); }},
    {"weight_decay", [](Options& o, py::handle v) { o.weight_decay = v.cast<double>(); }},
    {"threshold", [](Options& o, py::handle v) { o.threshold = v.cast<int64_t>(); }},
    {"estimator", [](Options& o, py::handle v) { o.estimator = parse_estimator(v.cast<std::string>()); }},
    {"kl_weight", [](Options& o, py::handle v) { o.kl_weight = v.cast<double>(); }},
    {"eval_every", [](Options& o, py::handle v) { o.eval_every = v.cast<int64_t>(); }},
    {"eval_samples", [](Options& o, py::handle v) { o.eval_samples = v.cast<int64_t>(); }},
    {"callback_every", [](Options& o, py::handle v) { o.callback_every = v.cast<int64_t>(); }},
    {"pixels", [](Options& o, py::handle v) { o.pixels = parse_pixels(v.cast<std::string>()); }},
    {"objective", [](Options& o, py::handle v) { o.objective = parse_objective(v.cast<std::string>()); }},
    {"k", [](Options& o, py::handle v) { o.k = v.cast<int64_t>(); }},
    {"groups", [](Options& o, py::handle v) { o.groups = v.cast<int64_t>(); }},
    {"ciwae_beta", [](Options& o, py::handle v) { o.ciwae_beta = v.cast<double>(); }},
    {"iwae_estimator",
     [](Options& o, py::handle v) { o.iwae_estimator = parse_iwae_estimator(v.cast<std::string>()); }},
    {"kl_warmup", [](Options& o, py::handle v) { o.kl_warmup = v.cast<int64_t>(); }},
    {"free_bits", [](Options& o, py::handle v) { o.free_bits = v.cast<double>(); }},
    {"temperature", [](Options& o, py::handle v) { o.temperature = v.cast<double>(); }},
    {"temperature_min", [](Options& o, py::handle v) { o.temperature_min = v.cast<double>(); }},
    {"anneal_rate", [](Options& o, py::handle v) { o.anneal_rate = v.cast<double>(); }},
    {"anneal_every", [](Options& o, py::handle v) { o.anneal_every = v.cast<int64_t>(); }},
    {"hard", [](Options& o, py::handle v) { o.hard = v.cast<bool>(); }},
    {"threads", [](Options& o, py::handle v) { o.threads = v.is_none() ? 0 : v.cast<int64_t>(); }},
};

}  // namespace

std::vector<std::string> option_names() {
  std::vector<std::string> out;
  for (const auto& f : kOptionFields) out.emplace_back(f.name);
  return out;
}

Options options_from_dict(const py::dict& d) {
  Options o;
  for (const auto& f : kOptionFields) {
    TORCH_CHECK(d.contains(f.name), "fastvae.fit: training option '", f.name,
                "' is missing from the options handed to the C++ trainer");
    try {
      f.read(o, d[f.name]);
    } catch (const py::cast_error&) {
      TORCH_CHECK(false, "fastvae.fit: training option '", f.name, "' has the wrong type: ",
                  std::string(py::repr(d[f.name])));
    }
  }
  for (const auto& item : d) {
    const auto key = item.first.cast<std::string>();
    const bool known = std::any_of(std::begin(kOptionFields), std::end(kOptionFields),
                                   [&](const OptionField& f) { return key == f.name; });
    TORCH_CHECK(known, "fastvae.fit: the C++ trainer has no training option '", key, "'");
  }
  // fastvae.options validated these; a violation here is a bug in the Python layer, not a user error.
  TORCH_INTERNAL_ASSERT(o.batch_size >= 1 && o.n_samples >= 1 && o.k >= 1 && o.eval_samples >= 1);
  TORCH_INTERNAL_ASSERT(o.threshold >= 0 && o.threshold <= 255 && o.anneal_every >= 1 && o.kl_warmup >= 0 &&
                        o.threads >= 0);
  TORCH_INTERNAL_ASSERT(std::isfinite(o.kl_weight) && o.kl_weight >= 0 && std::isfinite(o.free_bits) &&
                        o.free_bits >= 0);
  TORCH_INTERNAL_ASSERT(!o.iwae() || (o.kl_weight == 1.0 && o.kl_warmup == 0 && o.free_bits == 0));
  TORCH_INTERNAL_ASSERT(o.groups >= 1 && o.ciwae_beta >= 0 && o.ciwae_beta <= 1);
  TORCH_INTERNAL_ASSERT(o.temperature > 0 && o.temperature_min > 0 && o.temperature_min <= o.temperature &&
                        std::isfinite(o.temperature) && std::isfinite(o.anneal_rate) && o.anneal_rate >= 0);
  return o;
}

double temperature_at(const Options& o, int64_t t) {
  const double t_q = double(t / o.anneal_every * o.anneal_every);
  return std::max(o.temperature_min, o.temperature * std::exp(-o.anneal_rate * t_q));
}

VaeSpec spec_from_dict(const py::dict& d) {
  auto get = [&](const char* k) -> py::object {
    TORCH_CHECK(d.contains(k), "fastvae.fit: architecture field '", k, "' is missing");
    return d[k];
  };
  TORCH_CHECK(d.size() == 17, "fastvae.fit: expected the 17 architecture fields, got ", d.size());
  const auto enc = get("encoder_hidden").cast<std::vector<int64_t>>();
  const auto dec = get("decoder_hidden").cast<std::vector<int64_t>>();
  const auto up = get("upper_latents").cast<std::vector<int64_t>>();
  const auto up_hidden = get("upper_hidden").cast<std::vector<int64_t>>();
  return VaeSpec::from_args(
      get("data_dim").cast<int64_t>(), get("cond_dim").cast<int64_t>(), get("latent_dim").cast<int64_t>(), enc, dec,
      get("activation").cast<std::string>(), get("negative_slope").cast<double>(), get("posterior").cast<std::string>(),
      get("mean_activation").cast<std::string>(), get("scale_activation").cast<std::string>(),
      get("likelihood").cast<std::string>(), get("gaussian_sigma").cast<double>(),
      get("gaussian_scale").cast<std::string>(), get("latent").cast<std::string>(), get("categories").cast<int64_t>(),
      up, up_hidden);
}

}  // namespace training
}  // namespace fastvae
