#!/usr/bin/env bash
# Train one Multi30K model of the paper's grid (appendix G.2), or the standard-LSTM baseline.
#
#   MODEL=rev_lstm ATTENTION=Emb+20H BITS=3 bash examples/translation/train-multi30k.sh
#
# Environment (all optional):
#   MODEL      rev_lstm | rev_gru | lstm (fairseq's own LSTM with attention: the baseline)   [rev_lstm]
#   ATTENTION  the paper's names: 20H, 100H (a k-unit slice of the hidden state), 300H (the whole
#              hidden state), Emb, Emb+20H, or none; any kH / Emb+kH works          [Emb+20H]
#   BITS       maximum forgetting: 1..10, none (no limit), nf (no forgetting)                 [3]
#   SIZE       paper (1 layer, 300 units, embeddings 300) | cpu (128 units, for quick runs)  [paper]
#   HIDDEN     units and embedding size, overriding SIZE's (an even number)
#   OPTIM      sgd (the paper: batches of 64, lr halved when validation loss stops improving,
#              stop below 0.001) | adam (lr 0.001 halved the same way; stop after PATIENCE
#              epochs without a better validation loss: converges in fewer epochs)           [sgd]
#   PATIENCE   epochs without a better validation loss before stopping (fairseq's --patience;
#              -1: never)                                                    [adam 3, sgd -1]
#   LR         learning rate (default: sgd 0.5 rev_lstm, 0.2 rev_gru, 1.0 lstm; adam 0.001)
#   DATA       binarised data                                             [data-bin/multi30k.en-de]
#   SAVE_DIR   checkpoints, train.log and run.json           [checkpoints/multi30k/MODEL.ATTENTION.BITS]
#   MAX_EPOCH [50], MAX_UPDATE [0: no limit], LOG_INTERVAL [50], SEED [1]
#   EXTRA      further fairseq-train arguments, appended last
# ATTENTION and BITS do not apply to MODEL=lstm. fairseq resumes from SAVE_DIR/checkpoint_last.pt when
# there is one; the run's whole output (--log-format json) is appended to SAVE_DIR/train.log, ending
# with fairseq-train's peak RSS (a "| peak_rss |" record, fairseq_revrnn/recipes/peak_rss.py).
set -euo pipefail
source "$(dirname "$0")/../common.sh"
MODEL="${MODEL:-rev_lstm}"
ATTENTION="${ATTENTION:-Emb+20H}"
BITS="${BITS:-3}"
SIZE="${SIZE:-paper}"
OPTIM="${OPTIM:-sgd}"
DATA="${DATA:-data-bin/multi30k.en-de}"
one_of MODEL "$MODEL" rev_lstm rev_gru lstm
one_of SIZE "$SIZE" paper cpu
one_of OPTIM "$OPTIM" sgd adam
[ -d "$DATA" ] || die "DATA=$DATA is not a directory (run prepare-multi30k.sh first)"
if [ "$SIZE" = paper ]; then HIDDEN="${HIDDEN:-300}"; else HIDDEN="${HIDDEN:-128}"; fi
[[ "$HIDDEN" =~ ^[1-9][0-9]*$ && $((HIDDEN % 2)) = 0 ]] || die "HIDDEN=$HIDDEN must be a positive even number"

attention_args() {
    local k
    case "$1" in
        none) echo "--attention none" ;;
        Emb | emb) echo "--attention emb" ;;
        hidden | "${HIDDEN}H") echo "--attention hidden" ;;
        Emb+*H | emb+*H)
            k="${1#*+}"
            k="${k%H}"
            [[ "$k" =~ ^[0-9]+$ ]] || die "ATTENTION=$1: the slice size must be a number"
            echo "--attention emb+slice --attention-slice-dim $k"
            ;;
        *H)
            k="${1%H}"
            [[ "$k" =~ ^[0-9]+$ ]] || die "ATTENTION=$1: the slice size must be a number"
            echo "--attention slice --attention-slice-dim $k"
            ;;
        *) die "ATTENTION=$1 is not allowed; choose kH (e.g. 20H, 100H, ${HIDDEN}H), Emb, Emb+kH or none" ;;
    esac
}

