#!/usr/bin/env bash
# Prints the conformance summary from the log written by the suite
# (PALISADE_CONFORMANCE_LOG): cases run / failed / n/a / skipped per backend
# and trait, with the cases' summed time in seconds ("-" for a log without
# times; cases of one test binary run in parallel, so the sum can exceed the
# wall-clock time). "n/a" is a case whose capability the backend lacks (it
# checked that the backend says Unsupported); it is never counted as passed. Exits
# non-zero if any case failed, or was skipped for a backend named in
# PALISADE_REQUIRE_BACKENDS (space-separated backend ids).
set -euo pipefail
log=${1:?usage: conformance-summary.sh LOG}
[ -s "$log" ] || { echo "conformance: no cases ran (empty log $log)"; exit 1; }
awk -F'\t' -v required="${PALISADE_REQUIRE_BACKENDS:-}" '
  { key = $2 "::" $3; seen[key] = 1; n[key, $1]++; total[$1]++; if (NF >= 5) { timed[key]++; ntimed++; ms[key] += $5; all_ms += $5 } }
  END {
    printf "\n%-34s %6s %6s %6s %7s %8s\n", "conformance (backend::trait)", "run", "failed", "n/a", "skipped", "case s"
    bad = 0
    nreq = split(required, req, " ")
    for (k in seen) keys[++m] = k
    # insertion sort for a stable, readable table
    for (i = 2; i <= m; i++) { v = keys[i]; j = i - 1; while (j > 0 && keys[j] > v) { keys[j+1] = keys[j]; j-- } keys[j+1] = v }
    for (i = 1; i <= m; i++) {
      k = keys[i]; run = n[k, "pass"] + n[k, "fail"]
      t = timed[k] ? sprintf("%.1f", ms[k] / 1000) : "-"
      printf "%-34s %6d %6d %6d %7d %8s\n", k, run, n[k, "fail"], n[k, "na"], n[k, "skip"], t
      if (n[k, "fail"] > 0) bad = 1
      split(k, parts, "::")
      for (r = 1; r <= nreq; r++) if (parts[1] == req[r] && n[k, "skip"] > 0) { bad = 1; printf "  ^ %s is required but cases were skipped\n", parts[1] }
    }
    t = ntimed ? sprintf("%.1f", all_ms / 1000) : "-"
    printf "%-34s %6d %6d %6d %7d %8s\n", "total", total["pass"] + total["fail"], total["fail"], total["na"], total["skip"], t
    printf "n/a (capability missing, checked to be Unsupported): %d\n", total["na"]
    printf "conformance: %d passed, %d failed, %d skipped\n", total["pass"], total["fail"], total["skip"]
    exit bad
  }' "$log"
