"""examples/translation/prepare-iwslt.sh end to end on small IWSLT-format data.

The archives are built here from real English/German sentence pairs (the
shared Multi30K copy's raw text) in the IWSLT 2016 and IWSLT14 layouts, with
metadata lines around every talk, so the filtering, cleaning and split rules
are checked against counts and lines known in advance.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from fairseq_revrnn.recipes import iwslt
from fairseq_revrnn.recipes.text import moses

from .data import MULTI30K, head_lines, recipe
from .http_server import serve

pytestmark = pytest.mark.cli

TALK = 23  # sentences per talk: a title, a description and 21 body lines
TALKS = 10
SETS_2016 = {"IWSLT16.TED.tst2013": 20, "IWSLT16.TED.tst2014": 15, "IWSLT16.TED.dev2010": 7}  # dev2010: unused
SETS_2014 = {
    "IWSLT14.TED.dev2010": 6, "IWSLT14.TEDX.dev2012": 5, "IWSLT14.TED.tst2010": 4, "IWSLT14.TED.tst2011": 3,
    "IWSLT14.TED.tst2012": 2,
}  # fmt: skip
TEST_ORDER_2014 = list(SETS_2014)  # fairseq's prepare-iwslt14.sh concatenates them in this order
# pairs the cleaning must drop: an empty line, a length ratio over 1.5, over 175 tokens a side
BAD = [("", ""), ("Yes.", "Ja, das ist wirklich ganz genau so, wie ich es gesagt habe."), ("go " * 200, "geh " * 200)]


@pytest.fixture(scope="module")
def pairs() -> dict[str, list[tuple[str, str]]]:
    """Multi30K raw pairs: 'good' ones (token ratio well inside 1.5, so they survive cleaning) and the rest."""
    if not (MULTI30K / "train.en.gz").exists():
        pytest.skip(f"Multi30K not found at {MULTI30K} (the shared data directory)")
    n = 600
    raw = list(zip(head_lines(MULTI30K / "train.en.gz", n), head_lines(MULTI30K / "train.de.gz", n)))
    tok = zip(head_lines(MULTI30K / "train.lc.norm.tok.en.gz", n), head_lines(MULTI30K / "train.lc.norm.tok.de.gz", n))
    good, other = [], []
    for pair, (en, de) in zip(raw, tok):
        a, b = len(en.split()), len(de.split())
        (good if 4 <= min(a, b) and max(a, b) <= 1.25 * min(a, b) else other).append(pair)
    assert len(good) >= TALK * TALKS and len(other) >= sum(SETS_2016.values()) + sum(SETS_2014.values())
    return {"good": good[: TALK * TALKS], "other": other}


def _train_tags(good: list[tuple[str, str]], side: int, translated: bool) -> str:
    """A train.tags file: per talk the metadata lines, then the talk's sentences; the bad pairs in talk 0."""
    lines = []
    for k in range(TALKS):
        talk = [p[side] for p in good[k * TALK : (k + 1) * TALK]]
        lines += [
            f"<url>http://www.ted.com/talks/talk_{k}.html</url>", "<keywords>talks, science, culture</keywords>",
            f"<speaker>Speaker {k}</speaker>", f"<talkid>{k}</talkid>",
            f"<title>{talk[0]}</title>", f"<description>{talk[1]}</description>",
        ]  # fmt: skip
        if translated:  # only in the translation's file: the filtering works on each side alone
            lines += [f'<reviewer href="http://www.ted.com/profiles/{k}">Reviewer {k}</reviewer>',
                      f'<translator href="http://www.ted.com/profiles/9{k}">Translator {k}</translator>']  # fmt: skip
        body = talk[2:]
        if k == 0:
            body = body[:5] + [p[side] for p in BAD] + body[5:]
        lines += body
    return "\n".join(lines) + "\n"


def _xml(segs: list[str], setid: str, lang: str) -> str:
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f'<srcset setid="{setid}" srclang="{lang}">',
        '<doc docid="1" genre="lectures">', "<url>http://www.ted.com/talks/a_talk.html</url>",
        "<description>TED Talk Subtitles and Transcript: not a segment</description>",
        "<keywords>talks</keywords>", "<talkid>1</talkid>", "<title>Not a segment either</title>",
    ]  # fmt: skip
    body = [f'<seg id="{i}"> {s} </seg>' for i, s in enumerate(segs, 1)]
    return "\n".join(head + body + ["</doc>", "</srcset>", "</mteval>"]) + "\n"


