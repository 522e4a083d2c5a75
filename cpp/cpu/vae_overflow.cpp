// Where an MLP VAE's pass left the float range (issue 20 item 6): the engine's rare path after an op found a
// result that is not finite although its inputs were. It reads the activations the pass kept, in the order the
// pass computed them, and names the first that is not finite with the magnitudes that explain it.
#include <c10/util/StringUtil.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu/gumbel_softmax.h"
#include "cpu/vae_engine.h"
#include "finite.h"

namespace fastvae {
namespace cpu {

template <typename T>
std::string VaeEngine<T>::param_name(int64_t i) const {
  const int64_t ne = spec_.n_enc_layers(), nd = spec_.n_dec_layers();
  if (i >= 2 * (ne + nd)) return "log_sigma";
  const int64_t layer = i / 2;
  const char* part = i % 2 ? "bias" : "weight";
  if (layer + 1 < ne) return c10::str("encoder.", layer, ".", part);
  if (layer + 1 == ne) return c10::str("encoder_head.", part);
  return c10::str("decoder.", layer - ne, ".", part);
}

template <typename T>
std::string VaeEngine<T>::overflow_cause(at::TensorList params, const at::Tensor& x, double tau, Pass pass) const {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const std::string dt = dtype_name(x.scalar_type());
  const double big = std::sqrt(dtype_max(x.scalar_type()));
  // Real-valued data so large that its square overflows: whatever the weights, the Gaussian likelihood cannot
  // be computed (and the encoder's first layer may overflow before it).
  if (pass != Pass::Decode && likelihood_data(spec_.lik) == likelihoods::Data::Real && max_abs(x) >= big)
    return c10::str("x holds values too large for the ", likelihood_name(spec_.lik), " likelihood in ", dt,
                    " (|x| up to ", num(max_abs(x)), "; (x - mean)^2 overflows ", dt, " beyond ", num(big), ")");
  auto layer = [&](int64_t w, const at::Tensor& in, bool last_of_encoder, int64_t k, bool decoder) {
    const std::string name = decoder ? c10::str("decoder.", k) : last_of_encoder ? "encoder_head" :
                                                                 c10::str("encoder.", k);
    return c10::str("the forward pass overflows ", dt, " in ", name, " (largest |weight| ", num(max_abs(params[w])),
                    ", largest |bias| ", num(max_abs(params[w + 1])), ", largest |input| ", num(max_abs(in)), ")");
  };
  const int64_t ne = spec_.n_enc_layers(), nd = spec_.n_dec_layers();
  const bool encoded = pass != Pass::Decode, decoded = pass != Pass::Encode;
  // The buffers a pass did not fill are not read (they may be unset or hold another batch's values).
  for (int64_t k = 0; encoded && k + 1 < ne; ++k)
    if (!is_finite(enc_[k])) return layer(2 * k, k == 0 ? x : enc_[k - 1], false, k, false);
  if (encoded && !is_finite(head_)) return layer(2 * (ne - 1), ne == 1 ? x : enc_[ne - 2], true, 0, false);
  if (encoded && spec_.categorical()) {
    if (gumbel_status_ & (kNaN | kPosInf | kAllNegInf))
      return c10::str("the temperature ", num(tau), " is too small for ", dt, ": (logits + Gumbel noise) / "
                      "temperature overflows (encoder logits up to |", num(max_abs(head_)), "|, 1 / temperature = ",
                      num(1.0 / tau), "); use a larger temperature or float64");
  } else if (encoded) {
    const int64_t Z = spec_.latent_dim;
    if (!is_finite(sigma_)) {
      const auto s = head_.narrow(1, Z, Z);
      const char* formula = spec_.scale == Scale::LogVar ? "sigma = exp(s / 2)" : "sigma = exp(s)";
      return c10::str("the posterior scale overflows ", dt, ": ", formula, " with s up to ", num(max_value(s)),
                      " (encoder_head's spread outputs)");
    }
    if (decoded && !is_finite(z_))
      return c10::str("z = mu + sigma * eps overflows ", dt, " (|mu| up to ", num(max_abs(mu_)), ", sigma up to ",
                      num(max_value(sigma_)), ")");
  }
  if (!decoded) return c10::str("the encoder's output overflows ", dt);
  for (int64_t k = 0; k < nd; ++k) {
    const at::Tensor& out = k + 1 == nd ? logits_ : dec_[k];
    const at::Tensor& in = k > 0 ? dec_[k - 1] : encoded ? z_ : x;
    if (!is_finite(out)) return layer(2 * (ne + k), in, false, k, true);
  }
  if (!encoded) return c10::str("the decoder's output overflows ", dt);
  const at::Tensor* log_sigma = spec_.learned_scale() ? &params[spec_.n_params() - 1] : nullptr;
  if (!is_finite(ll_)) return likelihood_overflow(spec_.lik, spec_.lik_params(), x, logits_, log_sigma);
  if (!is_finite(kl_)) {
    if (spec_.categorical())
      return c10::str("the KL overflows ", dt, " (encoder logits up to |", num(max_abs(head_)), "|)");
    return c10::str("the KL overflows ", dt, " (|mu| up to ", num(max_abs(mu_)), ", sigma from ", num(min_value(sigma_)),
                    " to ", num(max_value(sigma_)), ")");
  }
  return c10::str("rec - kl overflows ", dt, " (|rec| up to ", num(max_abs(rec_)), ", kl up to ", num(max_abs(kl_)),
                  ")");
}

template <typename T>
int64_t VaeEngine<T>::first_nonfinite_small_grad(at::TensorList grads) const {
  // In the order the backward computes them: the learned log sigma (from the likelihood), then the layers from
  // the decoder's last to the encoder's first, so that the first one named is where the overflow began.
  if (spec_.learned_scale() && !is_finite(grads[spec_.n_params() - 1])) return spec_.n_params() - 1;
  for (int64_t k = spec_.n_enc_layers() + spec_.n_dec_layers() - 1; k >= 0; --k)
    if (!is_finite(grads[2 * k + 1])) return 2 * k + 1;
  return -1;
}

#define FASTVAE_INSTANTIATE(T)                                                                            \
  template std::string VaeEngine<T>::param_name(int64_t) const;                                            \
  template std::string VaeEngine<T>::overflow_cause(at::TensorList, const at::Tensor&, double, Pass) const; \
  template int64_t VaeEngine<T>::first_nonfinite_small_grad(at::TensorList) const;
FASTVAE_INSTANTIATE(float)
FASTVAE_INSTANTIATE(double)
#undef FASTVAE_INSTANTIATE

}  // namespace cpu
}  // namespace fastvae
