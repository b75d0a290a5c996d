#!/usr/bin/env bash
# Translate Multi30K's validation and test sets (test_2016_flickr) with a trained model,
# beam search, and score them with sacrebleu.
#
#   bash examples/translation/evaluate-multi30k.sh SAVE_DIR [SAVE_DIR ...]
#
# Writes SAVE_DIR/generate-{valid,test}.txt (fairseq-generate's output) and prints BLEU.
# Environment (optional): DATA [data-bin/multi30k.en-de], CHECKPOINT [checkpoint_best.pt],
# BEAM [5], SUBSETS ["valid test"], GEN_EXTRA (further fairseq-generate arguments).
set -euo pipefail
source "$(dirname "$0")/../common.sh"
DATA="${DATA:-data-bin/multi30k.en-de}"
[ $# -gt 0 ] || die "usage: $0 SAVE_DIR [SAVE_DIR ...]"
[ -d "$DATA" ] || die "DATA=$DATA is not a directory (run prepare-multi30k.sh first)"
read -ra GEN_EXTRA_ARGS <<< "${GEN_EXTRA:-}"
for dir in "$@"; do
    checkpoint="$dir/${CHECKPOINT:-checkpoint_best.pt}"
    [ -f "$checkpoint" ] || die "no checkpoint $checkpoint (train it with train-multi30k.sh)"
    for subset in ${SUBSETS:-valid test}; do
        one_of SUBSETS "$subset" valid test
        fairseq-generate "$DATA" --user-dir "$USER_DIR" --path "$checkpoint" --gen-subset "$subset" \
            --beam "${BEAM:-5}" --batch-size 64 --required-batch-size-multiple 1 \
            "${GEN_EXTRA_ARGS[@]}" > "$dir/generate-$subset.txt"
        "$PYTHON" -m fairseq_revrnn.recipes.generate_output "$dir/generate-$subset.txt"
    done
done
