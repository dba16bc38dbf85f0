"""The GPU check's report: every measurement is one JSON line appended to OUT/gpu_check.jsonl the moment it
is made (by whichever process made it), and OUT/gpu_check.md is rendered from those lines after each one,
so a run cut at any point still returns what it measured. Standard library only.

Row: {"section": N, "kind": ..., ...}; kinds per section are rendered by RENDERERS.
"""
import fcntl
import json
import os

JSONL, MARKDOWN = "gpu_check.jsonl", "gpu_check.md"
TITLES = {0: "Machine", 1: "CUDA tests and a smoke run of every method", 2: "Precision",
          3: "Against the original MaPLe and CoOp", 4: "RESTORE's step against its base method",
          5: "The data pipeline against the GPU step"}
# The goals the check reports against (docs/PERFORMANCE.md section 6).
GOAL_EVAL_1000 = 2.5   # evaluation at 1000 classes: at least this times the original's images/s
GOAL_RESTORE_EXACT = 1.3  # RESTORE's exact step: at most this times its base method's


class Report:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.jsonl = os.path.join(out_dir, JSONL)

    def add(self, section, kind, **row):
        """Append one measurement and re-render the report (safe from several processes at once)."""
        line = json.dumps({"section": section, "kind": kind, **row}, default=str) + "\n"
        with open(self.jsonl, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            fcntl.flock(f, fcntl.LOCK_UN)
        self.render()

    def rows(self):
        if not os.path.exists(self.jsonl):
            return []
        with open(self.jsonl) as f:
            return [json.loads(line) for line in f if line.strip()]

    def render(self):
        text = render(self.rows())
        tmp = os.path.join(self.out_dir, f".{MARKDOWN}.{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(self.out_dir, MARKDOWN))
        return text


def fmt(value, spec=".3g"):
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return lines


def render(rows):
    by_section = {}
    for r in rows:
        by_section.setdefault(r["section"], []).append(r)
    out = ["# GPU check", ""]
    for n in sorted(TITLES):
        got = by_section.get(n, [])
        status = [r for r in got if r["kind"] == "status"]
        state = " (not reached)"
        if status:
            cpu = status[-1].get("cpu_seconds")
            state = f" ({status[-1]['state']}, {status[-1]['seconds']:.0f} s" + \
                (f", CPU {cpu:.0f} s)" if cpu is not None else ")")
        out += [f"## {n}. {TITLES[n]}{state}", ""]
        lines = RENDERERS[n]([r for r in got if r["kind"] not in ("status", "note", "error")])
        lines += [f"- Note: {r['note']}" for r in got if r["kind"] == "note"]
        lines += [f"- ERROR ({', '.join(str(r[k]) for k in ('side', 'method') if k in r)}): {r['error']}"
                  for r in got if r["kind"] == "error"]
        out += (lines or ["(nothing measured)"]) + [""]
    return "\n".join(out)


def render_machine(rows):
    return [f"- {k}: {v}" for r in rows for k, v in r.items() if k not in ("section", "kind")]


def render_tests(rows):
    out = []
    for r in (r for r in rows if r["kind"] == "pytest"):
        out.append(f"pytest `{r['selection']}`: {r['summary']} ({r['seconds']:.0f} s)")
        out += [f"- FAILED {t}" for t in r.get("failed", [])]
        out.append("")
    smoke = [r for r in rows if r["kind"] == "smoke"]
    if smoke:
        out += table(["method", "engine", "config", "exit", "accuracy %", "CUDA peak MiB", "s", "error"],
                     [[r["method"], r["engine"], r["config"], r["rc"], r.get("accuracy"), r.get("cuda_peak_mib"),
                       r["seconds"], r.get("error", "")] for r in smoke])
    return out


def render_precision(rows):
    out = []
    logits = [r for r in rows if r["kind"] == "logits"]
    if logits:
        out += ["Logits of the same weights on test images, each mode against fp32 (cosine = logit / scale):", ""]
        out += table(["method", "mode", "runs as", "max logit diff", "max cosine diff", "argmax agreement %",
                      "accuracy %", "fp32 accuracy %"],
                     [[r["method"], r["mode"], r["runs_as"], r["max_logit_diff"], r["max_cos_diff"],
                       r["argmax_agree"], r["accuracy"], r["ref_accuracy"]] for r in logits])
    train = [r for r in rows if r["kind"] == "train"]
    if train:
        out += ["", "Training from the same state, same batches:", ""]
        out += table(["method", "mode", "steps", "all finite", "first non-finite step", "final loss",
                      "accuracy % after", "s"],
                     [[r["method"], r["mode"], r["steps"], r["finite"], r.get("nonfinite_at"), r.get("final_loss"),
                       r.get("accuracy"), r["seconds"]] for r in train])
    return out


def render_originals(rows):
    speed = [r for r in rows if r["kind"] == "speed"]
    out = []
    if speed:
        out += table(["side", "method", "classes", "precision", "train images/s", "eval images/s",
                      "train peak MiB", "eval peak MiB", "first loss"],
                     [[r["side"], r["method"], r["classes"], r["precision"], r["train_ips"], r["eval_ips"],
                       r.get("train_peak_mib"), r.get("eval_peak_mib"), r.get("first_loss")] for r in speed])
        pairs = []
        for o in (r for r in speed if r["side"] == "original"):
            ours = [r for r in speed
                    if r["side"] == "ours" and (r["method"], r["classes"]) == (o["method"], o["classes"])]
            if not ours:
                continue
            u = ours[-1]
            train, ev = u["train_ips"] / o["train_ips"], u["eval_ips"] / o["eval_ips"]
            mem = (u["train_peak_mib"] / o["train_peak_mib"]) if u.get("train_peak_mib") and o.get("train_peak_mib") \
                else None
            goals = [f"training {'faster' if train > 1 else 'NOT faster'}"]
            if o["classes"] >= 1000:
                goals.append(f"evaluation {'>=' if ev >= GOAL_EVAL_1000 else 'BELOW'} {GOAL_EVAL_1000}x")
            pairs.append([o["method"], o["classes"], f"{train:.2f}x", f"{ev:.2f}x", fmt(mem, ".2f"), "; ".join(goals)])
        if pairs:
            out += ["", "Ours over the original's, same run (speed: higher is better; memory: lower):", ""]
            out += table(["method", "classes", "training", "evaluation", "training peak memory", "goals"], pairs)
    return out


def render_restore(rows):
    steps = [r for r in rows if r["kind"] == "step"]
    out = table(["classes", "method", "variant", "step ms", "ratio", "peak step memory MiB", "memory ratio", "goal"],
                [[r["classes"], r["method"], r["variant"], r["step_ms"], r.get("ratio"), r.get("step_mem_mib"),
                  r.get("mem_ratio"),
                  ("" if r["variant"] != "exact" else
                   f"{'<=' if r['ratio'] <= GOAL_RESTORE_EXACT else 'ABOVE'} {GOAL_RESTORE_EXACT}x")]
                 for r in steps]) if steps else []
    return out


def render_data(rows):
    loader = [r for r in rows if r["kind"] == "loader"]
    out = table(["loader", "batch", "workers", "images/s", "first batch s", "images", "GPU consumes images/s",
                 "loader / GPU"],
                [[r["split"], r["batch"], r["workers"], r["ips"], r["first_batch_s"], r["images"],
                  r.get("gpu_ips"), r.get("ratio")] for r in loader]) if loader else []
    return out


RENDERERS = {0: render_machine, 1: render_tests, 2: render_precision, 3: render_originals, 4: render_restore,
             5: render_data}
