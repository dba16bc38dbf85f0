# Shared logic of scripts/<method>/*.sh (sourced, not run). A method script sets
#   TRAINER   trainer name (train.py --trainer)
#   CFG       base-to-novel config (configs/trainers/$TRAINER/$CFG.yaml)
#   XD_CFG    cross-dataset / domain-generalisation config (default: $CFG)
#   CONFIG_DIR  the folder of those configs (default: configs/trainers/$TRAINER; a method of another package:
#             its own folder, whose yaml files name its module in METHOD_MODULES; docs/ADDING_A_METHOD.md)
#   METHOD_OPTS  (optional array) KEY VALUE pairs its authors' scripts pass on every run (KgCoOp's weight),
#             before the trailing overrides (which may change them; the run record keeps what ran)
# and calls one of: base2new_train, base2new_test, xd_train, xd_test with "$@" (DATASET SEED [KEY VALUE ...]).
# A KEY VALUE override of a key the script sets (refuse_script_keys) stops it, naming how to set it.
#
# Environment (all optional except DATA for the real datasets):
#   DATA      folder holding the datasets (CoOp's DATASETS.md layout). The synthetic testbed datasets generate
#             themselves and default to ./data.
#   SHOTS     shots per class (16)              ENGINE   auto | dassl | native (auto)
#   LOADEP    epoch to evaluate (default: the config's OPTIM.MAX_EPOCH, or an OPTIM.MAX_EPOCH override)
#   SOURCE    cross-dataset source dataset (imagenet; objects for the testbed)
#   PYTHON    python interpreter (python)       OUTPUT   output root (output)
#   VARIANT   release (scripts/restore: the official release's configs and ratios)
#   NPROC     processes for one run (1): N > 1 starts train.py under torchrun (native engine, one GPU each)
#   BACKBONE  run on another CLIP (MODEL.BACKBONE.NAME), into OUTPUT/backbone_<name>/... of its own;
#             BACKBONE=tiny-random smoke-tests any config without weights (random CLIP, input size
#             and prompt depths fitted to it: its accuracies mean nothing)
# `bash scripts/<method>/<script>.sh --help` (or no arguments) prints this with the dataset names (usage()).
# On a testbed dataset (its configs/datasets/<name>.yaml names a Testbed* dataset) the scripts use
# configs/trainers/$TRAINER/testbed.yaml (CFG becomes "testbed", also in the output paths).
# Relative paths in DATA, OUTPUT, CONFIG_DIR and PYTHON are taken from the caller's folder
# (resolve_caller_paths), although train.py runs in the repository. The dataset name and DATA are checked
# as every entry point checks them (restore.cli, through dataset_config and data_root), the trainer and
# the KEY VALUE keys by train.py (its --check-finished call), before anything is written. A stop signal sent
# to a script (TERM, HUP, USR1, USR2: timeout, Slurm, kill) reaches the train.py it runs, which saves and
# stops; the script then stops too (run_forwarding, scripts/signals.sh).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${REPO_ROOT}/scripts/signals.sh"  # run_forwarding: a SIGTERM to the script reaches train.py
CALLER_DIR="$PWD"
PYTHON="${PYTHON:-python}"
SHOTS="${SHOTS:-16}"
ENGINE="${ENGINE:-auto}"
NPROC="${NPROC:-1}"
OUTPUT="${OUTPUT:-output}"
XD_CFG="${XD_CFG:-${CFG}}"
if [ -z "${METHOD_OPTS+x}" ]; then METHOD_OPTS=(); fi

die() {
    echo "Error: $*" >&2
    exit 1
}

