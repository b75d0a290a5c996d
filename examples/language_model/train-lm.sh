#!/usr/bin/env bash
# Train a word-level language model: our reversible RNN, or fairseq's own
# lstm_lm of the same size trained the same way, for comparison.
#
#   SIZE=cpu MODEL=rev BITS=3 bash examples/language_model/train-lm.sh
#
# Environment (all optional):
#   DATA        binarised data from prepare-ptb.sh / prepare-wikitext2.sh          [data-bin/ptb]
#   SIZE        cpu | paper                                                                [cpu]
#                 cpu:   2 layers of HIDDEN units, embeddings HIDDEN, tied; dropout in/out 0.2
#                        (ours also DropConnect 0.2); Adam, lr 0.002 halved whenever validation loss
#                        does not improve, gradient norm clipped at 0.25
#                 paper: appendix G.1 (--arch rev_lstm_lm_ptb): layers 1150 and 650, embeddings 650,
#                        tied, DropConnect 0.5, dropout in 0.3 / out 0.4 / embedding 0.1; SGD lr 20,
#                        clip 0.1, weight decay 1.2e-6, lr divided by 4 (by 2 with a bit limit) after
#                        5 epochs without improvement, stop below lr 0.01
#   MODEL       rev | baseline: fairseq's lstm_lm (LSTM only; no DropConnect; paper size: 2 layers
#               of 910 units projected to 650, the parameter count of the paper's LSTM)       [rev]
#   CELL        lstm | gru                                                                    [lstm]
#   BITS        maximum forgetting: 1..10, none (no limit), nf (no forgetting)                  [3]
#   FORGETTING  fractional | discrete (appendix D: forget values 2^-k, k in 0..BITS)     [fractional]
#   HIDDEN      units per layer and embedding size, SIZE=cpu only (an even number)            [256]
#   MAX_UPDATE  stop after this many updates, 0: no limit           [cpu 600 (about one PTB epoch), paper 0]
#   MAX_EPOCH   stop after this many epochs, 0: no limit                                         [0]
#   PATIENCE    stop after this many epochs without a better validation loss (fairseq's --patience),
#               -1: never                                                                   [cpu 3, paper -1]
#   BATCH       sequences of 70 tokens per batch                                                  [20]
#   SAVE_DIR    checkpoints, train.log and run.json   [checkpoints/<data>-<size>-rev-<cell>-bits<BITS>,
#                                                       checkpoints/<data>-<size>-baseline]
#   LOG_INTERVAL [50], SEED [1]
#   EXTRA       further fairseq-train arguments, appended last (they override the above)
# CELL, BITS and FORGETTING do not apply to MODEL=baseline. fairseq resumes from SAVE_DIR/checkpoint_last.pt when
# there is one; the run's whole output (--log-format json) is appended to SAVE_DIR/train.log, ending
# with fairseq-train's peak RSS (a "| peak_rss |" record, fairseq_revrnn/recipes/peak_rss.py).
set -euo pipefail
source "$(dirname "$0")/../common.sh"
DATA="${DATA:-data-bin/ptb}"
SIZE="${SIZE:-cpu}"
MODEL="${MODEL:-rev}"
CELL="${CELL:-lstm}"
BITS="${BITS:-3}"
FORGETTING="${FORGETTING:-fractional}"
MAX_EPOCH="${MAX_EPOCH:-0}"
BATCH="${BATCH:-20}"
one_of SIZE "$SIZE" cpu paper
one_of MODEL "$MODEL" rev baseline
one_of CELL "$CELL" lstm gru
one_of FORGETTING "$FORGETTING" fractional discrete
BITS_ARGS="$(forget_bits_args "$BITS")"
read -ra BITS_ARGS <<< "$BITS_ARGS"
if [ "$MODEL" = baseline ] && [ "$CELL" != lstm ]; then
    die "CELL=$CELL is not allowed with MODEL=baseline (fairseq's lstm_lm); choose CELL=lstm or MODEL=rev"
fi
if [ "$SIZE" = paper ]; then
    [ -z "${HIDDEN:-}" ] || die "HIDDEN=$HIDDEN applies to SIZE=cpu only (SIZE=paper is the paper's 1150/650 units)"
    MAX_UPDATE="${MAX_UPDATE:-0}"
else
    HIDDEN="${HIDDEN:-256}"
    [[ "$HIDDEN" =~ ^[1-9][0-9]*$ && $((HIDDEN % 2)) = 0 ]] || die "HIDDEN=$HIDDEN must be a positive even number"
    MAX_UPDATE="${MAX_UPDATE:-600}"
