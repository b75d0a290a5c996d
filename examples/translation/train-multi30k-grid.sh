#!/usr/bin/env bash
# The paper's Multi30K grid (appendix G.2, Table 4): RevLSTM and RevGRU x attention x forgetting,
# plus the standard-LSTM baseline; each run trained, evaluated (BLEU on val and test_2016_flickr),
# and one results table and the training curves (PNG) written from the logs.
#
#   bash examples/translation/train-multi30k-grid.sh            # all 50 runs + baseline: days on a CPU
#   MODELS=rev_lstm ATTENTIONS=Emb+20H BITS_LIST="2 3" bash examples/translation/train-multi30k-grid.sh
#
# Environment (optional):
#   MODELS      ["rev_lstm rev_gru"]
#   ATTENTIONS  ["20H 100H 300H Emb Emb+20H"]
#   BITS_LIST   ["1 2 3 5 none"]
#   BASELINE    1 to train and evaluate fairseq's lstm too, 0 not to                 [1]
#   RUNS        where the runs go (one directory each) and results.md, multi30k_*.png [checkpoints/multi30k]
#   and everything train-multi30k.sh and evaluate-multi30k.sh read (DATA, SIZE, OPTIM, MAX_EPOCH, ...).
set -euo pipefail
HERE="$(dirname "$0")"
source "$HERE/../common.sh"
RUNS="${RUNS:-checkpoints/multi30k}"
dirs=()
for model in ${MODELS:-rev_lstm rev_gru}; do
    for attention in ${ATTENTIONS:-20H 100H 300H Emb Emb+20H}; do
        for bits in ${BITS_LIST:-1 2 3 5 none}; do
            dir="$RUNS/$model.$attention.$bits"
            MODEL="$model" ATTENTION="$attention" BITS="$bits" SAVE_DIR="$dir" bash "$HERE/train-multi30k.sh"
            dirs+=("$dir")
        done
    done
done
if [ "${BASELINE:-1}" = 1 ]; then
    MODEL=lstm SAVE_DIR="$RUNS/lstm" bash "$HERE/train-multi30k.sh"
    dirs+=("$RUNS/lstm")
fi
bash "$HERE/evaluate-multi30k.sh" "${dirs[@]}"
tabulate "$RUNS" multi30k "${dirs[@]}"
