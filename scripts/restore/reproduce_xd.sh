#!/bin/bash
# Cross-dataset transfer: train on the source (imagenet; SOURCE=objects for the testbed), all classes, for each
# seed, evaluate on every target, then the table.
# Usage: DATA=/path/to/datasets bash scripts/restore/reproduce_xd.sh [KEY VALUE ...]
#   METHOD (restore), SOURCE (imagenet), TARGETS (the 10 other datasets; testbed: "shapes patterns digits"),
#   SEEDS ("1 2 3"); see scripts/common.sh.
# Relative paths in DATA and OUTPUT are taken from the folder you run it in.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # no cd: paths stay the caller's
source "${REPO}/scripts/signals.sh"  # run_forwarding: a SIGTERM to this script reaches train.py
METHOD="${METHOD:-restore}"
SOURCE="${SOURCE:-imagenet}"
TARGETS="${TARGETS:-caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101}"
SEEDS="${SEEDS:-1 2 3}"
export SOURCE
[ -d "${REPO}/scripts/${METHOD}" ] || { echo "Error: no scripts/${METHOD}/ (METHOD=${METHOD})" >&2; exit 1; }
TRAINER="$(sed -n 's/^TRAINER=//p' "${REPO}/scripts/${METHOD}/xd_train.sh")"
for seed in $SEEDS; do
    echo "=== ${METHOD}: train on ${SOURCE}, seed ${seed}"
    run_forwarding bash "${REPO}/scripts/${METHOD}/xd_train.sh" "$SOURCE" "$seed" "$@"
    for dataset in $TARGETS; do
        echo "=== ${METHOD}: evaluate on ${dataset}, seed ${seed}"
        run_forwarding bash "${REPO}/scripts/${METHOD}/xd_test.sh" "$dataset" "$seed" "$@"
    done
done
OUT="${OUTPUT:-output}"
"${PYTHON:-python}" "${REPO}/parse_test_res.py" --table xd --root "$OUT" --trainer "$TRAINER" --csv "${OUT}/${TRAINER}_xd.csv"
