"""A small MNIST classifier (plain PyTorch MLP) used to judge conditional samples of the CVAE."""
import torch
from torch import nn


def train_classifier(x_train: torch.Tensor, y_train: torch.Tensor, *, epochs: int = 4, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0) -> nn.Module:
    """MLP 784 -> 512 -> 256 -> 10 (ReLU), Adam, cross-entropy, on intensities in [0, 1].

    x_train: uint8 [N, 28, 28] or [N, 784]; y_train: int64 [N]. Returns the model in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = x_train.reshape(len(x_train), -1).float() / 255
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch_size):
            b = perm[s:s + batch_size]
            loss = nn.functional.cross_entropy(net(x[b]), y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images (uint8 0..255 or float in [0, 1], [N, 784] or [N, 28, 28]) classified as labels."""
    x = images.reshape(len(images), -1)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return float((net(x).argmax(1) == labels).float().mean())