SIZE_ARGS=(--encoder-embed-dim "$HIDDEN" --decoder-embed-dim "$HIDDEN" --encoder-hidden-size "$HIDDEN"
    --decoder-hidden-size "$HIDDEN" --encoder-layers 1 --decoder-layers 1)
if [ "$MODEL" = lstm ]; then
    NAME=lstm
    RUN=(task=translation model=lstm size="$SIZE" optim="$OPTIM")
    # --user-dir for the baseline too: the plugin allow-lists fairseq's checkpoint types for torch's
    # weights_only loading, which resuming from checkpoint_last.pt needs.
    MODEL_ARGS=(--user-dir "$USER_DIR" --arch lstm "${SIZE_ARGS[@]}" --decoder-out-embed-dim "$HIDDEN" --encoder-dropout-in 0.4
        --encoder-dropout-out 0.4 --decoder-dropout-in 0.4 --decoder-dropout-out 0.4
        --criterion label_smoothed_cross_entropy)
    SGD_LR=1.0
else
    ATTENTION_ARGS="$(attention_args "$ATTENTION")"
    BITS_ARGS="$(forget_bits_args "$BITS")"
    read -ra ATTENTION_ARGS <<< "$ATTENTION_ARGS"
    read -ra BITS_ARGS <<< "$BITS_ARGS"
    NAME="$MODEL.$ATTENTION.$BITS"
    RUN=(task=translation model="$MODEL" attention="$ATTENTION" bits="$BITS" size="$SIZE" optim="$OPTIM")
    MODEL_ARGS=(--user-dir "$USER_DIR" --arch "$MODEL" "${SIZE_ARGS[@]}" "${ATTENTION_ARGS[@]}" "${BITS_ARGS[@]}"
        --dropout-in 0.4 --dropout-out 0.4 --criterion rev_label_smoothed_cross_entropy)
    if [ "$MODEL" = rev_lstm ]; then SGD_LR=0.5; else SGD_LR=0.2; fi
fi
if [ "$OPTIM" = sgd ]; then
    OPTIM_ARGS=(--optimizer sgd --lr "${LR:-$SGD_LR}" --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5
        --lr-patience 0 --stop-min-lr 0.001 --clip-norm 5)
else
    OPTIM_ARGS=(--optimizer adam --lr "${LR:-0.001}" --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5
        --lr-patience 0 --clip-norm 5)
fi
if [ "$OPTIM" = sgd ]; then PATIENCE="${PATIENCE:--1}"; else PATIENCE="${PATIENCE:-3}"; fi
[[ "$PATIENCE" =~ ^(-1|[1-9][0-9]*)$ ]] || die "PATIENCE=$PATIENCE must be -1 (never stop early) or a positive integer"
OPTIM_ARGS+=(--patience "$PATIENCE")
SAVE_DIR="${SAVE_DIR:-checkpoints/multi30k/$NAME}"
write_run_json "$SAVE_DIR" "${RUN[@]}"

read -ra EXTRA_ARGS <<< "${EXTRA:-}"
with_peak_rss fairseq-train "$DATA" "${MODEL_ARGS[@]}" "${OPTIM_ARGS[@]}" --label-smoothing 0 \
    --batch-size 64 --max-tokens 4000 --max-epoch "${MAX_EPOCH:-50}" --max-update "${MAX_UPDATE:-0}" \
    --save-dir "$SAVE_DIR" --no-epoch-checkpoints --log-format json --log-interval "${LOG_INTERVAL:-50}" \
    --seed "${SEED:-1}" --num-workers 0 "${EXTRA_ARGS[@]}" 2>&1 | tee -a "$SAVE_DIR/train.log"
