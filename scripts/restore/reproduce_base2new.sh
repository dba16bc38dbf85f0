#!/bin/bash
# Every base-to-novel run (DATASETS x SEEDS: train on base, test on new), then the Base / Novel / HM table.
# Usage: DATA=/path/to/datasets bash scripts/restore/reproduce_base2new.sh [KEY VALUE ...]
#   METHOD    scripts/<METHOD>/ to run (restore = RESTORE_m; restore_p, maple, promptsrc, coop, ...)
#   DATASETS  default: the 11 base-to-novel datasets; the testbed: DATASETS="shapes patterns digits"
#   SEEDS     default "1 2 3";  VARIANT=release for RESTORE_m's release variant; see scripts/common.sh.
# Finished runs are skipped and interrupted ones resume, so the script can simply be started again.
# Relative paths in DATA and OUTPUT are taken from the folder you run it in.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # no cd: paths stay the caller's
source "${REPO}/scripts/signals.sh"  # run_forwarding: a SIGTERM to this script reaches train.py
METHOD="${METHOD:-restore}"
DATASETS="${DATASETS:-imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101}"
SEEDS="${SEEDS:-1 2 3}"
[ -d "${REPO}/scripts/${METHOD}" ] || { echo "Error: no scripts/${METHOD}/ (METHOD=${METHOD})" >&2; exit 1; }
TRAINER="$(sed -n 's/^TRAINER=//p' "${REPO}/scripts/${METHOD}/base2new_train.sh")"
n=0; total=$(( $(echo $DATASETS | wc -w) * $(echo $SEEDS | wc -w) ))
for dataset in $DATASETS; do
    for seed in $SEEDS; do
        n=$((n + 1))
        echo "=== [${n}/${total}] ${METHOD}: ${dataset} seed ${seed}"
        run_forwarding bash "${REPO}/scripts/${METHOD}/base2new_train.sh" "$dataset" "$seed" "$@"
        run_forwarding bash "${REPO}/scripts/${METHOD}/base2new_test.sh" "$dataset" "$seed" "$@"
    done
done
OUT="${OUTPUT:-output}"
"${PYTHON:-python}" "${REPO}/parse_test_res.py" --table base2new --root "${OUT}/base2new" --trainer "$TRAINER" \
    --csv "${OUT}/base2new/${TRAINER}_base2new.csv"