def build(root: Path, pairs: dict, pair: tuple[str, str], sets: dict[str, int]) -> tuple[Path, dict[str, list]]:
    """The archive's top folder ``root/<pair>``; returns it and the raw pairs of each xml set."""
    name = "-".join(pair)
    folder = root / name
    folder.mkdir(parents=True)
    side = {"en": 0, "de": 1}
    for lang in pair:
        text = _train_tags(pairs["good"], side[lang], translated=lang != "en")
        (folder / f"train.tags.{name}.{lang}").write_text(text, encoding="utf-8")
    segs, start = {}, 0
    for setid, count in sets.items():
        segs[setid] = pairs["other"][start : start + count]
        start += count
        for lang in pair:
            xml = _xml([p[side[lang]] for p in segs[setid]], setid, lang)
            (folder / f"{setid}.{name}.{lang}.xml").write_text(xml, encoding="utf-8")
    return folder, segs


def tgz(folder: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / f"{folder.name}.tgz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=folder.name)
    return archive


def run(cwd: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """The recipe through bash, one preprocessing worker."""
    return recipe("translation/prepare-iwslt.sh", *args, cwd=cwd, check=check, timeout=300, WORKERS=1, **env)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def tok(texts: list[str], lang: str) -> list[str]:
    return list(moses(texts, lang))


def binarised(dest: Path, src: str, tgt: str, counts: dict[str, int]) -> None:
    """Dictionaries exist and every split's .bin/.idx holds exactly the expected number of sentences."""
    from fairseq.data import indexed_dataset

    assert (dest / f"dict.{src}.txt").stat().st_size > 0 and (dest / f"dict.{tgt}.txt").stat().st_size > 0
    for split, n in counts.items():
        for lang in (src, tgt):
            prefix = f"{dest}/{split}.{src}-{tgt}.{lang}"
            assert Path(prefix + ".bin").exists() and Path(prefix + ".idx").exists()
            assert len(indexed_dataset.make_dataset(prefix, impl="mmap")) == n, (split, lang)


def test_iwslt2016_local_directory(tmp_path, pairs):
    """IWSLT_DIR holding the extracted en-de/ folder: the paper's splits, metadata dropped, bad pairs cleaned."""
    _, segs = build(tmp_path / "iwslt", pairs, ("en", "de"), SETS_2016)
    run(tmp_path, "bin", IWSLT_DIR=str(tmp_path / "iwslt"))
    text = tmp_path / "data" / "iwslt16.en-de"
    good = pairs["good"]
    for side, lang in enumerate(("en", "de")):
        assert lines(text / f"train.{lang}") == tok([p[side] for p in good], lang)
        assert lines(text / f"valid.{lang}") == tok([p[side] for p in segs["IWSLT16.TED.tst2013"]], lang)
        assert lines(text / f"test.{lang}") == tok([p[side] for p in segs["IWSLT16.TED.tst2014"]], lang)
    binarised(tmp_path / "bin", "en", "de", {"train": len(good), "valid": 20, "test": 15})


def test_iwslt2014_download(tmp_path, pairs):
    """IWSLT_URL on 127.0.0.1 serving de-en.tgz: fairseq's split (every 23rd pair held out, five test sets)."""
    folder, segs = build(tmp_path / "build", pairs, ("de", "en"), SETS_2014)
    archive = tgz(folder, tmp_path / "served")
    with serve(archive.parent) as url:
        run(tmp_path, IWSLT="2014", IWSLT_URL=url + archive.name)
    text = tmp_path / "data" / "iwslt14.de-en"
    assert (text / "orig" / "de-en.tgz").read_bytes() == archive.read_bytes()
    good = pairs["good"]
    held = [p for i, p in enumerate(good, 1) if i % 23 == 0]
    kept = [p for i, p in enumerate(good, 1) if i % 23 != 0]
    assert len(held) == TALKS
    test = [p for setid in TEST_ORDER_2014 for p in segs[setid]]
    for side, lang in ((1, "de"), (0, "en")):
        assert lines(text / f"valid.{lang}") == tok([p[side] for p in held], lang)
        assert lines(text / f"train.{lang}") == tok([p[side] for p in kept], lang)
        assert lines(text / f"test.{lang}") == tok([p[side] for p in test], lang)
    counts = {"train": len(kept), "valid": len(held), "test": len(test)}
    binarised(tmp_path / "data-bin" / "iwslt14.de-en", "de", "en", counts)


def test_sentencepiece_bpe_from_local_archive(tmp_path, pairs):
    """IWSLT_DIR holding en-de.tgz, BPE=sentencepiece: one joint model, text it decodes back, a joined dictionary."""
    folder, _ = build(tmp_path / "build", pairs, ("en", "de"), SETS_2016)
    tgz(folder, tmp_path / "local")
    run(tmp_path, IWSLT_DIR=str(tmp_path / "local"), BPE="sentencepiece", BPE_VOCAB="300")
    text = tmp_path / "data" / "iwslt16.en-de"
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=str(text / "spm.model"))
    assert model.get_piece_size() == 300
    for split in ("train", "valid", "test"):
        for lang in ("en", "de"):
            words, pieces = lines(text / f"{split}.{lang}"), lines(text / f"{split}.bpe.{lang}")
            assert [model.decode(p.split()) for p in pieces] == words
            assert sum(len(p.split()) for p in pieces) > sum(len(w.split()) for w in words)  # words were split
    dest = tmp_path / "data-bin" / "iwslt16.en-de.bpe"
    assert lines(dest / "dict.en.txt") == lines(dest / "dict.de.txt")
    binarised(dest, "en", "de", {"train": TALK * TALKS, "valid": 20, "test": 15})


def test_reverse_direction(tmp_path, pairs):
    """SRC=de TGT=en reads the same en-de archive the other way round."""
    build(tmp_path / "iwslt", pairs, ("en", "de"), SETS_2016)
    counts = iwslt.prepare(tmp_path / "text", iwslt.edition("2016", "de", "en"), "de", "en", tmp_path / "iwslt")
    assert counts == {"train": TALK * TALKS, "valid": 20, "test": 15}
    assert lines(tmp_path / "text" / "train.de") == tok([p[1] for p in pairs["good"]], "de")


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"SRC": "fr", "TGT": "de"}, ["SRC=fr TGT=de", "allowed: SRC=en TGT=de or SRC=de TGT=en"]),
        ({"IWSLT": "2015"}, ["IWSLT=2015", "allowed: 2016", "2014"]),
        ({"BPE": "subword-nmt"}, ["BPE=subword-nmt", "allowed: none, sentencepiece"]),
        ({"BPE": "sentencepiece", "BPE_VOCAB": "lots"}, ["BPE_VOCAB=lots", "positive integer"]),
    ],
)
def test_script_rejects_invalid_settings_before_any_work(tmp_path, env, expected):
    """A wrong setting exits non-zero with a message naming it and the allowed values, and writes nothing."""
    proc = run(tmp_path, check=False, **env)
    assert proc.returncode != 0
    for part in expected:
        assert part in proc.stderr, (part, proc.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--year", "2014", "--src", "en", "--tgt", "fr"], "allowed: SRC=de TGT=en or SRC=en TGT=de"),
        (["--year", "2016", "--src", "de", "--tgt", "de"], "allowed: SRC=en TGT=de or SRC=de TGT=en"),
        (["--dir", "no/such/dir"], "IWSLT_DIR=no/such/dir (--dir): not a directory"),
        (["--dir", "."], "found neither train.tags.en-de.en (in it or in en-de/) nor en-de.tgz"),
    ],
)
def test_module_rejects_invalid_arguments(tmp_path, monkeypatch, args, expected):
    """The Python step fails with the message (exit status 1) before creating anything."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        iwslt.main(["out", *args])
    assert expected in str(exit.value.code)
    assert list(tmp_path.iterdir()) == []


def test_missing_files_are_named(tmp_path, pairs):
    """A local directory lacking some of the files the splits need names exactly those files."""
    folder, _ = build(tmp_path / "iwslt", pairs, ("en", "de"), SETS_2016)
    (folder / "IWSLT16.TED.tst2014.en-de.de.xml").unlink()
    with pytest.raises(SystemExit) as exit:
        iwslt.main([str(tmp_path / "out"), "--dir", str(tmp_path / "iwslt")])
    assert str(exit.value.code).endswith(f"{folder} lacks IWSLT16.TED.tst2014.en-de.de.xml")
    assert not (tmp_path / "out").exists()
