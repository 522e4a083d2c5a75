"""Write docs/reproductions.md and docs/img/*.png from the output folders of
``python -m fastvae reproduce NAME --out RUNS/NAME`` (numbers are read from each metrics.json).

Usage: python scripts/reproductions_doc.py RUNS   (RUNS holds stats305c/, ese546/, cvae_hw7/, dd2434/ for
docs/reproductions.md, and jang_categorical/, iwae_paper*/ for docs/papers.md)

The CVAE's KL-weight sweep is read from RUNS/cvae_hw7_beta*/ (``reproduce cvae_hw7 --kl-weight B``) if present;
the notebooks' times from RUNS/notebook_times.json
(``python scripts/execute_notebooks.py --times RUNS/notebook_times.json``) if present.
"""
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS, IMG = REPO / "docs", REPO / "docs" / "img"


def fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def figures(name, m, runs):
    lines = []
    for f in m["figures"]:
        target = f"{name}_{f}"
        shutil.copyfile(runs / name / f, IMG / target)
        lines.append(f"![{name} {f}](img/{target})")
    return "\n".join(lines)


def settings_line(m):
    t, d = m["settings"]["train"], m["settings"]["data"]
    beta = f"KL weight beta {t['kl_weight']:g}, " if "kl_weight" in t else ""
    return (f"Settings: {t['epochs']} epochs, batch {t['batch_size']}, Adam lr {t['lr']}, {beta}{t['n_samples']} "
            f"sample(s) of z per image, pixel > {d['threshold']} on the 0..255 scale, seed {m['settings']['seed']}, "
            f"{m['settings']['torch_threads']} torch threads; {m['total_seconds']:.0f} s of training "
            f"({m['wall_seconds']:.0f} s for the whole command).")


def cvae_sweep(runs, chosen):
    """Rows of the KL-weight sweep: the preset's run plus every RUNS/cvae_hw7_beta*/ run, by beta."""
    ms = [chosen] + [json.loads((d / "metrics.json").read_text()) for d in sorted(runs.glob("cvae_hw7_beta*/"))
          if (d / "metrics.json").is_file()]
    rows = {}
    for m in ms:
        rows.setdefault(m["final"]["kl_weight"], m)
    beta0 = chosen["final"]["kl_weight"]
    out = ["| beta | test ELBO | test KL per image | accuracy after epoch 1 / 6 / 11 | z from other images' "
           "posteriors, epoch 11 | spread of a digit's samples |", "|---|---|---|---|---|---|"]
    for beta, m in sorted(rows.items()):
        f, ca = m["final"], m["conditional_accuracy"]
        acc = " / ".join(f"{100 * ca[e]['mean']:.1f}%" for e in sorted(ca, key=int))
        out.append(f"| {beta:g}{' (chosen)' if beta == beta0 else ''} | {fmt(f['test_elbo'])} | {fmt(f['test_kl'])} | "
                   f"{acc} | {100 * ca[str(len(m['test_elbo']))]['posterior_swap']:.1f}% | {fmt(f['sample_spread'])} |")
    return out


