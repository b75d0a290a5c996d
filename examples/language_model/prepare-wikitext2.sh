#!/usr/bin/env bash
# WikiText-2 (word level, as released: 33k vocabulary, <unk> already in the text), binarised for
# fairseq's language_modeling task.
#
#   bash examples/language_model/prepare-wikitext2.sh [OUT]
#
#   OUT            binarised data directory (argument, or environment)             [data-bin/wikitext-2]
# Environment (all optional):
#   WIKITEXT2_DIR  a local directory holding wiki.{train,valid,test}.tokens: no download
#   WIKITEXT2_URL  the zip to download otherwise                  [the official wikitext-2-v1.zip]
#   RAW            where the zip is downloaded and unpacked                         [data/wikitext-2]
#   WORKERS        fairseq-preprocess workers                                                     [2]
set -euo pipefail
source "$(dirname "$0")/../common.sh"
OUT="${1:-${OUT:-data-bin/wikitext-2}}"
RAW="${RAW:-data/wikitext-2}"
if [ -n "${WIKITEXT2_DIR:-}" ]; then
    SOURCE=(--dir "$WIKITEXT2_DIR")
elif [ -n "${WIKITEXT2_URL:-}" ]; then
    SOURCE=(--url "$WIKITEXT2_URL")
else
    SOURCE=()
fi
TOKENS="$("$PYTHON" -m fairseq_revrnn.recipes.wikitext "$RAW" "${SOURCE[@]}")"

rm -f "$OUT/dict.txt"  # fairseq-preprocess refuses to overwrite a dictionary; this one is rebuilt from TOKENS
fairseq-preprocess --only-source --trainpref "$TOKENS/wiki.train.tokens" --validpref "$TOKENS/wiki.valid.tokens" \
    --testpref "$TOKENS/wiki.test.tokens" --destdir "$OUT" --workers "$WORKERS"
echo "WikiText-2 binarised in $OUT"
