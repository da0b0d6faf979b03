#!/usr/bin/env bash
# The grid of docs/findings.md: generator prompt families x datasets, with the controls, then
# the programs of each family replayed for a second solver, then one report over everything.
#   bash benchmarks/scaffold_families.sh OUT [LIMIT] [FAMILIES] [SECOND_SOLVER] [REPLAY_ARGS]
# REPLAY_ARGS: extra model_args of the replays, e.g. direct_style=letter (a 1.5B solver's
# reasoning-style direct answers cost ~20 s an item on 2 cores).
# Runs one model job at a time (on 2 cores two would slow each other far more than 2x).
set -euo pipefail
out=${1:?usage: scaffold_families.sh OUT [LIMIT] [FAMILIES] [SECOND_SOLVER]}
limit=${2:-15}
families=${3:-cgr per_option pot}
second=${4:-qwen2.5-coder-1.5b}
replay_args=${5:+,$5}
tasks=cgr_arc_easy,cgr_aqua_rat,cgr_basic_skills_arithmetic,cgr_basic_skills_pattern
common=(--tasks "$tasks" --limit "$limit" --log_samples --confirm_run_unsafe_code)
mkdir -p "$out"
runs=()
first=1
for family in $families; do
  # the controls that do not depend on the programs (fixed, cot) run once, with the first family
  controls=budget_matched
  [ "$first" = 1 ] && controls=fixed:judge_each_option+fixed:eliminate+cot+budget_matched
  first=0
  [ -d "$out/$family" ] || /usr/bin/time -f "$family: %e s" cgr-eval --model cgr \
    --model_args "generator=qwen2.5-coder-1.5b,solver=smollm2-135m,generator_prompt=$family,controls=$controls" \
    "${common[@]}" --output_path "$out/$family"
  [ -d "$out/$family.pkg" ] || cgr export "$out/$family" --out "$out/$family.pkg"
  runs+=("$out/$family")
done
if [ "$second" != none ]; then
  for family in $families; do
    [ -d "$out/$family.$second" ] || /usr/bin/time -f "$family replayed for $second: %e s" \
      cgr-eval --model cgr --model_args "programs=$out/$family.pkg,solver=$second$replay_args" \
      "${common[@]}" --output_path "$out/$family.$second"
    runs+=("$out/$family.$second")
  done
fi
cgr report "${runs[@]}" --out "$out/report"