def jang_categorical(runs):
    """Jang et al. 2017's categorical VAE from RUNS/jang_categorical/ (``reproduce jang_categorical``)."""
    out = ["## Jang, Gu & Poole 2017: the categorical VAE (Gumbel-softmax)", "",
           "20 categorical variables of 10 classes; encoder 784-512-256 (ReLU) -> 200 logits, decoder 200-256-512-784 "
           "(ReLU) -> Bernoulli logits; Adam 1e-3, batch 100; Gumbel-softmax temperature tau = max(0.5, exp(-3e-5 t)), "
           "updated every 1,000 updates; KL to the uniform prior, analytic. Dynamically binarized MNIST (a fresh "
           "binarization each time an image is used, test images included). The test ELBO is that of the discrete "
           "model: hard Gumbel-max samples into the decoder. Command: `python -m fastvae reproduce jang_categorical "
           "--out runs/jang_categorical`.", ""]
    path = runs / "jang_categorical" / "metrics.json"
    if not path.is_file():
        return out + ["No run of this preset is recorded yet.", ""]
    m = json.loads(path.read_text())
    f, t = m["final"], m["test_elbo"]
    best = min(range(len(t)), key=lambda i: -t[i])
    first = next((i + 1 for i, v in enumerate(t) if -v <= 108.0), None)
    out += ["| quantity | paper | ours |", "|---|---|---|",
            f"| test -ELBO, discrete model, after {f['epochs']} epochs (nats) | {f['paper_test_neg_elbo']} (Table 2, "
            f"Gumbel-softmax) | {fmt(-f['test_elbo'])} |",
            f"| best test -ELBO over the epochs | - | {fmt(-t[best])} (epoch {best + 1}) |",
            f"| first epoch with test -ELBO <= 108 | - | {first if first is not None else 'not reached'} |",
            f"| relaxed objective on the test set at the final tau = {f['temperature']:.3f} | - | "
            f"{fmt(-f['test_elbo_relaxed'])} |",
            f"| training time | - | {m['total_seconds'] / 60:.1f} min "
            f"({sum(m['epoch_seconds']) / len(m['epoch_seconds']):.1f} s per epoch incl. test ELBO, "
            f"{m['settings']['torch_threads']} thread(s)) |", "",
            figures("jang_categorical", m, runs), ""]
    return out


def papers(runs):
    """docs/papers.md: the papers' models (``reproduce iwae_paper``, ``reproduce jang_categorical``)."""
    out = ["# Reproductions of papers' tables", "",
           "Numbers read from the `metrics.json` of `python -m fastvae reproduce NAME` (generated by "
           "`scripts/reproductions_doc.py RUNS`); figures are that command's PNG files. Machine: 2 CPU cores shared "
           "with other work, one torch thread (`OMP_NUM_THREADS=1`).", ""]
    out += jang_categorical(runs) + iwae_paper(runs)
    (DOCS / "papers.md").write_text("\n".join(out))


def init_name(m):
    init = m["settings"].get("init") or {}  # runs before Preset.init started from torch.nn.Linear's default
    if init.get("weights") != "glorot":
        return "torch default"
    return "Glorot, output bias from the data" if init.get("output_bias") else "Glorot"


def paired_layers(dirs, ms):
    """Two layers against one, image by image, for every pair of runs with the same initialization, objective, k,
    epochs and seed that kept their per-image estimates (test_log_px.pt: the same test binarization)."""
    import torch

    def key(m):
        f = m["final"]
        return (init_name(m), f.get("objective_label", f["objective"]), f["k"], f["epochs"], m["settings"]["seed"])

    by = {}
    for d, m in zip(dirs, ms):
        if (d / "test_log_px.pt").is_file():
            by[(key(m), len(m["settings"]["model"].get("upper_latents", ())))] = d / "test_log_px.pt"
    lines = []
    for (k, upper), path in sorted(by.items()):
        if upper != 1 or (k, 0) not in by:
            continue
        diff = torch.load(path).double() - torch.load(by[(k, 0)]).double()
        se = (diff.std() / len(diff) ** 0.5).item()
        lines.append(f"- {k[0]}, {k[1]} k = {k[2]}, {k[3]} epochs, seed {k[4]}: two layers minus one, "
                     f"{diff.mean().item():+.2f} +- {se:.2f} nats per image (paired over the {len(diff):,} test "
                     f"images; the two layers' estimate is higher on {(diff > 0).double().mean().item():.0%} of them)")
    if not lines:
        return []
    return ["", "Test log p(x) of two layers against one at equal epochs, per image (the runs' `test_log_px.pt`):",
            ""] + lines