from_caller() {  # from_caller PATH: PATH made absolute from the caller's folder (unchanged if absolute or empty)
    case "$1" in
        "" | /*) echo "$1" ;;
        "~" | "~/"*) echo "${HOME}${1#\~}" ;;
        *) echo "${CALLER_DIR}/${1#./}" ;;
    esac
}

resolve_caller_paths() {  # DATA, OUTPUT, CONFIG_DIR and a PYTHON given as a path: from the caller's folder
    DATA="$(from_caller "${DATA:-}")"
    OUTPUT="$(from_caller "$OUTPUT")"
    CONFIG_DIR="$(from_caller "${CONFIG_DIR:-}")"
    case "$PYTHON" in */*) PYTHON="$(from_caller "$PYTHON")" ;; esac
}

resolve_caller_paths
cd "$REPO_ROOT"
if [ -n "${BACKBONE:-}" ]; then
    OUTPUT="${OUTPUT}/backbone_${BACKBONE//[^A-Za-z0-9._-]/_}"
fi

usage() {  # usage ARGUMENTS: the help of every method script, kept in this one place
    local datasets
    datasets="$(cd configs/datasets && ls *.yaml 2>/dev/null | sed 's/\.yaml$//' | tr '\n' ' ' | fold -s -w 90)"
    cat <<EOF
usage: [VARIABLE=value ...] bash ${0} ${1}
Trainer ${TRAINER}, default config ${CONFIG_DIR:-configs/trainers/${TRAINER}}/${CFG}.yaml (cross-dataset / DG: ${XD_CFG}.yaml; on a
testbed dataset: testbed.yaml). Trailing KEY VALUE pairs override the config (see python train.py --help),
except the keys the script sets itself (DATASET.NUM_SHOTS: use SHOTS; SEED, DATASET.NAME, ...).

Datasets:
${datasets}
Environment variables (a relative path is taken from the folder you run the script in):
  DATA      folder holding the datasets (DATASETS.md; not the repository's datasets/ package); testbed
            datasets are generated into \${DATA:-./data}
  SHOTS     shots per class (16)
  OUTPUT    output root (output)
  LOADEP    epoch to evaluate (default: the config's OPTIM.MAX_EPOCH)
  ENGINE    auto | dassl | native (auto: Dassl when it is installed)
  SOURCE    cross-dataset source dataset (imagenet; objects on the testbed)
  VARIANT   release: the official release's RESTORE_m (scripts/restore only; per-dataset ratios, override
            with VIS_CALIB_R, TEXT_CALIB_R, FS_LOSS_R)
  NPROC     processes for one run (1); N > 1 starts train.py under torchrun (native engine, one GPU each)
  BACKBONE  another CLIP (MODEL.BACKBONE.NAME; its own output folder); tiny-random: a smoke test
  PYTHON    python interpreter (python)
  RESTORE_NUM_THREADS  torch threads (default: the CPUs available to the process)
Example (the synthetic testbed, nothing to download): bash ${0} ${2}
EOF
}

# check_int NAME VALUE EXAMPLE: VALUE a whole number, else one line naming NAME and an EXAMPLE of it
check_int() {
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number, got '$2' (e.g. $3)."
}

# usage_check NARGS SCRIPT_USAGE EXAMPLE "$@": NARGS positional arguments, then KEY VALUE pairs; EXAMPLE: the
# arguments of a run on the testbed, shown by --help (and without arguments). What else is wrong is said in
# one line: the first argument missing, a KEY without its VALUE (restore.cli.check_overrides, as train.py
# says it), a variable that must be a number.
usage_check() {
    local nargs="$1" usage="$2" example="$3" names
    shift 3
    if [ "$#" -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }; then
        usage "$usage" "$example"
        exit 0
    fi
    if [ "$#" -eq 0 ]; then  # no arguments: the help, as --help
        usage "$usage" "$example" >&2
        echo >&2
        die "usage: bash ${0} ${usage}"
    fi
    read -ra names <<< "$usage"
    if [ "$#" -lt "$nargs" ]; then
        die "Missing ${names[$#]}; usage: bash ${0} ${usage}   (--help: datasets and variables)"
    fi
    "$PYTHON" -m restore.cli overrides "after ${names[*]:0:$nargs}" "${@:nargs+1}" || exit 1
    check_int SHOTS "$SHOTS" "SHOTS=16"
    check_int NPROC "$NPROC" "NPROC=4"
    if [ -n "${LOADEP:-}" ]; then check_int LOADEP "$LOADEP" "LOADEP=10"; fi
}

# Keys the scripts set from their arguments and environment, most of them naming the output folder
# after them: as trailing KEY VALUE overrides they would run one thing and file it under another.
# refuse_script_keys KIND KEY VALUE ...: KIND is base2new, xd, fewshot (CoOp's main.sh: SHOTS is an
# argument, the seeds come from SEEDS) or zeroshot.
refuse_script_keys() {
    local kind="$1" fix
    shift
    while [ "$#" -ge 2 ]; do
        fix=""
        case "$1:$kind" in
            DATASET.NUM_SHOTS:fewshot) fix="give $2 as the SHOTS argument" ;;
            DATASET.NUM_SHOTS:zeroshot) ;;
            DATASET.NUM_SHOTS:*) fix="use SHOTS=$2 (it also names the output folder, shots_<SHOTS>)" ;;
            SEED:fewshot) fix="use SEEDS=$2" ;;
            SEED:zeroshot) ;;
            SEED:*) fix="give $2 as the SEED argument (it also names the output folder, seed<SEED>)" ;;
            DATASET.SUBSAMPLE_CLASSES:base2new) fix="the base-to-novel scripts train on the base classes and test on the new ones (all classes: xd_train.sh)" ;;
            DATASET.NAME:*) fix="give the dataset as the DATASET argument" ;;
            DATASET.ROOT:*) fix="use DATA=$2" ;;
            TRAINER.NAME:*) fix="the trainer is the script's: run scripts/<method>/ of that method" ;;
            OUTPUT_DIR:*) fix="the scripts name the output folder; use OUTPUT=<folder> for another root" ;;
        esac
        [ -z "$fix" ] || die "$1 $2 as an override: $fix."
        shift 2
    done
}