fi
[[ "$MAX_UPDATE" =~ ^[0-9]+$ ]] || die "MAX_UPDATE=$MAX_UPDATE must be a non-negative integer (0: no limit)"
[[ "$MAX_EPOCH" =~ ^[0-9]+$ ]] || die "MAX_EPOCH=$MAX_EPOCH must be a non-negative integer (0: no limit)"
[[ "$BATCH" =~ ^[1-9][0-9]*$ ]] || die "BATCH=$BATCH must be a positive integer (sequences per batch)"
if [ "$SIZE" = paper ]; then PATIENCE="${PATIENCE:--1}"; else PATIENCE="${PATIENCE:-3}"; fi
[[ "$PATIENCE" =~ ^(-1|[1-9][0-9]*)$ ]] || die "PATIENCE=$PATIENCE must be -1 (never stop early) or a positive integer"
[ -f "$DATA/dict.txt" ] || die "DATA=$DATA is not a binarised data directory (run prepare-ptb.sh or prepare-wikitext2.sh first)"

if [ "$MODEL" = rev ]; then
    NAME="$SIZE-rev-$CELL-bits$BITS"
    RUN=(task=language_model model=rev cell="$CELL" bits="$BITS" size="$SIZE" forgetting="$FORGETTING")
    DF_ARGS=()
    if [ "$FORGETTING" = discrete ]; then
        case "$BITS" in none | nf) die "FORGETTING=discrete needs BITS=1..10 (the largest shift), not BITS=$BITS" ;; esac
        NAME="$NAME-df"
        DF_ARGS=(--discrete-forgetting)
    fi
    if [ "$SIZE" = paper ]; then
        MODEL_ARGS=(--arch rev_lstm_lm_ptb)
    else
        MODEL_ARGS=(--arch rev_lstm_lm --decoder-layers 2 --decoder-hidden-size "$HIDDEN" --decoder-embed-dim "$HIDDEN"
            --share-decoder-input-output-embed --dropout-in 0.2 --dropout-out 0.2 --dropout-hidden 0.2
            --dropout-embed 0.0)
    fi
    MODEL_ARGS+=(--cell-type "$CELL" "${BITS_ARGS[@]}" "${DF_ARGS[@]}" --criterion rev_cross_entropy)
else
    NAME="$SIZE-baseline"
    RUN=(task=language_model model=baseline cell=lstm size="$SIZE")
    # lstm_lm has one hidden size for every layer, so the paper's 1150/650 LSTM (19.5M parameters,
    # its table 3) becomes two layers of 910 projected to 650 before the tied output: 19.4M.
    if [ "$SIZE" = paper ]; then
        MODEL_ARGS=(--arch lstm_lm --decoder-layers 2 --decoder-hidden-size 910 --decoder-embed-dim 650
            --decoder-out-embed-dim 650 --decoder-dropout-in 0.3 --decoder-dropout-out 0.4)
    else
        MODEL_ARGS=(--arch lstm_lm --decoder-layers 2 --decoder-hidden-size "$HIDDEN" --decoder-embed-dim "$HIDDEN"
            --decoder-out-embed-dim "$HIDDEN" --decoder-dropout-in 0.2 --decoder-dropout-out 0.2)
    fi
    MODEL_ARGS+=(--share-decoder-input-output-embed --criterion cross_entropy)
fi
if [ "$SIZE" = paper ]; then
    SHRINK=0.25
    if [ "$MODEL" = rev ] && [ "$BITS" != none ]; then SHRINK=0.5; fi  # G.1: "a decay factor of 2 worked better"
    OPTIM_ARGS=(--optimizer sgd --lr 20 --clip-norm 0.1 --weight-decay 1.2e-6 --lr-scheduler reduce_lr_on_plateau
        --lr-shrink "$SHRINK" --lr-patience 5 --stop-min-lr 0.01)
else
    OPTIM_ARGS=(--optimizer adam --lr 0.002 --clip-norm 0.25 --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5
        --lr-patience 0)
fi
OPTIM_ARGS+=(--patience "$PATIENCE")
SAVE_DIR="${SAVE_DIR:-checkpoints/$(basename "$DATA")-$NAME}"
write_run_json "$SAVE_DIR" "${RUN[@]}" data="$(basename "$DATA")"
echo "training into $SAVE_DIR (whole output appended to $SAVE_DIR/train.log)"

read -ra EXTRA_ARGS <<< "${EXTRA:-}"
PYTHONUNBUFFERED=1 with_peak_rss fairseq-train "$DATA" --user-dir "$USER_DIR" --task language_modeling \
    --tokens-per-sample 70 --sample-break-mode none --batch-size "$BATCH" --required-batch-size-multiple 1 \
    "${MODEL_ARGS[@]}" "${OPTIM_ARGS[@]}" --max-update "$MAX_UPDATE" --max-epoch "$MAX_EPOCH" \
    --save-dir "$SAVE_DIR" --no-epoch-checkpoints --log-format json --log-interval "${LOG_INTERVAL:-50}" \
    --seed "${SEED:-1}" "${EXTRA_ARGS[@]}" 2>&1 | tee -a "$SAVE_DIR/train.log"
