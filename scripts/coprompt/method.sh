# CoPrompt's trainer, config and its authors' script values, sourced by the scripts in this folder.
# Its authors' base-to-novel setting (ShuvenduRoy/CoPrompt: base2new_train_coprompt.sh): configs/trainers/CoPrompt/
# coprompt.yaml (batch 4, 8 epochs, two RandAugment views) with their per-dataset table (train.py applies it;
# Food101: 5 epochs, so its test loads epoch 5 unless LOADEP says otherwise).
# DESCRIPTIONS=<file or folder> (required to train on a real dataset): the class descriptions
# (TRAINER.COPROMPT.DESCRIPTIONS), a JSON file in the authors' format or a folder of their
# <dataset>_prompt.json files; the testbed needs none. docs/REPRODUCING.md ("CoPrompt").
TRAINER=CoPrompt
CFG=coprompt
if [ "${1:-}" = "food101" ] && [ -z "${LOADEP:-}" ]; then LOADEP=5; fi
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
METHOD_OPTS=()
if [ -n "${DESCRIPTIONS:-}" ]; then METHOD_OPTS=(TRAINER.COPROMPT.DESCRIPTIONS "$(from_caller "$DESCRIPTIONS")"); fi

# require_descriptions DATASET: training on a real dataset needs DESCRIPTIONS (checked before any work).
require_descriptions() {
    if ! is_testbed "$(dataset_config "$1")" && [ -z "${DESCRIPTIONS:-}" ]; then
        die "CoPrompt trains against class descriptions: set DESCRIPTIONS to the descriptions file of $1 (a JSON
    file {class name: [description, ...]}, the authors' gpt_file/<dataset>_prompt.json format) or to a folder of
    the authors' files, e.g. DESCRIPTIONS=/path/to/gpt_file bash $0 $*"
    fi
}

# source_row TARGET: on a cross-dataset evaluation, the SOURCE's row of the authors' table on the command line
# (the evaluated dataset's row would change the architecture; their code keys the table by the dataset it runs on).
source_row() {
    if [ "$(source_dataset "$(dataset_config "$1")")" = "imagenet" ]; then
        METHOD_OPTS+=(TRAINER.COPROMPT.PROMPT_DEPTH 12 TRAINER.COPROMPT.N_CTX 4 TRAINER.COPROMPT.W 8.0)
    fi
}