# dataset_config DATASET -> configs/datasets/<dataset>.yaml; an unknown name stops the script with the message
# every entry point gives (restore.cli.check_dataset: a did-you-mean and the valid names).
dataset_config() {
    "$PYTHON" -m restore.cli dataset "$1"
}

is_testbed() {  # is_testbed DATASET_CONFIG_FILE
    grep -Eq 'NAME:[[:space:]]*"?Testbed' "$1"
}

# data_root DATASET_CONFIG_FILE -> DATA (a testbed dataset: default the caller's ./data, generated there by
# train.py), refused as train.py refuses such a --root (restore.cli.check_data_root).
data_root() {
    local root="${DATA:-}"
    if is_testbed "$1"; then
        root="${DATA:-${CALLER_DIR}/data}"
    elif [ -z "$root" ]; then
        die "DATA is not set. Set it to the folder that holds the datasets (see DATASETS.md), e.g.
    DATA=/path/to/datasets bash $0 DATASET SEED"
    elif [ ! -d "$root" ]; then
        die "DATA=$root is not a folder. Set DATA to the folder that holds the datasets (see DATASETS.md)."
    fi
    "$PYTHON" -m restore.cli data-root "$root" DATA || exit 1  # (errexit does not reach into $(...))
    echo "$root"
}

# config_name DATASET_CONFIG_FILE NAME -> NAME, or on a testbed dataset "testbed" ("testbed_release" for a
# release config)
config_name() {
    if ! is_testbed "$1"; then echo "$2"
    elif [[ "$2" == *_release ]]; then echo testbed_release
    else echo testbed; fi
}

trainer_config() {
    local file="${CONFIG_DIR:-configs/trainers/${TRAINER}}/$1.yaml"
    [ -f "$file" ] || die "config file $file not found"
    echo "$file"
}

