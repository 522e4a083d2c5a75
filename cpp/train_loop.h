#pragma once
#include <torch/extension.h>

namespace fastvae {
// Registers fastvae._C.train_vae: whole epochs of VAE training in C++ (see cpp/train_loop.cpp).
void bind_train_loop(pybind11::module_& m);
}  // namespace fastvae
