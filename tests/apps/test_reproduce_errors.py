"""Bad arguments to the reproductions (fastvae.reproduce.reproduce) and to the CLI's reproduce: each row is
(call, exception type, message fragment), or (arguments, exit code, fragment of stderr) for the CLI."""
import math

import pytest

from fastvae import cli
from fastvae.reproduce import reproduce

NAN, INF = math.nan, math.inf


def repro(**kw):
    return lambda t: reproduce(kw.pop("name", "stats305c"), t / "out", progress=False, **kw)


REPRODUCE_ROWS = [
    (repro(name="stats"), ValueError, "unknown reproduction 'stats'"),
    (repro(epochs=1.5), TypeError, "epochs must be an integer, got 1.5"),
    (repro(epochs=0), ValueError, "epochs must be an integer >= 1"),
    (repro(limit=0), ValueError, "limit must be an integer >= 1"),
    (repro(limit=2.5), TypeError, "limit must be an integer"),
    (repro(seed=-1), ValueError, "seed must be an integer >= 0"),
    (repro(seed=2**63), ValueError, "seed must be an integer <="),
    (repro(seed=0.5), TypeError, "seed must be an integer"),
    (repro(resume="yes"), TypeError, "resume must be True or False"),
    (repro(kl_weight=2.0), ValueError, "kl_weight applies only to cvae_hw7"),
    (repro(name="cvae_hw7", kl_weight=INF), ValueError, "kl_weight must be a finite number"),
    (repro(name="cvae_hw7", kl_weight=-1.0), ValueError, "kl_weight must be >= 0.0"),
    (repro(name="cvae_hw7", kl_weight="2"), TypeError, "kl_weight must be a real number"),
    (repro(data="/nonexistent/mnist"), FileNotFoundError, "does not exist"),
    (repro(k=5), ValueError, "objective, k, groups and ciwae_beta apply only to iwae_paper, iwae_paper_2layer, not "
                             "stats305c"),
    (repro(objective="iwae"), ValueError, "objective, k, groups and ciwae_beta apply only to iwae_paper"),
    (repro(groups=2), ValueError, "apply only to iwae_paper"),
    (repro(ciwae_beta=0.5), ValueError, "apply only to iwae_paper"),
    (repro(name="iwae_paper", groups=0), ValueError, "groups must be an integer >= 1"),
    (repro(name="iwae_paper", groups=2.0), TypeError, "groups must be an integer, got 2.0"),
    (repro(name="iwae_paper", ciwae_beta=1.5), ValueError, "ciwae_beta must be <= 1.0"),
    (repro(name="iwae_paper", ciwae_beta=NAN), ValueError, "ciwae_beta must be a finite number"),
    (repro(name="iwae_paper", groups=2), ValueError, "groups applies to objectives 'miwae' and"),
    (repro(name="iwae_paper", objective="miwae", ciwae_beta=0.3), ValueError,
     "ciwae_beta applies to objective='ciwae'"),
    (repro(name="iwae_paper", objective="IWAE"), ValueError, "objective must be one of"),
    (repro(name="iwae_paper", k=0), ValueError, "k must be an integer >= 1"),
    (repro(name="iwae_paper", k=5.0), TypeError, "k must be an integer, got 5.0"),
]


@pytest.mark.parametrize("call, error, fragment", REPRODUCE_ROWS)
def test_bad_argument(call, error, fragment, tmp_path):
    with pytest.raises(error) as e:
        call(tmp_path)
    assert fragment in str(e.value)


def test_out_naming_a_file(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("a user's file")
    with pytest.raises(ValueError, match="out must be a folder, got the existing file"):
        reproduce("stats305c", f, progress=False)
    assert f.read_text() == "a user's file"


# CLI rows: (arguments after "reproduce", exit code, fragment of stderr). argparse's own errors exit 2.
CLI_ROWS = [
    (["stats305c", "--out", "{file}"], 1, "out must be a folder, got the existing file"),
    (["stats305c", "--out", "{tmp}/o", "--epochs", "0"], 1, "epochs must be an integer >= 1"),
    (["stats305c", "--out", "{tmp}/o", "--epochs", "1.5"], 2, "invalid int value"),
    (["stats305c", "--out", "{tmp}/o", "--seed", "-1"], 1, "seed must be an integer >= 0"),
    (["stats305c", "--out", "{tmp}/o", "--limit", "0"], 1, "limit must be an integer >= 1"),
    (["stats305c", "--out", "{tmp}/o", "--kl-weight", "2"], 1, "kl_weight applies only to cvae_hw7"),
    (["cvae_hw7", "--out", "{tmp}/o", "--kl-weight", "inf"], 1, "kl_weight must be a finite number"),
    (["cvae_hw7", "--out", "{tmp}/o", "--kl-weight", "nan"], 1, "kl_weight must be a finite number"),
    (["stats305c", "--out", "{tmp}/o", "--data", "{tmp}/nowhere"], 1, "does not exist"),
    (["stats", "--out", "{tmp}/o"], 2, "invalid choice"),
    (["iwae_paper", "--out", "{tmp}/o", "--objective", "vimco"], 2, "invalid choice"),
    (["iwae_paper", "--out", "{tmp}/o", "--objective", "ciwae", "--ciwae-beta", "2"], 1, "ciwae_beta must be <= 1.0"),
    (["iwae_paper", "--out", "{tmp}/o", "--objective", "iwae", "--groups", "3"], 1, "groups applies to objectives"),
    (["stats305c"], 2, "--out"),
]


@pytest.mark.parametrize("args, code, fragment", CLI_ROWS)
def test_cli_bad_argument(args, code, fragment, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv = ["reproduce"] + [a.format(tmp=tmp_path, file=tmp_path / "file") for a in args]
    try:
        got = cli.main(argv)
    except SystemExit as e:  # argparse
        got = e.code
    assert got == code
    assert fragment in capsys.readouterr().err
