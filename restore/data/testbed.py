"""The synthetic testbed datasets (restore.testbed) in the dataset registry.

Each is a split_zhou dataset under ``<DATASET.ROOT>/<dataset_dir>/`` (images in ``images/``), rendered into
DATASET.ROOT on first use when absent (deterministic, seed 0; atomic, so concurrent first uses are safe).

| config (configs/datasets/<name>.yaml) | DATASET.NAME | folder | classes (base/new) |
|---|---|---|---|
| shapes           | TestbedShapes         | testbed_shapes          | 64 (32/32) |
| patterns         | TestbedPatterns       | testbed_patterns        | 32 (16/16) |
| digits           | TestbedDigits         | testbed_digits          | 80 (40/40) |
| objects          | TestbedObjects        | testbed_objects         | 128 (source of cross-dataset / DG) |
| objects_v2, objects_sketch, objects_noise, objects_clutter | TestbedObjectsV2, ...Sketch, ...Noise, ...Clutter | testbed_objects_* | 128 (DG targets) |

Every class has a ``template`` attribute: the prompt ZeroshotCLIP uses on it. A domain-shifted target of
domain generalisation takes its source's prompt ("a picture of a large {}."), as CoOp evaluates the ImageNet
variants with ImageNet's; its own domain-aware prompt ("a sketch of a large {}.") stays in
``restore.testbed.DATASETS[key].template`` (the pretraining record, a labelled reference at most). The matching backbone is
``restore.testbed.load_testbed_clip()`` (32 px inputs, CLIP normalisation, text context length 16).
"""
import os

from restore.testbed import datasets as _tb
from restore.testbed.generate import ensure as _ensure

from restore.files import describe_os_error
from restore.templates import register_template

from .base import SplitJSONDataset, register_dataset
from .errors import DatasetError

DATA_SEED = 0


class TestbedDataset(SplitJSONDataset):
    """A testbed dataset: generated into DATASET.ROOT on first use, then read like any split_zhou dataset."""

    testbed_key = ""   # key in restore.testbed.DATASETS
    image_dir = "images"
    template = ""      # ZeroshotCLIP's prompt

    def __init__(self, cfg):
        root = cfg.DATASET.ROOT
        if not root:
            raise DatasetError(
                f"DATASET.ROOT is empty: pass --root /path/to/data; {type(self).__name__} (a synthetic testbed "
                f"dataset) is generated there on first use.")
        root = os.path.abspath(os.path.expanduser(root))
        try:
            os.makedirs(root, exist_ok=True)
            _ensure(root, self.testbed_key, seed=DATA_SEED)
        except OSError as e:  # a full disk or a read-only --root: the file that failed, nothing kept
            raise DatasetError(f"{type(self).__name__}: cannot generate the testbed dataset under {root}: "
                               f"{describe_os_error(e)}") from None
        except RuntimeError as e:  # generated there before with another seed
            raise DatasetError(f"{type(self).__name__}: {e}") from None
        super().__init__(cfg)


TESTBED_DATASETS = {}  # config name -> DATASET.NAME


def _make(spec):
    cls = type(spec.registry_name, (TestbedDataset,), {
        "__module__": __name__, "__qualname__": spec.registry_name,
        "__doc__": f"Testbed: {spec.description} ({len(spec.classes)} classes; role {spec.role}).",
        "testbed_key": spec.key, "dataset_dir": spec.dataset_dir, "split_file": spec.split_file,
        "template": spec.zeroshot_template,
    })
    globals()[spec.registry_name] = register_dataset(cls)
    register_template(spec.registry_name, spec.zeroshot_template)  # ZeroshotCLIP's prompt
    TESTBED_DATASETS[spec.key] = spec.registry_name


for _spec in _tb.DATASETS.values():
    _make(_spec)

__all__ = ["TestbedDataset", "TESTBED_DATASETS", *TESTBED_DATASETS.values()]
