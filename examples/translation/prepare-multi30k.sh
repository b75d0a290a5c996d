#!/usr/bin/env bash
# Multi30K task 1 for fairseq: raw captions -> lowercased, Moses-tokenised text
# (as the paper did) -> fairseq-preprocess.
#
#   bash examples/translation/prepare-multi30k.sh [OUT]        # OUT default: data/multi30k
#
# Environment (all optional):
#   MULTI30K_DIR  local directory with the raw {train,val,test_2016_flickr}.{SRC,TGT}.gz
#                 (e.g. ../shared/data/multi30k); without it they are downloaded
#   MULTI30K_URL  base URL to download them from (default: the dataset's official repository)
#   SRC, TGT      language pair (default en, de: the paper's direction; en, de, fr, cs exist)
#   DEST          binarised data (default data-bin/multi30k.SRC-TGT)
#   THRESHOLD     words seen fewer times than this become <unk> (default 2)
set -euo pipefail
source "$(dirname "$0")/../common.sh"
SRC="${SRC:-en}"
TGT="${TGT:-de}"
OUT="${1:-data/multi30k}"
DEST="${DEST:-data-bin/multi30k.$SRC-$TGT}"
THRESHOLD="${THRESHOLD:-2}"

"$PYTHON" -m fairseq_revrnn.recipes.multi30k "$OUT" --source-lang "$SRC" --target-lang "$TGT"
rm -f "$DEST/dict.$SRC.txt" "$DEST/dict.$TGT.txt"  # fairseq-preprocess refuses to overwrite dictionaries
fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$OUT/train" --validpref "$OUT/valid" --testpref "$OUT/test" \
    --destdir "$DEST" --thresholdsrc "$THRESHOLD" --thresholdtgt "$THRESHOLD" --workers "$WORKERS"
echo "binarised Multi30K $SRC-$TGT in $DEST"
