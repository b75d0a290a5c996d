#!/usr/bin/env bash
# IWSLT for fairseq: the paper's IWSLT 2016 en->de (valid tst2013, test tst2014)
# or fairseq's usual IWSLT14 de->en (valid every 23rd training pair, test
# dev2010 + TEDX.dev2012 + tst2010..2012), Moses-tokenised and lowercased, then
# binarised with fairseq-preprocess.
#
# Usage: [VAR=value ...] bash examples/translation/prepare-iwslt.sh [DEST]
#   DEST        the binarised data, first argument or environment variable (default
#               data-bin/iwslt16.en-de or data-bin/iwslt14.de-en; .bpe appended with BPE=sentencepiece)
#   IWSLT       2016 (default) or 2014
#   SRC, TGT    language pair (default en, de for 2016; de, en for 2014); the reverse
#               direction of the archive's pair is allowed too
#   IWSLT_DIR   local directory, no download: the archive's files (train.tags.*, *.xml),
#               its top folder (en-de/ or de-en/), or the archive (en-de.tgz or de-en.tgz)
#   IWSLT_URL   the archive to download instead of the official one
#   BPE         none (default, words) or sentencepiece (one joint BPE model for both
#               languages; fairseq-preprocess --joined-dictionary)
#   BPE_VOCAB   sentencepiece vocabulary size (default 10000)
#   TEXT_DIR    the download and the text files (default data/iwslt16.en-de, ...)
#   PREPROCESS_ARGS  extra fairseq-preprocess options, e.g. "--thresholdsrc 2 --thresholdtgt 2"
#   WORKERS     processes for fairseq-preprocess and sentencepiece (default 2)
# Relative paths are relative to the current directory.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

IWSLT="${IWSLT:-2016}"
case "$IWSLT" in
    2016) SRC="${SRC:-en}" TGT="${TGT:-de}" ;;
    2014) SRC="${SRC:-de}" TGT="${TGT:-en}" ;;
    *) die "IWSLT=$IWSLT is not supported; allowed: 2016 (en-de, the paper's), 2014 (de-en, fairseq's)" ;;
esac
BPE="${BPE:-none}"
case "$BPE" in
    none) SUFFIX="" JOINED=() ;;
    sentencepiece) SUFFIX=".bpe" JOINED=(--joined-dictionary) ;;
    *) die "BPE=$BPE is not supported; allowed: none, sentencepiece" ;;
esac
BPE_VOCAB="${BPE_VOCAB:-10000}"
[[ "$BPE_VOCAB" =~ ^[1-9][0-9]*$ ]] || die "BPE_VOCAB=$BPE_VOCAB is not allowed; it must be a positive integer"
NAME="iwslt${IWSLT:2}.$SRC-$TGT"
TEXT_DIR="${TEXT_DIR:-data/$NAME}"
DEST="${1:-${DEST:-data-bin/$NAME$SUFFIX}}"

SOURCE=()
if [ -n "${IWSLT_DIR:-}" ]; then SOURCE+=(--dir "$IWSLT_DIR"); fi
if [ -n "${IWSLT_URL:-}" ]; then SOURCE+=(--url "$IWSLT_URL"); fi
"$PYTHON" -m fairseq_revrnn.recipes.iwslt "$TEXT_DIR" --year "$IWSLT" --src "$SRC" --tgt "$TGT" "${SOURCE[@]}" \
    --bpe "$BPE" --bpe-vocab "$BPE_VOCAB" --threads "$WORKERS"

rm -f "$DEST/dict.$SRC.txt" "$DEST/dict.$TGT.txt"  # fairseq-preprocess refuses to overwrite dictionaries
read -ra PREPROCESS_EXTRA <<< "${PREPROCESS_ARGS:-}"
fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$TEXT_DIR/train$SUFFIX" --validpref "$TEXT_DIR/valid$SUFFIX" --testpref "$TEXT_DIR/test$SUFFIX" \
    --destdir "$DEST" --workers "$WORKERS" "${JOINED[@]}" "${PREPROCESS_EXTRA[@]}"
echo "prepare-iwslt.sh: binarised IWSLT $IWSLT $SRC->$TGT in $DEST"
