"""Dassl's "Classification" evaluator (docs/REPRODUCING.md section 5): the same numbers and the same printed lines.

    => result
    * total: 1,234
    * correct: 1,100
    * accuracy: 89.1%
    * error: 10.9%
    * macro_f1: 88.7%
"""
import logging
import os
from collections import OrderedDict, defaultdict

import numpy as np
import torch

from ..distributed import is_primary
from ..files import save_torch

log = logging.getLogger(__name__)


def macro_f1_score(y_true, y_pred) -> float:
    """sklearn's f1_score(average="macro", labels=unique(y_true)): the mean over the true labels of
    2 TP / (2 TP + FP + FN) (0 for a label never predicted correctly)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for label in np.unique(y_true):
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


class Classification:
    def __init__(self, cfg, lab2cname=None):
        self.cfg = cfg
        self.lab2cname = lab2cname or {}
        self.per_class = cfg.TEST.PER_CLASS_RESULT
        self.reset()

    def reset(self):
        self.correct = 0
        self.total = 0
        self.y_true = []
        self.y_pred = []
        self.per_class_hits = defaultdict(list)

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        pred = logits.argmax(dim=1)
        hits = pred.eq(labels)
        self.correct += int(hits.sum().item())
        self.total += labels.shape[0]
        self.y_true.extend(labels.cpu().tolist())
        self.y_pred.extend(pred.cpu().tolist())
        if self.per_class:
            for label, hit in zip(labels.cpu().tolist(), hits.cpu().tolist()):
                self.per_class_hits[label].append(int(hit))

    def evaluate(self) -> "OrderedDict[str, float]":
        if self.total == 0:
            raise ValueError("Nothing was evaluated: the test split is empty")
        acc = 100.0 * self.correct / self.total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self.y_true, self.y_pred)
        results = OrderedDict([("accuracy", acc), ("error_rate", err), ("macro_f1", macro_f1)])
        log.info("=> result\n"
                 f"* total: {self.total:,}\n"
                 f"* correct: {self.correct:,}\n"
                 f"* accuracy: {acc:.1f}%\n"
                 f"* error: {err:.1f}%\n"
                 f"* macro_f1: {macro_f1:.1f}%")
        if self.per_class:
            log.info("=> per-class result")
            accs = []
            for label in sorted(self.per_class_hits):
                hits = self.per_class_hits[label]
                class_acc = 100.0 * sum(hits) / len(hits)
                accs.append(class_acc)
                log.info(f"* class: {label} ({self.lab2cname.get(label, label)})\t"
                         f"total: {len(hits):,}\tcorrect: {sum(hits):,}\tacc: {class_acc:.1f}%")
            results["perclass_accuracy"] = float(np.mean(accs))
            log.info(f"* average: {results['perclass_accuracy']:.1f}%")
        if self.cfg.TEST.COMPUTE_CMAT and is_primary():
            from sklearn.metrics import confusion_matrix
            cmat = confusion_matrix(self.y_true, self.y_pred, normalize="true")
            path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            save_torch(torch.from_numpy(cmat), path)
            log.info(f"Confusion matrix is saved to {path}")
        return results