# load_epoch CONFIG_FILE [KEY VALUE ...]: LOADEP, an OPTIM.MAX_EPOCH override, or the config's MAX_EPOCH
load_epoch() {
    local file="$1"
    shift
    if [ -n "${LOADEP:-}" ]; then echo "$LOADEP"; return; fi
    local ep=""
    while [ "$#" -ge 2 ]; do
        if [ "$1" = "OPTIM.MAX_EPOCH" ]; then ep="$2"; fi
        shift 2
    done
    if [ -z "$ep" ]; then
        ep="$(grep -E '^[[:space:]]*MAX_EPOCH:' "$file" | head -1 | sed -E 's/.*MAX_EPOCH:[[:space:]]*([0-9]+).*/\1/')"
    fi
    [ -n "$ep" ] || die "cannot find OPTIM.MAX_EPOCH in $file; set LOADEP"
    echo "$ep"
}

# BACKBONE's override, added to every train.py call (the finished check included).
BACKBONE_OPTS=()
if [ -n "${BACKBONE:-}" ]; then BACKBONE_OPTS=(MODEL.BACKBONE.NAME "$BACKBONE"); fi

run_train_py() {
    if [ "$NPROC" -gt 1 ]; then  # DATALOADER.TRAIN_X.BATCH_SIZE stays the global batch
        echo "+ $PYTHON -m torch.distributed.run --standalone --nproc_per_node $NPROC train.py $* ${BACKBONE_OPTS[*]}"
        run_forwarding "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" train.py \
            --engine "$ENGINE" "$@" "${BACKBONE_OPTS[@]}"
    else
        echo "+ $PYTHON train.py $* ${BACKBONE_OPTS[*]}"
        run_forwarding "$PYTHON" train.py --engine "$ENGINE" "$@" "${BACKBONE_OPTS[@]}"
    fi
}

# run_job MESSAGE TRAIN_PY_ARGS...: train.py --check-finished decides on the output folder (the one rule:
# finished = a log printed "=> result" and its accuracy; same settings = run_info.json agrees): a finished
# run of exactly these settings (LOADEP and overrides included) is skipped; one made with other settings
# stops the script with the reason (exit 1); otherwise MESSAGE is printed and the job runs (resuming).
run_job() {
    local message="$1" rc=0
    shift
    "$PYTHON" train.py --engine "$ENGINE" --check-finished "$@" "${BACKBONE_OPTS[@]}" || rc=$?
    case "$rc" in
        0) return 0 ;;
        3) ;;
        *) exit "$rc" ;;
    esac
    echo "$message"
    run_train_py "$@"
}

# Release-variant ratios of the official RESTORE (docs/REPRODUCING.md section 9) as config overrides, for
# RESTORE_m's *_release configs: VIS_CALIB_R TEXT_CALIB_R FS_LOSS_R per dataset.
release_overrides() {
    local vis text fs
    case "$1" in
        fgvc_aircraft|caltech101|stanford_cars|oxford_flowers|food101) vis=0.1; text=0.1; fs=1.0 ;;
        oxford_pets|eurosat) vis=0.01; text=0.1; fs=1.0 ;;
        sun397|ucf101|imagenet) vis=0.05; text=0.05; fs=1.0 ;;
        dtd) vis=0.15; text=0.1; fs=0.5 ;;
        *) vis=0.1; text=0.1; fs=1.0 ;;  # the release's command-line defaults
    esac
    echo "TRAINER.RESTORE.SURGERY.RELEASE_VIS_R ${VIS_CALIB_R:-$vis} TRAINER.RESTORE.SURGERY.RELEASE_TEXT_R ${TEXT_CALIB_R:-$text} TRAINER.RESTORE.FS.WEIGHT ${FS_LOSS_R:-$fs}"
}

variant_overrides() {  # extra overrides for the chosen config (release ratios for *_release configs)
    case "$2" in
        *_release) release_overrides "$1" ;;
        *) echo "" ;;
    esac
}

start_message() {
    if [ -d "$1" ]; then echo "Found $1. Resuming..."; else echo "Run this job and save the output to $1"; fi
}

