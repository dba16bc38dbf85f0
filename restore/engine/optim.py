"""Dassl's `build_optimizer` (docs/REPRODUCING.md section 4) over a method's trainable parameters."""
import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "amsgrad", "rmsprop")


class OptimizerError(ValueError):
    """An OPTIM.* value the native engine cannot use; the message names the key."""


def param_groups(model, params, optim_cfg):
    """`params` as one group, or (OPTIM.STAGED_LR) Dassl's two groups: the trainable parameters of the
    model's children named in OPTIM.NEW_LAYERS at LR, all others at LR * BASE_LR_MULT. A method that
    declares its own staged groups (a `lr_groups(params, optim_cfg)` method: DePT's) gives them instead."""
    params = list(params)
    if not optim_cfg.STAGED_LR:
        return params
    if hasattr(model, "lr_groups"):
        return model.lr_groups(params, optim_cfg)
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    children = dict(model.named_children())
    unknown = [n for n in new_layers if n not in children]
    if unknown:
        raise OptimizerError(f"OPTIM.NEW_LAYERS names {unknown}, which are not parts of the model; "
                             f"its parts are: {', '.join(children)}")
    wanted = {id(p) for p in params}
    new = [p for n in new_layers for p in children[n].parameters() if id(p) in wanted]
    new_ids = {id(p) for p in new}
    base = [p for p in params if id(p) not in new_ids]
    return [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new}]


def build_optimizer(model, params, optim_cfg):
    """The optimizer named by OPTIM.NAME over `params` (a method's trainable parameters), with Dassl's
    hyper-parameter keys: sgd (MOMENTUM, WEIGHT_DECAY, SGD_DAMPNING, SGD_NESTEROV), adam / amsgrad /
    adamw (ADAM_BETA1/2, WEIGHT_DECAY, and the project's ADAM_EPS), rmsprop (MOMENTUM, WEIGHT_DECAY, RMSPROP_ALPHA)."""
    name, lr, wd = optim_cfg.NAME, optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    groups = param_groups(model, params, optim_cfg)
    betas, eps = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2), optim_cfg.ADAM_EPS
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd, betas=betas, eps=eps)
    if name == "amsgrad":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=True, eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd, betas=betas, eps=eps)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    if name == "radam":
        raise OptimizerError("OPTIM.NAME radam is Dassl's own RAdam: run with --engine dassl, or use "
                             f"one of {', '.join(OPTIMIZERS)}")
    raise OptimizerError(f"OPTIM.NAME is {name!r}; valid: {', '.join(OPTIMIZERS)}")
