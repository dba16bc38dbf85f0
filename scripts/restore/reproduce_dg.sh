#!/bin/bash
# Domain generalisation: the cross-dataset source model (trained by xd_train.sh, trained here if missing)
# evaluated on the shifted versions of the source, then the table.
# Usage: DATA=/path/to/datasets bash scripts/restore/reproduce_dg.sh [KEY VALUE ...]
#   METHOD (restore), SOURCE (imagenet; objects for the testbed), TARGETS (imagenetv2 imagenet_sketch imagenet_a
#   imagenet_r; testbed: "objects_v2 objects_sketch objects_noise objects_clutter"), SEEDS ("1 2 3").
# Relative paths in DATA and OUTPUT are taken from the folder you run it in.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # no cd: paths stay the caller's
source "${REPO}/scripts/signals.sh"  # run_forwarding: a SIGTERM to this script reaches train.py
METHOD="${METHOD:-restore}"
SOURCE="${SOURCE:-imagenet}"
if [ -z "${TARGETS:-}" ]; then
    if [ "$SOURCE" = "objects" ]; then TARGETS="objects_v2 objects_sketch objects_noise objects_clutter"
    else TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"; fi
fi
SEEDS="${SEEDS:-1 2 3}"
export SOURCE
[ -d "${REPO}/scripts/${METHOD}" ] || { echo "Error: no scripts/${METHOD}/ (METHOD=${METHOD})" >&2; exit 1; }
TRAINER="$(sed -n 's/^TRAINER=//p' "${REPO}/scripts/${METHOD}/xd_train.sh")"
for seed in $SEEDS; do
    run_forwarding bash "${REPO}/scripts/${METHOD}/xd_train.sh" "$SOURCE" "$seed" "$@"
    for dataset in $TARGETS; do
        echo "=== ${METHOD}: evaluate on ${dataset}, seed ${seed}"
        run_forwarding bash "${REPO}/scripts/${METHOD}/xd_test.sh" "$dataset" "$seed" "$@"
    done
done
OUT="${OUTPUT:-output}"
"${PYTHON:-python}" "${REPO}/parse_test_res.py" --table dg --root "$OUT" --trainer "$TRAINER" --csv "${OUT}/${TRAINER}_dg.csv"