# ------------------------------------------------------------------------------------- base-to-novel
base2new_train() {
    usage_check 2 "DATASET SEED [KEY VALUE ...]" "shapes 1" "$@"
    local dataset="$1" seed="$2"
    shift 2
    check_int SEED "$seed" "bash $0 $dataset 1"
    refuse_script_keys base2new "$@"
    local dcfg root cfg file dir
    dcfg="$(dataset_config "$dataset")"
    root="$(data_root "$dcfg")"
    cfg="$(config_name "$dcfg" "$CFG")"
    file="$(trainer_config "$cfg")"
    dir="${OUTPUT}/base2new/train_base/${dataset}/shots_${SHOTS}/${TRAINER}/${cfg}/seed${seed}"
    # shellcheck disable=SC2046
    run_job "$(start_message "$dir")" --root "$root" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dcfg" --config-file "$file" --output-dir "$dir" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base "${METHOD_OPTS[@]}" \
        $(variant_overrides "$dataset" "$cfg") "$@"
}

base2new_test() {
    usage_check 2 "DATASET SEED [KEY VALUE ...]" "shapes 1   (after base2new_train.sh shapes 1)" "$@"
    local dataset="$1" seed="$2"
    shift 2
    check_int SEED "$seed" "bash $0 $dataset 1"
    refuse_script_keys base2new "$@"
    local dcfg root cfg file common dir model_dir loadep
    dcfg="$(dataset_config "$dataset")"
    root="$(data_root "$dcfg")"
    cfg="$(config_name "$dcfg" "$CFG")"
    file="$(trainer_config "$cfg")"
    common="${dataset}/shots_${SHOTS}/${TRAINER}/${cfg}/seed${seed}"
    model_dir="${OUTPUT}/base2new/train_base/${common}"
    dir="${OUTPUT}/base2new/test_new/${common}"
    loadep="$(load_epoch "$file" "$@")"
    # shellcheck disable=SC2046
    run_job "Evaluate ${model_dir} (epoch ${loadep}) on the new classes; output to ${dir}" \
        --root "$root" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dcfg" --config-file "$file" --output-dir "$dir" \
        --model-dir "$model_dir" --load-epoch "$loadep" --eval-only \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new "${METHOD_OPTS[@]}" \
        $(variant_overrides "$dataset" "$cfg") "$@"
}

# ------------------------------------------------------------------------- cross-dataset / DG
source_dataset() {  # source_dataset DATASET_CONFIG_FILE: the dataset the cross-dataset model is trained on
    if [ -n "${SOURCE:-}" ]; then echo "$SOURCE"; elif is_testbed "$1"; then echo objects; else echo imagenet; fi
}

xd_train() {
    usage_check 2 "DATASET SEED [KEY VALUE ...]   (DATASET: the source, imagenet; objects on the testbed)" "objects 1" "$@"
    local dataset="$1" seed="$2"
    shift 2
    check_int SEED "$seed" "bash $0 $dataset 1"
    refuse_script_keys xd "$@"
    local dcfg root cfg file dir
    dcfg="$(dataset_config "$dataset")"
    root="$(data_root "$dcfg")"
    cfg="$(config_name "$dcfg" "$XD_CFG")"
    file="$(trainer_config "$cfg")"
    dir="${OUTPUT}/${dataset}/${TRAINER}/${cfg}_${SHOTS}shots/seed${seed}"
    # shellcheck disable=SC2046
    run_job "$(start_message "$dir")" --root "$root" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dcfg" --config-file "$file" --output-dir "$dir" \
        DATASET.NUM_SHOTS "$SHOTS" "${METHOD_OPTS[@]}" $(variant_overrides "$dataset" "$cfg") "$@"
}

