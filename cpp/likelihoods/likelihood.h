// What a likelihood's formula file (likelihoods/<name>.h) declares, and the types those files share. The list of
// likelihoods, and everything generated from it, is likelihoods/table.h.
//
// A formula file defines one struct in fastvae::likelihoods, whose name is the likelihood's enum value:
//   name      the likelihood's name in Python (fastvae._C.LIKELIHOODS);
//   title     how messages name it ("... for the <title> likelihood");
//   data      the data it takes (Data below), checked by the ops and the heads;
//   outputs   decoder outputs per pixel;
//   log_density<T>(a, x, params, dlda)
//             log p(x | a) of one pixel with decoder output a and, if dlda, d log p / da: the fused CPU rows of the
//             engine and the heads loop over it (cpu/likelihood.h, scalar_row) unless the likelihood has a
//             hand-written row there (the first three do; theirs may use it for their scalar tails or omit it);
//   log_lik(x, out, params, grad)
//             the ATen expression of the generic heads (every device): log p(x | out) summed over the last
//             dimension, and d log p / d out if grad;
//   mean(out, params)
//             E[x | out] in out's dtype, a new tensor (op likelihood_mean, the decoders' mean).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

namespace fastvae {
namespace likelihoods {

// The data a likelihood takes: 0/1 entries, intensities in [0, 1], or real values (finite for the engine ops, no
// NaN for the heads). Python reads them by name (data_name) as fastvae._C.LIKELIHOOD_DATA.
enum class Data { Binary, UnitInterval, Real };

inline const char* data_name(Data d) {
  switch (d) {
    case Data::Binary: return "binary";
    case Data::UnitInterval: return "unit_interval";
    case Data::Real: return "real";
  }
  return "";
}

// What a likelihood reads besides the decoder output a and the data x: the fixed scale (architecture argument
// gaussian_sigma: the Gaussian's sigma, the Laplace's b) and whether the decoder predicts the Gaussian's
// log-variance (a row then holds 2D outputs, the means and then the log-variances).
struct Params {
  double scale = 1.0;
  bool predicted = false;
};

}  // namespace likelihoods
}  // namespace fastvae
