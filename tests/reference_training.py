"""fit's training loop in plain PyTorch, shared by the tests that compare VAE.fit with it (test_training,
test_pixels, test_kl_warmup): the same generator calls in the same order as cpp/train_loop.cpp, fastvae.elbo
(the dense op, not the loop's sparse input layer) and torch.optim.Adam."""
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
