"""fit's training loop in plain PyTorch, shared by the tests that compare VAE.fit with it (test_training,
test_pixels, test_kl_warmup): the same generator calls in the same order as cpp/train_loop.cpp, fastvae.elbo
(the dense op, not the loop's sparse input layer) and torch.optim.Adam; and the comparison of the trained
weights that those tests and test_iwae_training make (assert_trained_alike)."""
import torch

import fastvae


def model_pixels(images, pixels, threshold, g):
    """What the loop feeds the model (cpp/train_loop.cpp gather_pixels): pixel > threshold, p / 255, or
    dynamic draws u ~ U(0, 1) with one uniform_ of [batch, D], keeping u < pixel / 255."""
    p = images.float() / 255
    if pixels == "threshold":
        return (images > threshold).float()
    if pixels == "intensity":
        return p
    u = torch.empty(images.shape).uniform_(0, 1, generator=g)
    return (u < p).float()


def reference_fit(model, images, labels=None, *, updates, pixels="threshold", batch_size=64, n_samples=1, lr=1e-3,
                  betas=(0.9, 0.999), eps=1e-8, threshold=127, kl_weight=1.0, kl_warmup=0, seed=0):
    """``updates`` updates of ``model`` in place: per epoch one randperm, per batch the pixel draws (dynamic)
    then one normal_ of [L, batch, Z]; loss -mean(rec - beta * kl) with beta = kl_weight, or
    kl_weight * min(1, t / kl_warmup) after t optimizer steps when kl_warmup > 0."""
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    b = min(batch_size, n)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    done = 0
    while done < updates:
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, b):
            idx = perm[s:s + b]
            xb = model_pixels(images[idx], pixels, threshold, g)
            e = torch.empty(n_samples, len(idx), model.latent_dim).normal_(0, 1, generator=g)
            out = fastvae.elbo(model, xb, eps=e, y=None if labels is None else labels[idx])
            beta = kl_weight * min(1.0, done / kl_warmup) if kl_warmup > 0 else kl_weight
            loss = -(out.rec - beta * out.kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == updates:
                return


def assert_trained_alike(model, ref, *, max_diff, min_close=0.97):
    """The C++ loop's weights after a few updates against the plain PyTorch loop's from the same start.

    Float32 rounding alone moves the weights by <= 1e-5 here. But the two sides sum in different orders (sparse
    input layer, fused gradients, and a BLAS that picks its kernels by CPU), so a ReLU unit whose pre-activation
    comes within rounding of 0 for an image can take the other slope on one side only; that image's gradient to
    the unit's weights then differs, and so do those weights: with Adam's eps small against the gradients a step
    is about lr whatever the gradient's size, so by up to a step or two (6e-4 at lr 1e-3 seen on an AVX-512
    Xeon). So: at least min_close of each tensor within 1e-5, none beyond max_diff (the callers': a few steps).
    A wrong gradient would move nearly every weight.
    """
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        close = torch.isclose(p, q, rtol=1e-5, atol=1e-5)
        assert close.float().mean() >= min_close, f"{name}: {(~close).sum().item()} of {p.numel()} weights differ"
        torch.testing.assert_close(p, q, rtol=0, atol=max_diff, msg=lambda m: f"{name}: {m}")
