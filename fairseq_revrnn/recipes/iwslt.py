"""IWSLT TED talks for translation: the paper's IWSLT 2016 en->de and fairseq's usual IWSLT14 de->en.

Writes normalised, Moses-tokenised (sacremoses), lowercased text
``{train,valid,test}.{src,tgt}`` into DEST, ready for fairseq-preprocess; with
``--bpe sentencepiece`` also a joint sentencepiece BPE model ``spm.model`` and
the encoded text ``{train,valid,test}.bpe.{src,tgt}``.

Splits:
  2016 (the paper): train = train.tags, valid = IWSLT16.TED.tst2013, test = IWSLT16.TED.tst2014.
  2014 (fairseq's prepare-iwslt14.sh): valid = every 23rd line of the cleaned train.tags,
       train = the rest, test = IWSLT14.TED.dev2010 + TEDX.dev2012 + TED.tst2010..2012 (in that order).

Training text: lines of train.tags that start with '<' are metadata (<url>,
<talkid>, <keywords>, <speaker>, <reviewer>, <translator>, ...) and are
dropped, except <title> and <description>, whose text is kept as fairseq's
prepare-iwslt14.sh keeps it. Pairs are then cleaned like Moses
clean-corpus-n.perl -ratio 1.5 1 175: both sides 1..175 tokens, neither side
more than 1.5 times as long as the other. Valid and test text is the content of
the <seg id="N"> elements, not cleaned.

The data come from --dir (a local directory: the archive's files, its top
folder such as en-de/, or the archive en-de.tgz itself; no network) or from
--url (default: the official archive), downloaded into DEST/orig.

    python -m fairseq_revrnn.recipes.iwslt data/iwslt16.en-de --year 2016 --src en --tgt de
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .download import DataError, extract, fetch, require_files
from .text import moses, write_lines

MIN_LEN, MAX_LEN, MAX_RATIO = 1, 175, 1.5
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Edition:
    """One IWSLT release: its archive, the language pair it holds, and how it is split."""

    year: str
    pair: tuple[str, str]  # the languages in the archive's name, e.g. ("en", "de") for en-de.tgz
    url: str
    valid: tuple[str, ...]  # xml sets concatenated into valid; empty: hold out every `holdout`-th train line
    test: tuple[str, ...]
    holdout: int = 0

    @property
    def name(self) -> str:
        return "-".join(self.pair)

    def allowed(self) -> list[tuple[str, str]]:
        """The archive's direction and its reverse."""
        return [self.pair, self.pair[::-1]]

    def files(self) -> list[str]:
        """Every file of the archive's top folder that the splits read."""
        train = [f"train.tags.{self.name}.{lang}" for lang in self.pair]
        sets = [self.xml(s, lang) for s in self.valid + self.test for lang in self.pair]
        return train + sets

    def xml(self, name: str, lang: str) -> str:
        return f"{name}.{self.name}.{lang}.xml"


EDITIONS = {
    "2016": Edition(
        "2016", ("en", "de"), "https://wit3.fbk.eu/archive/2016-01/texts/en/de/en-de.tgz",
        valid=("IWSLT16.TED.tst2013",), test=("IWSLT16.TED.tst2014",),
    ),
    "2014": Edition(
        "2014", ("de", "en"), "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",
        valid=(),
        test=("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
              "IWSLT14.TED.tst2012"),
        holdout=23,
    ),
}  # fmt: skip

_KEPT_TAG = re.compile(r"^\s*<(title|description)>(.*?)</\1>\s*$")
_SEG = re.compile(r"<seg id=\"?\d+\"?>\s*(.*?)\s*</seg>")


def edition(year: str, src: str, tgt: str) -> Edition:
    """The edition for ``year`` if it holds ``src``->``tgt``; otherwise an error naming the allowed values."""
    if year not in EDITIONS:
        raise DataError(f"IWSLT={year} (--year) is not supported; allowed: {', '.join(EDITIONS)}")
    ed = EDITIONS[year]
    if (src, tgt) not in ed.allowed():
        allowed = " or ".join(f"SRC={s} TGT={t}" for s, t in ed.allowed())
        raise DataError(
            f"IWSLT {year} ({ed.name}.tgz) has no pair SRC={src} TGT={tgt} (--src/--tgt); allowed: {allowed}"
        )
    return ed


def train_text(lines: Iterable[str]) -> Iterator[str]:
    """The sentences of a train.tags file: metadata dropped, <title>/<description> text kept."""
    for line in lines:
        kept = _KEPT_TAG.match(line)
        if kept:
            yield kept.group(2)
        elif not line.lstrip().startswith("<"):
            yield line


def seg_text(lines: Iterable[str]) -> Iterator[str]:
    """The text of each <seg id="N"> element of an IWSLT xml file (one per line, as released)."""
    for line in lines:
        seg = _SEG.search(line)
        if seg:
            yield seg.group(1)


