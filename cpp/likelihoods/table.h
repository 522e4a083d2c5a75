// The table of decoder likelihoods: from FASTVAE_LIKELIHOODS come the enum Likelihood, the names Python reads
// (fastvae._C.LIKELIHOODS, LIKELIHOOD_DATA), the parser (vae_spec.cpp), the data checks of the ops and the heads, and
// through visit_likelihood the dispatch of the engine and the fused heads (cpu/likelihood.h), the generic heads
// (generic/heads.cpp) and likelihood_mean (generic/likelihood_mean.cpp).
// A new likelihood is its formula file likelihoods/<name>.h (what it declares: likelihoods/likelihood.h), its
// #include here and its entry at the end of FASTVAE_LIKELIHOODS.
#pragma once
#include <c10/util/Exception.h>

#include <cstdint>

#include "likelihoods/bernoulli.h"
#include "likelihoods/continuous_bernoulli.h"
#include "likelihoods/gaussian.h"
#include "likelihoods/laplace.h"

// X(struct in fastvae::likelihoods), in code order: the position is the enum value and the order of the names.
#define FASTVAE_LIKELIHOODS(X) X(Bernoulli) X(ContinuousBernoulli) X(Gaussian) X(Laplace)

namespace fastvae {

// Decoder likelihood p(x | z) (issue 9 item 1); each value is its formula struct's name.
enum class Likelihood : int64_t {
#define FASTVAE_LIKELIHOOD_ENUM(L) L,
  FASTVAE_LIKELIHOODS(FASTVAE_LIKELIHOOD_ENUM)
#undef FASTVAE_LIKELIHOOD_ENUM
};

// f(likelihoods::L{}) for the formula struct L of lik: the one switch over the likelihoods.
template <class F>
decltype(auto) visit_likelihood(Likelihood lik, F&& f) {
  switch (lik) {
#define FASTVAE_LIKELIHOOD_CASE(L) \
  case Likelihood::L:              \
    return f(likelihoods::L{});
    FASTVAE_LIKELIHOODS(FASTVAE_LIKELIHOOD_CASE)
#undef FASTVAE_LIKELIHOOD_CASE
  }
  TORCH_CHECK(false, "fastvae: internal error: likelihood ", static_cast<int64_t>(lik), " is not in the table");
}

inline const char* likelihood_name(Likelihood lik) {
  return visit_likelihood(lik, [](auto l) { return decltype(l)::name; });
}
inline const char* likelihood_title(Likelihood lik) {
  return visit_likelihood(lik, [](auto l) { return decltype(l)::title; });
}
inline likelihoods::Data likelihood_data(Likelihood lik) {
  return visit_likelihood(lik, [](auto l) { return decltype(l)::data; });
}
// Decoder outputs per pixel: 2 for the Gaussian with a predicted log-variance (mean | log-variance).
inline int64_t likelihood_outputs(Likelihood lik, bool predicted) {
  return predicted ? 2 : visit_likelihood(lik, [](auto l) { return decltype(l)::outputs; });
}

}  // namespace fastvae