xd_test() {
    usage_check 2 "DATASET SEED [KEY VALUE ...]" "shapes 1   (after xd_train.sh objects 1)" "$@"
    local dataset="$1" seed="$2"
    shift 2
    check_int SEED "$seed" "bash $0 $dataset 1"
    refuse_script_keys xd "$@"
    local dcfg root cfg file src dir model_dir loadep
    dcfg="$(dataset_config "$dataset")"
    root="$(data_root "$dcfg")"
    cfg="$(config_name "$dcfg" "$XD_CFG")"
    file="$(trainer_config "$cfg")"
    src="$(source_dataset "$dcfg")"
    model_dir="${OUTPUT}/${src}/${TRAINER}/${cfg}_${SHOTS}shots/seed${seed}"
    dir="${OUTPUT}/evaluation/${TRAINER}/${cfg}_${SHOTS}shots/${dataset}/seed${seed}"
    loadep="$(load_epoch "$file" "$@")"
    # shellcheck disable=SC2046
    run_job "Evaluate ${model_dir} (epoch ${loadep}) on ${dataset}; output to ${dir}" \
        --root "$root" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dcfg" --config-file "$file" --output-dir "$dir" \
        --model-dir "$model_dir" --load-epoch "$loadep" --eval-only "${METHOD_OPTS[@]}" \
        $(variant_overrides "$src" "$cfg") "$@"
}

# ----------------------------------------------------------------- CoOp's few-shot protocol
# fewshot_train DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]: CoOp's scripts/coop/main.sh. All
# classes, SHOTS shots, seeds $SEEDS (1 2 3); trains, then tests. Output layout as CoOp's:
# OUTPUT/DATASET/TRAINER/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED.
fewshot_train() {
    usage_check 6 "DATASET CFG CTP NCTX SHOTS CSC [KEY VALUE ...]   (CTP: end, middle or front; CSC: False or True)" "shapes rn50 end 4 16 False" "$@"
    local dataset="$1" cfg_in="$2" ctp="$3" nctx="$4" shots="$5" csc="$6" seed
    shift 6
    check_int NCTX "$nctx" "16"
    check_int SHOTS "$shots" "16"
    for seed in ${SEEDS:-1 2 3}; do check_int "a seed of SEEDS" "$seed" "SEEDS=\"1 2 3\""; done
    refuse_script_keys fewshot "$@"
    local dcfg root cfg file dir
    dcfg="$(dataset_config "$dataset")"
    root="$(data_root "$dcfg")"
    cfg="$(config_name "$dcfg" "$cfg_in")"
    file="$(trainer_config "$cfg")"
    for seed in ${SEEDS:-1 2 3}; do
        dir="${OUTPUT}/${dataset}/${TRAINER}/${cfg}_${shots}shots/nctx${nctx}_csc${csc}_ctp${ctp}/seed${seed}"
        run_job "$(start_message "$dir")" --root "$root" --seed "$seed" --trainer "$TRAINER" \
            --dataset-config-file "$dcfg" --config-file "$file" --output-dir "$dir" \
            TRAINER.COOP.N_CTX "$nctx" TRAINER.COOP.CSC "$csc" TRAINER.COOP.CLASS_TOKEN_POSITION "$ctp" \
            DATASET.NUM_SHOTS "$shots" "${METHOD_OPTS[@]}" "$@"
    done
}

# zeroshot_eval DATASET CFG [KEY VALUE ...]: CoOp's own zero-shot script (all classes, test
# set), into OUTPUT/TRAINER/CFG/DATASET.
zeroshot_eval() {
    usage_check 2 "DATASET CFG [KEY VALUE ...]   (CFG: rn50, rn101, vit_b32 or vit_b16)" "shapes rn50" "$@"
    local dataset="$1" cfg_in="$2"
    shift 2
    refuse_script_keys zeroshot "$@"
    local dcfg root cfg file
    dcfg="$(dataset_config "$dataset")"
    root="$(data_root "$dcfg")"
    cfg="$(config_name "$dcfg" "$cfg_in")"
    file="$(trainer_config "$cfg")"
    run_train_py --root "$root" --trainer "$TRAINER" --dataset-config-file "$dcfg" \
        --config-file "$file" --output-dir "${OUTPUT}/${TRAINER}/${cfg}/${dataset}" --eval-only "$@"
}
