#!/usr/bin/env bash
# Converged results beside the paper: train each model of one task until validation stops improving,
# evaluate it, and write the results table and the training curves (PNG).
#
#   TASK=multi30k bash examples/converged.sh   # rev_lstm Emb+20H 3 bits and no limit, rev_gru Emb+20H 3 bits,
#                                              # fairseq's lstm; 1 x 300 (the paper's size), Adam
#   TASK=ptb bash examples/converged.sh        # RevLSTM 2 x 256 at 2 / 3 / 5 bits and no limit, fairseq's
#                                              # lstm_lm; Adam, batches of 64 x 70 tokens
#
# Every model trains the same way: Adam, lr halved after each epoch without a better validation loss,
# stopped after PATIENCE (3) such epochs or MAX_EPOCH. A run that finished under the same MAX_EPOCH and
# MAX_UPDATE (RUNS/NAME/converged.done says so) is not trained again; any other resumes from its
# checkpoint_last.pt, so the script can be stopped and run again (across sessions, for instance) and
# carries on where it was, or run with a larger MAX_EPOCH to train further.
#
# Environment (optional):
#   TASK      multi30k | ptb                                                                 [multi30k]
#   JOBS      trainings at once, each with OMP_NUM_THREADS = cores / JOBS                           [2]
#   ONLY      the runs to train, evaluate and tabulate, by name (the first word of each MODELS line below),
#             separated by spaces: ONLY="rev-lstm-bits2 rev-lstm-bits5"                                [all]
#   RUNS      one directory per model, results.md, TASK_{perplexity,memory}.png
#                                                           [checkpoints/multi30k, checkpoints/ptb-converged]
#   MAX_EPOCH [multi30k 15, ptb 20]; and what the recipes read (DATA, HIDDEN, SIZE, MAX_UPDATE, EXTRA, ...);
#             EXTRA goes to fairseq-train only, EVAL_EXTRA to fairseq-eval-lm (ptb), GEN_EXTRA to fairseq-generate
set -euo pipefail
HERE="$(dirname "$0")"
source "$HERE/common.sh"
TASK="${TASK:-multi30k}"
JOBS="${JOBS:-2}"
one_of TASK "$TASK" multi30k ptb
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "JOBS=$JOBS must be a positive integer (trainings at once)"
THREADS=$(($(nproc) / JOBS))
[ "$THREADS" -ge 1 ] || THREADS=1
export OPTIM=adam

# One line per model: NAME and the recipe's environment.
if [ "$TASK" = multi30k ]; then
    RUNS="${RUNS:-checkpoints/multi30k}"
    export MAX_EPOCH="${MAX_EPOCH:-15}"
    MODELS=(
        "rev_lstm.Emb+20H.3 MODEL=rev_lstm ATTENTION=Emb+20H BITS=3"
        "lstm MODEL=lstm"
        "rev_gru.Emb+20H.3 MODEL=rev_gru ATTENTION=Emb+20H BITS=3"
        "rev_lstm.Emb+20H.none MODEL=rev_lstm ATTENTION=Emb+20H BITS=none"
    )
    TRAIN="$HERE/translation/train-multi30k.sh"
else
    RUNS="${RUNS:-checkpoints/ptb-converged}"
    export MAX_EPOCH="${MAX_EPOCH:-20}" MAX_UPDATE="${MAX_UPDATE:-0}" BATCH="${BATCH:-64}"
    MODELS=(
        "rev-lstm-bits3 MODEL=rev BITS=3"
        "baseline MODEL=baseline"
        "rev-lstm-bits2 MODEL=rev BITS=2"
        "rev-lstm-bits5 MODEL=rev BITS=5"
        "rev-lstm-bitsnone MODEL=rev BITS=none"
    )
    TRAIN="$HERE/language_model/train-lm.sh"
fi

# ONLY: some of the runs above, by name; the others are neither trained nor evaluated nor tabulated.
if [ -n "${ONLY:-}" ]; then
    names=()
    for model in "${MODELS[@]}"; do names+=("${model%% *}"); done
    chosen=()
    for name in $ONLY; do
        one_of ONLY "$name" "${names[@]}"
        for model in "${MODELS[@]}"; do [ "${model%% *}" != "$name" ] || chosen+=("$model"); done
    done
    MODELS=("${chosen[@]}")
fi
mkdir -p "$RUNS"

# train NAME ENV...: the recipe into RUNS/NAME unless that run is done; its output goes to RUNS/NAME/train.log.
CAPS="MAX_EPOCH=$MAX_EPOCH MAX_UPDATE=${MAX_UPDATE:-0}"
train() {
    local name="$1" dir="$RUNS/$1"
    shift
    if [ "$(cat "$dir/converged.done" 2> /dev/null)" = "$CAPS" ]; then
        echo "$name: trained before ($CAPS)"
        return 0
    fi
    echo "$name: training ($*), output in $dir/train.log"
    env "$@" SAVE_DIR="$dir" OMP_NUM_THREADS="$THREADS" bash "$TRAIN" > /dev/null ||
        die "$name: training failed; the end of $dir/train.log says why"
    [ "$(tail -n 3 "$dir/train.log" | grep -c "done training")" = 1 ] ||
        die "$name did not finish training; see $dir/train.log"
    echo "$CAPS" > "$dir/converged.done"
    echo "$name: done, $(grep -c '| valid |' "$dir/train.log") validations"
}

failed=0
dirs=()
for model in "${MODELS[@]}"; do
    read -ra spec <<< "$model"
    dirs+=("$RUNS/${spec[0]}")
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
    train "${spec[@]}" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
[ "$failed" = 0 ] || die "a training failed (above); run the script again to resume the others"

for dir in "${dirs[@]}"; do
    if [ "$TASK" = multi30k ]; then
        bash "$HERE/translation/evaluate-multi30k.sh" "$dir"
    else
        SAVE_DIR="$dir" EXTRA="${EVAL_EXTRA:-}" bash "$HERE/language_model/eval-lm.sh" | tail -n 1 ||
            die "fairseq-eval-lm failed on $dir; the end of $dir/eval.log says why"
    fi
done
tabulate "$RUNS" "$TASK" "${dirs[@]}"
