#!/usr/bin/env bash
# Perplexity of a trained language model (ours or the lstm_lm baseline) with fairseq-eval-lm.
#
#   SAVE_DIR=checkpoints/ptb-cpu-rev-lstm-bits3 bash examples/language_model/eval-lm.sh
#
# Environment:
#   SAVE_DIR    the train-lm.sh run directory; eval.log is appended there                 (required)
#   CHECKPOINT  the checkpoint to score                                  [SAVE_DIR/checkpoint_best.pt]
#   DATA        the binarised data it was trained on                                  [data-bin/ptb]
#   SUBSET      test | valid                                                                  [test]
#   EXTRA       further fairseq-eval-lm arguments, appended last
# --user-dir is passed for the baseline too: the plugin allow-lists fairseq's checkpoint types for
# torch's weights_only loading. Each 70-token block is scored from a zero state (fairseq-eval-lm
# does not carry the hidden state across blocks).
set -euo pipefail
source "$(dirname "$0")/../common.sh"
DATA="${DATA:-data-bin/ptb}"
SUBSET="${SUBSET:-test}"
[ -n "${SAVE_DIR:-}" ] || die "SAVE_DIR is not set; set it to a train-lm.sh run directory (train-lm.sh prints it)"
CHECKPOINT="${CHECKPOINT:-$SAVE_DIR/checkpoint_best.pt}"
one_of SUBSET "$SUBSET" test valid
[ -f "$CHECKPOINT" ] || die "CHECKPOINT=$CHECKPOINT does not exist (train with train-lm.sh first)"
[ -f "$DATA/dict.txt" ] || die "DATA=$DATA is not a binarised data directory (run prepare-ptb.sh or prepare-wikitext2.sh first)"

mkdir -p "$SAVE_DIR"
read -ra EXTRA_ARGS <<< "${EXTRA:-}"
PYTHONUNBUFFERED=1 fairseq-eval-lm "$DATA" --user-dir "$USER_DIR" --path "$CHECKPOINT" --gen-subset "$SUBSET" \
    --tokens-per-sample 70 --sample-break-mode none --batch-size 20 --required-batch-size-multiple 1 \
    "${EXTRA_ARGS[@]}" 2>&1 | tee -a "$SAVE_DIR/eval.log"
PERPLEXITY="$(grep -o 'Perplexity: [0-9.a-z]*' "$SAVE_DIR/eval.log" | tail -n 1)"
echo "$SUBSET perplexity of $CHECKPOINT: ${PERPLEXITY#Perplexity: }"