def iwae_paper(runs):
    """The IWAE paper's Table 1 rows from every RUNS/iwae_paper*/ run (``reproduce iwae_paper[_2layer] [--k K
    --objective O] [--epochs N]``), one and two stochastic layers."""
    dirs = [d for d in sorted(runs.glob("iwae_paper*/")) if (d / "metrics.json").is_file()]
    ms = [json.loads((d / "metrics.json").read_text()) for d in dirs]
    out = ["## Burda et al. 2016, Table 1 (IWAE paper, MNIST, one and two stochastic layers)", "",
           "One layer (`iwae_paper`): 784-200-200-50 tanh encoder with a Gaussian posterior (log-scale head), "
           "50-200-200-784 tanh decoder with Bernoulli logits. Two layers (`iwae_paper_2layer`, section 5): "
           "q(z1 | x) from 784-200-200 tanh (z1 of 100), q(z2 | z1) from 100-100-100 tanh (z2 of 50), p(z1 | z2) from "
           "50-100-100 tanh, p(x | z1) from 100-200-200-784 tanh. Dynamically binarized training images; Adam "
           "(0.9, 0.999, eps 1e-4), batch 20, 3^i epochs at learning rate 1e-3 * 10^(-i/7) for i = 0..7 (3,280 "
           "epochs; `--epochs N` keeps the first N). Initialization (the preset's `init`): as the authors' code "
           "(yburda/iwae) starts, Glorot & Bengio's uniform weights, zero biases and the output bias at the logits of "
           "the training images' mean intensities (`VAE.glorot_init_`, `VAE.init_output_bias_`); runs marked "
           "\"torch default\" started from `torch.nn.Linear`'s initialization, before the preset declared it. "
           "Test log p(x) is the k = 5000 importance-weighted estimate on one "
           "binarization of the 10,000 test images (seeded), +- its standard error over the images; active units "
           "(section 5.2: Cov_x(E_q[z_u | x]) > 1e-2) on the same images, per stochastic layer. Training time is the "
           "sum of the epochs' times (with the per-epoch test ELBO), over every session of a resumed run. Commands: "
           "`python -m fastvae reproduce iwae_paper --out runs/iwae_paper` (k = 1), "
           "`... --k 5 --objective iwae --out runs/iwae_paper_k5`, `... iwae_paper_2layer --epochs 30 --out "
           "runs/iwae_paper_2layer_e30`.", ""]
    if not ms:
        return out + ["No run of this preset is recorded yet.", ""]
    out += ["| model | initialization | objective | k | epochs | test -log p(x), nats (k = 5000) | "
            "paper (3,280 epochs) | active units | training time | machine |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in ms:
        f = m["final"]
        layers = 1 + len(m["settings"]["model"].get("upper_latents", ()))
        paper = "-" if f["paper_test_nll"] is None else f"{f['paper_test_nll']:.2f}"
        units = " / ".join(str(u) for u in f["active_units"]) if "active_units" in f else "-"
        init = init_name(m)
        label = f.get("objective_label", f["objective"])  # runs before the label was recorded: the name alone
        out.append(f"| {layers} layer{'s' if layers > 1 else ''} | {init} | {label} | {f['k']} | {f['epochs']} | "
                   f"{fmt(f['test_nll'])} +- {fmt(f['test_nll_stderr'])} | {paper} | {units} | "
                   f"{sum(m['epoch_seconds']) / 3600:.2f} h | {m['machine']['processor']}, "
                   f"{m['machine']['torch_threads']} thread(s) |")
    out += paired_layers(dirs, ms)
    notes = runs / "iwae_paper_notes.md"  # what the runs' metrics cannot say (the CPU's name, the commit, pauses)
    if notes.is_file():
        out += ["", notes.read_text().strip()]
    k1 = runs / "iwae_paper" / "metrics.json"  # the figures of the full k = 1 run
    return out + ["", figures("iwae_paper", json.loads(k1.read_text()), runs) if k1.is_file() else "", ""]


def main(runs):
    runs = Path(runs)
    IMG.mkdir(parents=True, exist_ok=True)
    papers(runs)
    if not all((runs / n / "metrics.json").is_file() for n in ("ese546", "stats305c", "cvae_hw7", "dd2434")):
        print(f"docs/papers.md written; docs/reproductions.md needs the four homework runs in {runs}")
        return
    M = {n: json.loads((runs / n / "metrics.json").read_text()) for n in ("ese546", "stats305c", "cvae_hw7", "dd2434")}
    out = ["# Reproductions of the four homeworks", "",
           "Every number below is read from the `metrics.json` that "
           "`python -m fastvae reproduce NAME --out DIR` wrote (generated by `scripts/reproductions_doc.py`); "
           "the figures are that command's PNG files. The notebooks in `notebooks/` draw the same figures "
           "with the same settings. Machine: 2 CPU cores shared with other work.", "",
           "Commands (from the repository root, with the in-place build):", "",
           "    OMP_NUM_THREADS=1 PYTHONPATH=python python -m fastvae reproduce NAME --out runs/NAME --data /path/to/mnist",
           "    for B in 1 3 4 6; do OMP_NUM_THREADS=1 PYTHONPATH=python python -m fastvae reproduce cvae_hw7 "
           "--kl-weight $B --out runs/cvae_hw7_beta$B --data /path/to/mnist; done  # the CVAE's KL-weight sweep",
           "    python scripts/reproductions_doc.py runs", "",
           "`OMP_NUM_THREADS=1` because these runs shared the 2-core machine with other builds, and a busy core "
           "makes two OpenMP threads wait for each other; on an idle machine the default two threads are faster. "
           "Times below are wall-clock seconds under that shared load.", ""]

    m = M["ese546"]
    f = m["final"]
    out += ["## ESE 546 HW5, Problem 1 (14x14 MNIST, 8-D latent)", "",
            settings_line(m), "",
            "Choices the homework leaves open (see `fastvae/presets.py`): Adam with lr 1e-3, batch 100, 50 epochs "
            f"of the 10,000 training images = {f['updates']} updates; 28x28 -> 14x14 by averaging 2x2 blocks, then "
            "pixel > 128; the 16-unit head is read as 8 means and 8 log-variances (as in the solution); "
            "the validation set is 100 training images (10 per digit) outside the 10,000; training and validation "
            "are drawn with seeds 0 and 1 of `balanced_subset`.", "",
            "| quantity | homework | ours |", "|---|---|---|",
            f"| validation E_q log p(x \\| z) after update {m['val_update'][0]} | not reported | {fmt(f['val_rec_first'])} |",
            f"| validation E_q log p(x \\| z) after update {m['val_update'][-1]} | not reported | {fmt(f['val_rec_last'])} |",
            f"| train ELBO, last epoch | not reported | {fmt(f['train_elbo'])} |",
            f"| test ELBO (10,000 test images), last epoch | not reported | {fmt(f['test_elbo'])} |",
            f"| IWAE log p(x), k = {m['iwae']['k']}, {m['iwae']['n_images']} test images | not reported | "
            f"{fmt(m['iwae']['log_px'])} (ELBO on the same images {fmt(m['iwae']['elbo_same_images'])}) |", "",
            "(iii) ELBO terms per update, (iv) reconstructions, (v) prior samples, (vi) training vs validation:", "",
            figures("ese546", m, runs), ""]

    m = M["stats305c"]
    r = m["reported"]
    out += ["## STATS 305C HW6, Problem 3 (28x28 MNIST, 2-D latent)", "", settings_line(m), "",
            "| quantity | homework | ours |", "|---|---|---|",
            f"| train ELBO, epoch 1 | {r['epoch1_train_elbo']} | {fmt(m['train_elbo'][0])} |",
            f"| test ELBO, epoch 1 | {r['epoch1_test_elbo']} | {fmt(m['test_elbo'][0])} |",
            f"| train ELBO, epoch {len(m['train_elbo'])} | {r['train_elbo']} | {fmt(m['train_elbo'][-1])} |",
            f"| test ELBO, epoch {len(m['test_elbo'])} | {r['test_elbo']} | {fmt(m['test_elbo'][-1])} |",
            f"| training time | \"10 minutes\" | {m['total_seconds']:.0f} s "
            f"({sum(m['epoch_seconds']) / len(m['epoch_seconds']):.1f} s per epoch incl. test ELBO) |", "",
            "ELBO curves, (3e) samples, (3f) posterior means, (3g) interpolations:", "",
            figures("stats305c", m, runs), ""]

    m = M["cvae_hw7"]
    ca = m["conditional_accuracy"]
    out += ["## Deep Learning HW7 (conditional VAE, 40-D latent)", "", settings_line(m), "",
            f"Sample quality is judged by an MNIST classifier ({m['classifier']['architecture']}, 4 epochs, "
            f"test accuracy {100 * m['classifier']['test_accuracy']:.2f}%): the fraction of "
            f"{m['samples_per_class']} samples per digit that it assigns to the conditioned digit, averaged over "
            "the 10 digits. The homework reports no numbers.", "",
            "| after epoch | train ELBO | test ELBO | accuracy, z ~ N(0, I) | accuracy, z from other images' posteriors |",
            "|---|---|---|---|---|"]
    out += [f"| {e} | {fmt(m['train_elbo'][int(e) - 1])} | {fmt(m['test_elbo'][int(e) - 1])} | "
            f"{100 * ca[e]['mean']:.1f}% | {100 * ca[e]['posterior_swap']:.1f}% |" for e in sorted(ca, key=int)]
    f = m["final"]
    out += ["", "### The weight of the KL term", "",
            "The homework's loss is a binary cross-entropy plus a KL \"regularization\" term, and its text does not "
            "say how the two are weighted. With the ELBO as written (beta = 1: summed BCE + KL), prior samples lose "
            "their label as training goes on: the sigmoid on the mean head keeps every posterior mean in (0, 1)^40, "
            "z carries much of the image (its KL is large), and N(0, I) draws fall where the decoder saw few codes; "
            "decoded from other images' posterior codes, the label still controls the digit. fastvae therefore "
            "trains the CVAE on rec - beta * KL (beta-VAE, Higgins et al. 2017; the ELBOs reported stay "
            "unweighted) and the preset uses the smallest beta of {1, 2, 3, 4, 6} whose samples reach the bar "
            "(>= 90% classified as the conditioned digit after 11 epochs) while the samples of a digit still "
            "differ. One seed per beta, 11 epochs on all 60,000 images; the columns are read from "
            "`reproduce cvae_hw7 --kl-weight B`:", ""]
    out += cvae_sweep(runs, m)
    out += ["", "Spread of a digit's samples: mean Euclidean distance between two of the 100 decoder-mean images of "
            f"one digit (pixels in [0, 1]), averaged over digits; about 0 if they collapse to one image. For "
            f"reference, 100 test images of one digit (intensities / 255) give {fmt(f['test_image_spread'])}; "
            "decoder means are blurred averages, so they spread less than real images. Larger beta buys label "
            "control with ELBO (the KL shrinks, the reconstruction term shrinks more) and with variety: beta = 1 "
            "spreads most because its samples are scrawls of any digit, larger betas give cleaner but more "
            f"uniform, blurrier digits. Chosen: beta = {f['kl_weight']:g}, with final conditional-sample accuracy "
            f"{100 * f['conditional_accuracy']:.1f}% after epoch {len(m['test_elbo'])}."]
    out += ["", "Loss per iteration and 10 samples of each digit after epochs 1, 6, 11:", "",
            figures("cvae_hw7", m, runs), ""]

    m = M["dd2434"]
    rep = m["reported"]["epoch_loss"]
    out += ["## DD2434 Assignment 1B (200-D latent)", "", settings_line(m), "",
            "The homework divided each epoch's summed loss by 59,900 (`batch_idx * batch_size` of the last batch) "
            "instead of 60,000; both divisors are shown. Our numbers are the running average over the epoch's "
            "minibatches, before each update, as the homework's were. The homework's `sqrt(var + 1e-10)` is "
            "`exp(logvar / 2)` here.", "",
            "| epoch | homework (/ 59,900) | ours / 59,900 | ours / 60,000 |", "|---|---|---|---|"]
    out += [f"| {e} | {h:.2f} | {fmt(b)} | {fmt(a)} |" for e, (h, a, b) in
            enumerate(zip(rep, m["loss_per_image"], m["loss_per_image_homework_divisor"]), 1)]
    out += ["", "Per-epoch loss, test images with reconstructions, prior samples:", "",
            figures("dd2434", m, runs), ""]
    times = runs / "notebook_times.json"  # written by scripts/execute_notebooks.py --times
    if times.exists():
        t = json.loads(times.read_text())
        out += ["## Notebooks", "", f"`{t['command']}` executed the notebooks with their full settings and stored "
                f"them with their outputs in {t['total_seconds']} s on the shared 2-core machine (default torch "
                "threads):", "",
                "| notebook | seconds |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in t["notebooks"].items()] + [""]
    (DOCS / "reproductions.md").write_text("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
