"""WikiText-2 (Merity et al. 2016, word level, as released): ``wiki.{train,valid,test}.tokens``.

Either a local directory already holding the three files (no network), or the
official zip, downloaded and unpacked safely. Prints the directory holding the
files on stdout (the only thing printed there), for the shell recipe to
binarise:

    python -m fairseq_revrnn.recipes.wikitext data/wikitext-2 [--dir DIR | --url URL]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .download import extract, fetch, require_files

URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"
FILES = ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]
ARCHIVE_DIR = "wikitext-2"  # the folder the official zip unpacks into


def prepare(dest: Path, directory: Path | None = None, url: str = URL) -> Path:
    """The directory holding the three token files: ``directory`` checked as is, or ``url`` unpacked into ``dest``.

    A download is skipped when ``dest`` already holds the unpacked files, so a
    rerun of the recipe does not fetch the archive again.
    """
    if directory is not None:
        return require_files(directory, FILES, "WIKITEXT2_DIR (--dir)")
    unpacked = dest / ARCHIVE_DIR
    if all((unpacked / name).exists() for name in FILES):
        return unpacked
    extract(fetch(url, dest / "wikitext-2-v1.zip"), dest)
    return require_files(unpacked, FILES, f"the archive from {url}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="where the archive is downloaded and unpacked")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dir", type=Path, help="a local directory with wiki.{train,valid,test}.tokens (no download)")
    source.add_argument("--url", default=URL, help="the zip to download (default: the official release)")
    args = parser.parse_args(argv)
    print(prepare(args.dest, args.dir, args.url))


if __name__ == "__main__":
    main()
