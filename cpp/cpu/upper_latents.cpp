// Stochastic layers above z1 (Burda et al. 2016, Sec. 5; docs/engine.md, "Upper stochastic layers"): members of
// VaeEngine that treat the layers above z1 as its prior. For upper layer u (z_u above z_b, z_b = z1 for u = 0):
//   q(z_u | z_b) = N(mu_q, sigma_q^2) from the q MLP of z_b,  z_u = mu_q + sigma_q eps_u,
//   p(z_b | z_u) = N(mu_p, sigma_p^2) from the p MLP of z_u,  p(z_top) = N(0, I),
//   log p_upper(z1) = sum_u [log p(z_b | z_u) - log q(z_u | z_b)] + log p(z_top)   (the 2 pi terms cancel in log w).
// The elementwise passes here are a few thousand entries per update: plain loops, no parallel region.
#include "cpu/vae_engine.h"

#include <cmath>

namespace fastvae {
namespace cpu {

namespace {
// sigma and d sigma / d s of a spread head s: exp(s / 2) for a log-variance, exp(s) for a log standard deviation.
template <typename T>
inline T spread(Scale sc, T s) { return sc == Scale::LogVar ? std::exp(T(0.5) * s) : std::exp(s); }
template <typename T>
inline T spread_grad(Scale sc, T sigma) { return sc == Scale::LogVar ? T(0.5) * sigma : sigma; }
template <typename T>
inline T log_spread(Scale sc, T s) { return sc == Scale::LogVar ? T(0.5) * s : s; }
}  // namespace

template <typename T>
void VaeEngine<T>::reserve_upper(int64_t N, const at::TensorOptions& opt) {
  if (N == N_up_) return;
  const auto& s = spec_;
  auto mk = [&](int64_t r, int64_t c) { return at::empty({r, c}, opt); };
  up_.assign(s.n_upper(), UpperLayer{});
  for (int64_t u = 0; u < s.n_upper(); ++u) {
    auto& L = up_[u];
    for (int64_t k = 0; k < s.n_up_mlp_layers(); ++k) {
      L.qa.push_back(mk(N, s.up_out(u, false, k)));
      L.gqa.push_back(mk(N, s.up_out(u, false, k)));
      L.pa.push_back(mk(N, s.up_out(u, true, k)));
      L.gpa.push_back(mk(N, s.up_out(u, true, k)));
    }
    L.z = mk(N, s.up_dim(u));
    L.sig_q = mk(N, s.up_dim(u));
    L.sig_p = mk(N, s.up_below(u));
    L.gz = mk(N, s.up_dim(u));
    L.gin_q = mk(N, s.up_below(u));
    L.gin_p = mk(N, s.up_dim(u));
  }
  delta_ = at::empty({N}, opt);
  g_up1_ = mk(N, s.latent_dim);
  row_w_ = mk(2, N);
  N_up_ = N;
}

template <typename T>
void VaeEngine<T>::split_noise(const at::Tensor& eps) {
  if (!spec_.hierarchical()) return;
  const int64_t L = eps.size(0), B = eps.size(1), Z = spec_.latent_dim, W = spec_.noise_dim() - Z;
  if (!eps1_.defined() || eps1_.size(0) != L || eps1_.size(1) != B) {
    eps1_ = at::empty({L, B, Z}, eps.options());
    eps_up_ = at::empty({L, B, W}, eps.options());
  }
  eps1_.copy_(eps.narrow(2, 0, Z));
  eps_up_.copy_(eps.narrow(2, Z, W));
}

template <typename T>
void VaeEngine<T>::up_mlp_forward(at::TensorList params, int64_t u, bool p, const at::Tensor& in,
                                  std::vector<at::Tensor>& acts) {
  const int64_t nl = spec_.n_up_mlp_layers();
  for (int64_t k = 0; k < nl; ++k) {
    const int64_t w = spec_.up_param(u, p, k);
    layer_forward(k == 0 ? in : acts[k - 1], params[w], params[w + 1], acts[k],
                  k + 1 == nl ? Act::Identity : spec_.act, nullptr, 1, 0);
  }
}

template <typename T>
void VaeEngine<T>::up_mlp_backward(at::TensorList params, int64_t u, bool p, const at::Tensor& in,
                                   std::vector<at::Tensor>& acts, std::vector<at::Tensor>& gacts,
                                   at::TensorList grads, at::Tensor* d_in, bool param_grads) {
  const int64_t nl = spec_.n_up_mlp_layers();
  for (int64_t k = nl - 1; k >= 0; --k) {
    const int64_t w = spec_.up_param(u, p, k);
    layer_backward(gacts[k], acts[k], k == 0 ? in : acts[k - 1], params[w], k + 1 == nl ? Act::Identity : spec_.act,
                   grads[w], grads[w + 1], k == 0 ? d_in : &gacts[k - 1], nullptr, 1, 0, param_grads);
  }
}

template <typename T>
void VaeEngine<T>::upper_forward(at::TensorList params) {
  const auto& s = spec_;
  const int64_t N = z_.size(0), Z1 = s.latent_dim, W = s.noise_dim() - Z1;
  const Scale sc = s.scale;
  reserve_upper(N, z_.options());
  T* delta = delta_.template data_ptr<T>();
  {  // + |z1|^2 / 2: the upper layers replace the engine's N(0, I) prior of z1
    const T* z1 = z_.template data_ptr<T>();
    for (int64_t r = 0; r < N; ++r) {
      T acc = 0;
      for (int64_t j = 0; j < Z1; ++j) acc += z1[r * Z1 + j] * z1[r * Z1 + j];
      delta[r] = T(0.5) * acc;
    }
  }
  const T* ep = eps_up_.template data_ptr<T>();  // row r = l B + i, like z_
  int64_t col = 0;                      // layer u's noise columns start here
  for (int64_t u = 0; u < s.n_upper(); ++u) {
    auto& Ly = up_[u];
    const at::Tensor& below = u == 0 ? z_ : up_[u - 1].z;
    const int64_t Zu = s.up_dim(u), Zb = s.up_below(u);
    up_mlp_forward(params, u, false, below, Ly.qa);
    {  // z_u = mu_q + sigma_q eps_u; - log q(z_u | z_b) = |eps_u|^2 / 2 + sum log sigma_q
      const T* h = Ly.qa.back().template data_ptr<T>();
      T* z = Ly.z.template data_ptr<T>();
      T* sg = Ly.sig_q.template data_ptr<T>();
      for (int64_t r = 0; r < N; ++r) {
        T acc = 0;
        for (int64_t j = 0; j < Zu; ++j) {
          const T m = h[r * 2 * Zu + j], sv = h[r * 2 * Zu + Zu + j], e = ep[r * W + col + j];
          const T sd = spread(sc, sv);
          sg[r * Zu + j] = sd;
          z[r * Zu + j] = m + sd * e;
          acc += T(0.5) * e * e + log_spread(sc, sv);
        }
        delta[r] += acc;
      }
    }
    up_mlp_forward(params, u, true, Ly.z, Ly.pa);
    {  // log p(z_b | z_u) = -|(z_b - mu_p) / sigma_p|^2 / 2 - sum log sigma_p
      const T* h = Ly.pa.back().template data_ptr<T>();
      const T* zb = below.template data_ptr<T>();
      T* sg = Ly.sig_p.template data_ptr<T>();
      for (int64_t r = 0; r < N; ++r) {
        T acc = 0;
        for (int64_t j = 0; j < Zb; ++j) {
          const T m = h[r * 2 * Zb + j], sv = h[r * 2 * Zb + Zb + j];
          const T sd = spread(sc, sv), d = (zb[r * Zb + j] - m) / sd;
          sg[r * Zb + j] = sd;
          acc += T(0.5) * d * d + log_spread(sc, sv);
        }
        delta[r] -= acc;
      }
    }
    col += Zu;
  }
  {  // log p(z_top) = -|z_top|^2 / 2
    const int64_t Zt = s.up_dim(s.n_upper() - 1);
    const T* z = up_.back().z.template data_ptr<T>();
    for (int64_t r = 0; r < N; ++r) {
      T acc = 0;
      for (int64_t j = 0; j < Zt; ++j) acc += z[r * Zt + j] * z[r * Zt + j];
      delta[r] -= T(0.5) * acc;
    }
  }
}

// Backward through the upper layers, top down. gz of each layer collects d/dz_u of the terms above and beside it,
// weighted by a rho; the p MLPs' parameter gradients take the weights a (the decoder's side, like DReG's decoder),
// everything that reaches the encoder's side (the q MLPs and z1) a rho.
template <typename T>
void VaeEngine<T>::upper_backward(at::TensorList params, const T* u, const T* c, const T* rho, IwaeEstimator est,
                                  int64_t B, at::TensorList grads, bool theta, bool phi) {
  const auto& s = spec_;
  const int64_t N = z_.size(0), Z1 = s.latent_dim, W = s.noise_dim() - Z1, U = s.n_upper();
  const Scale sc = s.scale;
  T* a = row_w_.template data_ptr<T>();
  T* ar = a + N;
  for (int64_t r = 0; r < N; ++r) {
    a[r] = u[r % B] * c[r];
    ar[r] = rho ? a[r] * rho[r] : a[r];
  }
  if (phi) {
    for (int64_t v = 0; v + 1 < U; ++v) up_[v].gz.zero_();
    const int64_t Zt = s.up_dim(U - 1);
    T* g = up_.back().gz.template data_ptr<T>();
    const T* z = up_.back().z.template data_ptr<T>();
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < Zt; ++j) g[r * Zt + j] = -ar[r] * z[r * Zt + j];  // log p(z_top)
    T* g1 = g_up1_.template data_ptr<T>();
    const T* z1 = z_.template data_ptr<T>();
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < Z1; ++j) g1[r * Z1 + j] = ar[r] * z1[r * Z1 + j];  // cancels the N(0, I) prior's
  }
  const T* ep = eps_up_.template data_ptr<T>();
  int64_t col = W;
  for (int64_t uu = U - 1; uu >= 0; --uu) {
    auto& Ly = up_[uu];
    const at::Tensor& below = uu == 0 ? z_ : up_[uu - 1].z;
    T* gzb = phi ? (uu == 0 ? g_up1_ : up_[uu - 1].gz).template data_ptr<T>() : nullptr;
    const int64_t Zu = s.up_dim(uu), Zb = s.up_below(uu);
    col -= Zu;
    {  // log p(z_b | z_u): the p head's gradient (weights a), and d/dz_b (weights a rho)
      const T* h = Ly.pa.back().template data_ptr<T>();
      const T* sg = Ly.sig_p.template data_ptr<T>();
      const T* zb = below.template data_ptr<T>();
      T* gh = Ly.gpa.back().template data_ptr<T>();
      for (int64_t r = 0; r < N; ++r)
        for (int64_t j = 0; j < Zb; ++j) {
          const T sd = sg[r * Zb + j], d = (zb[r * Zb + j] - h[r * 2 * Zb + j]) / sd;
          gh[r * 2 * Zb + j] = a[r] * d / sd;
          gh[r * 2 * Zb + Zb + j] = a[r] * (d * d - T(1)) * spread_grad(sc, sd) / sd;
          if (gzb) gzb[r * Zb + j] -= ar[r] * d / sd;
        }
    }
    up_mlp_backward(params, uu, true, Ly.z, Ly.pa, Ly.gpa, grads, phi ? &Ly.gin_p : nullptr, theta);
    if (!phi) continue;
    T* gz = Ly.gz.template data_ptr<T>();
    {  // the p MLP's gradient with respect to z_u (rho per row), and - log q(z_u | z_b)'s: + eps_u / sigma_q
      const T* gp = Ly.gin_p.template data_ptr<T>();
      const T* sg = Ly.sig_q.template data_ptr<T>();
      for (int64_t r = 0; r < N; ++r) {
        const T f = rho ? rho[r] : T(1);
        for (int64_t j = 0; j < Zu; ++j)
          gz[r * Zu + j] += f * gp[r * Zu + j] + ar[r] * ep[r * W + col + j] / sg[r * Zu + j];
      }
    }
    // The q head: the path z_u = mu_q + sigma_q eps_u, and log q(z_u | z_b)'s own dependence on mu_q and sigma_q:
    // - eps / sigma and (1 - eps^2) / sigma (weights a rho). Reparam adds it to the path (one pass; with the
    // eps / sigma above it sums to d/dsigma log sigma); stl and dreg hold q's parameters fixed in it, so it reaches
    // z_b only (a second pass, without parameter gradients).
    const bool fixed_q = est != IwaeEstimator::Reparam;
    for (int pass = 0; pass < (fixed_q ? 2 : 1); ++pass) {
      const T* sg = Ly.sig_q.template data_ptr<T>();
      T* gh = Ly.gqa.back().template data_ptr<T>();
      for (int64_t r = 0; r < N; ++r)
        for (int64_t j = 0; j < Zu; ++j) {
          const T sd = sg[r * Zu + j], e = ep[r * W + col + j], dsd = spread_grad(sc, sd);
          const T own_mu = -ar[r] * e / sd, own_sd = ar[r] * (T(1) - e * e) / sd;
          const T path = pass == 0 ? gz[r * Zu + j] : T(0);
          const bool own = !fixed_q || pass == 1;
          gh[r * 2 * Zu + j] = path + (own ? own_mu : T(0));
          gh[r * 2 * Zu + Zu + j] = (path * e + (own ? own_sd : T(0))) * dsd;
        }
      up_mlp_backward(params, uu, false, below, Ly.qa, Ly.gqa, grads, &Ly.gin_q, pass == 0);
      const T* gq = Ly.gin_q.template data_ptr<T>();
      for (int64_t k = 0; k < N * Zb; ++k) gzb[k] += gq[k];
    }
  }
}

// The class is instantiated in vae_engine.cpp; the members defined here, here.
#define FASTVAE_UPPER_MEMBERS(T)                                                                                   \
  template void VaeEngine<T>::reserve_upper(int64_t, const at::TensorOptions&);                                  \
  template void VaeEngine<T>::split_noise(const at::Tensor&);                                                     \
  template void VaeEngine<T>::up_mlp_forward(at::TensorList, int64_t, bool, const at::Tensor&,                    \
                                             std::vector<at::Tensor>&);                                           \
  template void VaeEngine<T>::up_mlp_backward(at::TensorList, int64_t, bool, const at::Tensor&,                   \
                                              std::vector<at::Tensor>&, std::vector<at::Tensor>&, at::TensorList, \
                                              at::Tensor*, bool);                                                 \
  template void VaeEngine<T>::upper_forward(at::TensorList);                                                      \
  template void VaeEngine<T>::upper_backward(at::TensorList, const T*, const T*, const T*, IwaeEstimator, int64_t, \
                                             at::TensorList, bool, bool);
FASTVAE_UPPER_MEMBERS(float)
FASTVAE_UPPER_MEMBERS(double)
#undef FASTVAE_UPPER_MEMBERS

}  // namespace cpu
}  // namespace fastvae
