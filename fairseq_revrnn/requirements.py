"""A clear message when the fairseq side of the plugin is used without fairseq."""

INSTALL_HINT = (
    "fairseq_revrnn's models and criterions need fairseq. On Python 3.11 install the maintained fork with "
    "`pip install --no-deps --no-build-isolation fairseq-fixed==0.12.3.1` (torch, numpy and cython first), "
    "then its dependencies: hydra-core==1.3.2 omegaconf==2.3.0 regex sacrebleu tqdm bitarray scikit-learn. "
    "The Makefile's `make env` does all of this."
)


def require_fairseq() -> None:
    """Raise ImportError with install instructions if fairseq cannot be imported."""
    try:
        import fairseq  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from err
