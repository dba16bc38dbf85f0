#!/bin/bash
# The embedded default job: RESTORE_m on the synthetic testbed, on CPU, with nothing to download.
# Trains on the base classes of a testbed dataset, evaluates on its new classes, prints Base / Novel / HM.
# Usage: bash scripts/restore/testbed_demo.sh [DATASET [SEED]]      (default: shapes 1)
# The dataset is generated into ${DATA:-./data} on first use; results go to ${OUTPUT:-output}/base2new/.
# Relative paths in DATA and OUTPUT are taken from the folder you run it in.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # no cd: paths stay the caller's
source "${REPO}/scripts/signals.sh"  # run_forwarding: a SIGTERM to this script reaches train.py
DATASET="${1:-shapes}"
SEED="${2:-1}"
run_forwarding bash "${REPO}/scripts/restore/base2new_train.sh" "$DATASET" "$SEED"
run_forwarding bash "${REPO}/scripts/restore/base2new_test.sh" "$DATASET" "$SEED"
"${PYTHON:-python}" "${REPO}/parse_test_res.py" --table base2new --root "${OUTPUT:-output}/base2new" \
    --trainer RESTORE_m --cfg testbed
