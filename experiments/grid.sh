# Sourced by the experiments' run scripts: a grid of TASKS × METHODS × SEEDS,
# JOBS runs at a time, each run skipped when finished, resumed from its
# latest checkpoint when partial, started otherwise. The sourcing script
# defines `one TASK METHOD SEED`, which calls `run_or_resume`.
#
# Environment read here: EBDA_BIN, DEVICE, THREADS, JOBS, EXTRA (more --set
# arguments for new runs), TASKS, METHODS, SEEDS.

# run_or_resume DIR ARGS...: ARGS are `ebda train` arguments for a new run
# (config and --set); EXTRA is appended.
run_or_resume() {
  local dir=$1
  shift
  if [ -f "$dir/summary.json" ]; then
    echo "skip  $dir (finished)"
    return 0
  fi
  local ebda=("$EBDA_BIN" --device "${DEVICE:-auto}" --threads "$THREADS" -q train --no-progress)
  if [ -f "$dir/checkpoints/latest.json" ]; then
    echo "resume $dir"
    "${ebda[@]}" --resume "$dir" > "$dir.out" 2>&1 || { echo "FAIL  $dir (see $dir.out)"; return 1; }
  else
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    echo "start $dir"
    # shellcheck disable=SC2086
    "${ebda[@]}" "$@" $EXTRA --out "$dir" > "$dir.out" 2>&1 || { echo "FAIL  $dir (see $dir.out)"; return 1; }
  fi
  echo "done  $dir: $(grep -o '"target_acc": [0-9.]*' "$dir/summary.json" | head -1)"
}

# method_args METHOD: the --set arguments that select METHOD; `cdan+e` is
# CDAN with entropy conditioning, reported as its own row.
method_args() {
  if [ "$1" = "cdan+e" ]; then
    echo "--set method=cdan --set method.cdan.entropy=true --set label=cdan+e"
  else
    echo "--set method=$1"
  fi
}

# grid: runs `one` over TASKS × METHODS × SEEDS, JOBS at a time.
grid() {
  [ -x "$EBDA_BIN" ] || cargo build --release
  export EBDA_BIN DEVICE THREADS EXTRA
  export -f one run_or_resume method_args
  for task in $TASKS; do
    for method in $METHODS; do
      for seed in $SEEDS; do
        echo "$task $method $seed"
      done
    done
  done | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
}
