#!/usr/bin/env bash
# bench/scaling.sh: the multi-core table (bench/README.md, "Scaling"): the
# suite's `mt_fib`, `mt_spawn` and `skewed` rows at 1, 2, 4, 8 and 16
# workers, one suite run per worker count, printed as a Markdown table of
# medians, each with its speed-up over the same variant at 1 worker (and
# `skewed`'s plain-thread floor: the machine's own speed-up); then a
# second table of the `mt_ramp` row (how soon the workers join in).
#
#   ./bazelw build -c opt //bench:suite
#   bench/scaling.sh [SUITE]        # SUITE: default bazel-bin/bench/suite
#
# Environment: WORKER_COUNTS (default "1 2 4 8 16"; a count past the CPUs
# this process may use is skipped, with a note on stderr), ITERATIONS
# (default 5), OUT (where the CSVs and logs go; default a new temporary
# folder), and the suite's own (FIB_N, N_TASKS).  Exit 2 for bad input.
set -euo pipefail

suite=${1:-bazel-bin/bench/suite}
if [[ ! -x "$suite" ]]; then
  echo "scaling.sh: no suite binary at '$suite' (build it: ./bazelw build" \
    "-c opt //bench:suite)" >&2
  exit 2
fi
suite="$(cd "$(dirname "$suite")" && pwd)/$(basename "$suite")"
counts=${WORKER_COUNTS:-1 2 4 8 16}
iterations=${ITERATIONS:-5}
out=${OUT:-$(mktemp -d)}
cpus=$(nproc)

ran=()
for w in $counts; do
  if [[ ! "$w" =~ ^[0-9]+$ ]] || ((w < 1)); then
    echo "scaling.sh: WORKER_COUNTS has '$w': want whole numbers >= 1" >&2
    exit 2
  fi
  if ((w > cpus)); then
    echo "scaling.sh: skipped $w workers: $cpus CPUs here" >&2
    continue
  fi
  mkdir -p "$out/w$w"
  if ! WORKERS=$w ITERATIONS=$iterations \
    BENCH_FILTER='^mt_fib,^mt_spawn,^skewed,^mt_ramp' \
    "$suite" --out "$out/w$w" >"$out/w$w/suite.log" 2>&1; then
    echo "scaling.sh: the suite failed at $w workers:" >&2
    cat "$out/w$w/suite.log" >&2
    exit 1
  fi
  ran+=("$w")
done
if ((${#ran[@]} == 0)); then
  echo "scaling.sh: no worker count left to run" >&2
  exit 2
fi
if grep -q "^build: *not optimised" "$out/w${ran[0]}/suite.log"; then
  echo "scaling.sh: warning: '$suite' was built without optimisation:" \
    "the table says little (./bazelw build -c opt //bench:suite)" >&2
fi

# The median of each (benchmark, variant, parameter) whose benchmark and
# variant match the awk patterns $1 and $2, over every worker count run:
# lines benchmark,variant,parameter,median (from the CSVs' lines
# benchmark,variant,parameter,iteration,duration_ns).
medians() {
  for w in "${ran[@]}"; do
    tail -n +2 "$out/w$w/benchmark_results.csv"
  done | awk -F, -v b="$1" -v v="$2" \
    '$1 ~ b && $2 ~ v { print $1 "," $2 "," $3 "," $5 }' |
    sort -t, -k1,1 -k2,2 -k3,3n -k4,4n |
    awk -F, '
      { key = $1 "," $2 "," $3; v[key, ++n[key]] = $4 }
      END {
        for (key in n) {
          k = n[key]
          if (k % 2) m = v[key, (k + 1) / 2]
          else m = (v[key, k / 2] + v[key, k / 2 + 1]) / 2
          printf "%s,%.1f\n", key, m
        }
      }'
}

# One table row per worker count; skewed's floor (plain threads taking
# the same leaves) says what speed-up the machine itself gives.
medians '^(mt_fib|mt_spawn|skewed)$' '^(spindle|tbb|floor_threads)$' |
  awk -F, -v order="${ran[*]}" '
    { med[$1 "," $2 "," $3] = $4 }
    END {
      c = split("mt_fib,spindle mt_fib,tbb mt_spawn,spindle mt_spawn,tbb " \
                "skewed,spindle skewed,tbb skewed,floor_threads", col, " ")
      printf "| workers |"
      for (x = 1; x <= c; ++x) { split(col[x], bv, ","); printf " %s %s |", bv[1], bv[2] }
      printf "\n|---|"
      for (x = 1; x <= c; ++x) printf "---|"
      printf "\n"
      m = split(order, workers, " ")
      for (i = 1; i <= m; ++i) {
        w = workers[i]
        printf "| %s |", w
        for (x = 1; x <= c; ++x) {
          key = col[x] "," w
          one = col[x] ",1"
          if (!(key in med)) { printf " - |"; continue }
          printf " %.2f ms", med[key] / 1e6
          if (one in med && med[key] > 0)
            printf " (%.2fx)", med[one] / med[key]
          printf " |"
        }
        printf "\n"
      }
    }'

# The ramp (mt_ramp): mt_fib's wall time, and when half and all of the
# workers had started a task, with the runtime's defaults, with the
# workers waking each other one at a time, and with them spinning 1 ms
# before they park (the run begins right after a warm-up).
echo
medians '^mt_ramp(_half|_all)?$' '^spindle(_fanout1|_spin)?$' |
  awk -F, -v order="${ran[*]}" '
    { med[$1 "," $2 "," $3] = $4 }
    END {
      split("spindle spindle_fanout1 spindle_spin", variant, " ")
      printf "| workers |"
      for (x = 1; x <= 3; ++x)
        printf " mt_ramp %s: wall (half, all started) |", variant[x]
      printf "\n|---|---|---|---|\n"
      m = split(order, workers, " ")
      for (i = 1; i <= m; ++i) {
        w = workers[i]
        printf "| %s |", w
        for (x = 1; x <= 3; ++x) {
          wall = "mt_ramp," variant[x] "," w
          half = "mt_ramp_half," variant[x] "," w
          all = "mt_ramp_all," variant[x] "," w
          if (!(wall in med) || !(half in med) || !(all in med)) {
            printf " - |"
            continue
          }
          printf " %.2f ms (%.0f us, %.0f us) |", med[wall] / 1e6,
                 med[half] / 1e3, med[all] / 1e3
        }
        printf "\n"
      }
    }'
echo "CSVs and logs: $out" >&2
