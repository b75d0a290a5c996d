# Helpers shared by the recipe scripts (sourced through common.sh).

die() {
    echo "error: $*" >&2
    exit 2
}

# one_of NAME VALUE ALLOWED...: stop unless VALUE is one of ALLOWED, naming the variable.
one_of() {
    local name="$1" value="$2"
    shift 2
    local allowed
    for allowed in "$@"; do
        [ "$value" = "$allowed" ] && return 0
    done
    die "$name=$value is not allowed; choose one of: $*"
}

# forget_bits_args BITS: --max-forget-bits / --no-forgetting for BITS in 1..10, none or nf.
forget_bits_args() {
    case "$1" in
        [1-9] | 10 | none) echo "--max-forget-bits $1" ;;
        nf) echo "--no-forgetting" ;;
        *) die "BITS=$1 is not allowed; choose 1..10, none (no limit) or nf (no forgetting)" ;;
    esac
}

# write_run_json DIR KEY=VALUE...: what a run was, for the results table.
write_run_json() {
    local dir="$1" first=1 pair
    shift
    mkdir -p "$dir"
    {
        printf '{'
        for pair in "$@"; do
            [ $first = 1 ] || printf ', '
            first=0
            printf '"%s": "%s"' "${pair%%=*}" "${pair#*=}"
        done
        printf '}\n'
    } > "$dir/run.json"
}

# tabulate RUNS PREFIX DIR...: the results table of the evaluated runs DIR... into RUNS/results.md and
# their training curves into RUNS/PREFIX_{perplexity,memory}.png.
tabulate() {
    local runs="$1" prefix="$2" dir
    shift 2
    "$PYTHON" -m fairseq_revrnn.recipes.results "$@" --out "$runs/results.md"
    local logs=()
    for dir in "$@"; do logs+=("$(basename "$dir")=$dir/train.log"); done
    "$PYTHON" -m fairseq_revrnn.recipes.plots "${logs[@]}" --out-dir "$runs" --prefix "$prefix"
    echo "results table: $runs/results.md; curves: $runs/${prefix}_{perplexity,memory}.png"
}

# with_peak_rss COMMAND...: run COMMAND, then print its peak RSS as a "| peak_rss |" log record
# (fairseq_revrnn/recipes/peak_rss.py, run by path so that this small parent does not load torch).
with_peak_rss() {
    "$PYTHON" "$ROOT/fairseq_revrnn/recipes/peak_rss.py" "$@"
}