def clean(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Keep tokenised pairs of MIN_LEN..MAX_LEN tokens a side whose length ratio is at most MAX_RATIO."""
    for src, tgt in pairs:
        n, m = len(src.split()), len(tgt.split())
        if MIN_LEN <= n <= MAX_LEN and MIN_LEN <= m <= MAX_LEN and n <= MAX_RATIO * m and m <= MAX_RATIO * n:
            yield src, tgt


def locate(ed: Edition, dest: Path, directory: Path | None, url: str | None) -> Path:
    """The folder holding the edition's files: found under ``directory``, or downloaded and unpacked into dest/orig."""
    orig = dest / "orig"
    if directory is None:
        source = url or ed.url
        archive = fetch(source, orig / f"{ed.name}.tgz")
        extract(archive, orig)
        return require_files(orig / ed.name, ed.files(), f"the IWSLT {ed.year} archive from {source}")
    what = f"IWSLT_DIR={directory} (--dir)"
    if not directory.is_dir():
        raise DataError(f"{what}: not a directory (it should hold the files of {ed.name}.tgz, or the archive itself)")
    for candidate in (directory, directory / ed.name):
        if (candidate / ed.files()[0]).exists():
            return require_files(candidate, ed.files(), what)
    if (directory / f"{ed.name}.tgz").exists():
        extract(directory / f"{ed.name}.tgz", orig)
        return require_files(orig / ed.name, ed.files(), f"{directory / ed.name}.tgz")
    raise DataError(
        f"{what}: found neither {ed.files()[0]} (in it or in {ed.name}/) nor {ed.name}.tgz; "
        f"IWSLT {ed.year} needs {', '.join(ed.files())}"
    )


def _read(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark would hide a first '<url>' line
        return [line.rstrip("\n") for line in f]


def tokenised_sets(folder: Path, ed: Edition, names: tuple[str, ...], lang: str) -> list[str]:
    """The tokenised segments of the xml sets ``names``, concatenated, for one language."""
    lines = [seg for name in names for seg in seg_text(_read(folder / ed.xml(name, lang)))]
    return list(moses(lines, lang))


def prepare(
    dest: Path, ed: Edition, src: str, tgt: str, directory: Path | None = None, url: str | None = None
) -> dict[str, int]:
    """Write ``{train,valid,test}.{src,tgt}`` into ``dest``; returns the number of sentence pairs per split."""
    folder = locate(ed, dest, directory, url)
    train = {}
    for lang in (src, tgt):
        name = f"train.tags.{ed.name}.{lang}"
        train[lang] = list(moses(train_text(_read(folder / name)), lang, desc=f"tokenise {name}"))
    if len(train[src]) != len(train[tgt]):
        raise DataError(
            f"{folder}: train.tags.{ed.name}.{src} and .{tgt} have {len(train[src])} and {len(train[tgt])} "
            "sentences after dropping metadata lines; they should be line-aligned"
        )
    pairs = list(clean(zip(train[src], train[tgt])))
    splits = {}
    if ed.holdout:
        splits["valid"] = [p for i, p in enumerate(pairs, 1) if i % ed.holdout == 0]
        splits["train"] = [p for i, p in enumerate(pairs, 1) if i % ed.holdout != 0]
    else:
        splits["train"] = pairs
    for split, names in (("valid", ed.valid), ("test", ed.test)):
        if not names:
            continue
        a, b = tokenised_sets(folder, ed, names, src), tokenised_sets(folder, ed, names, tgt)
        if len(a) != len(b):
            sets = ", ".join(names)
            raise DataError(f"{folder}: the {split} sets {sets} have {len(a)} {src} and {len(b)} {tgt} segments")
        splits[split] = list(zip(a, b))
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for side, lang in enumerate((src, tgt)):
            write_lines(dest / f"{split}.{lang}", (p[side] for p in splits[split]))
    return {split: len(splits[split]) for split in SPLITS}


def sentencepiece_bpe(dest: Path, langs: tuple[str, str], vocab: int, threads: int = 1) -> Path:
    """Train one joint BPE model on both training sides and write ``{split}.bpe.{lang}``; returns the model."""
    import sentencepiece as spm
    from tqdm import tqdm

    prefix = dest / "spm"
    try:
        spm.SentencePieceTrainer.train(
            input=[str(dest / f"train.{lang}") for lang in langs], model_prefix=str(prefix), vocab_size=vocab,
            model_type="bpe", character_coverage=1.0, num_threads=threads, input_sentence_size=2_000_000,
            shuffle_input_sentence=True, minloglevel=2,
        )  # fmt: skip
    except RuntimeError as err:
        raise DataError(f"BPE_VOCAB={vocab} (--bpe-vocab): sentencepiece cannot train on this text: {err}") from err
    model = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    for split in SPLITS:
        for lang in langs:
            lines = _read(dest / f"{split}.{lang}")
            pieces = (" ".join(model.encode(line, out_type=str)) for line in tqdm(lines, desc=f"bpe {split}.{lang}"))
            write_lines(dest / f"{split}.bpe.{lang}", pieces)
    return prefix.with_suffix(".model")


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value!r}")
    return int(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="where the text (and a download) go")
    parser.add_argument("--year", default="2016", help=f"IWSLT edition, one of {', '.join(EDITIONS)} (default 2016)")
    parser.add_argument("--src", help="source language (default: the archive's first: en for 2016, de for 2014)")
    parser.add_argument("--tgt", help="target language (default: the archive's second)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dir", type=Path, help="local directory with the archive's files or the .tgz (no download)")
    source.add_argument("--url", help="the .tgz to download (default: the official archive of --year)")
    parser.add_argument("--bpe", choices=("none", "sentencepiece"), default="none", help="subword segmentation")
    parser.add_argument("--bpe-vocab", type=_positive, default=10000, help="sentencepiece vocabulary (default 10000)")
    parser.add_argument("--threads", type=_positive, default=1, help="sentencepiece training threads")
    args = parser.parse_args(argv)
    default = EDITIONS.get(args.year)
    src = args.src or (default.pair[0] if default else "")
    tgt = args.tgt or (default.pair[1] if default else "")
    ed = edition(args.year, src, tgt)
    counts = prepare(args.dest, ed, src, tgt, args.dir, args.url)
    if args.bpe == "sentencepiece":
        print(f"{sentencepiece_bpe(args.dest, (src, tgt), args.bpe_vocab, args.threads)}: joint BPE model")
    for split, n in counts.items():
        print(f"{args.dest}/{split}.{{{src},{tgt}}}: {n} sentence pairs")


if __name__ == "__main__":
    main()
