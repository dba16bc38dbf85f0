"""Did-you-mean hints for mistyped names (trainers, datasets, config keys, backbones)."""
import difflib


def closest(name, valid):
    """The valid name `name` most likely meant, or None.

    A name that differs only in case wins outright (``RESTORE_M`` -> ``RESTORE_m``, never the equally
    distant ``RESTORE_p``); otherwise difflib's closest match, compared case-insensitively.
    """
    valid = [str(v) for v in valid]
    name = str(name or "")
    same = [v for v in valid if v.lower() == name.lower()]
    if same:
        return same[0]
    lowered = {v.lower(): v for v in valid}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[match[0]] if match else None


def did_you_mean(name, valid, fmt="{}"):
    """The hint ' Did you mean X?' (X formatted by `fmt`), or '' when nothing is close."""
    hint = closest(name, valid)
    return f" Did you mean {fmt.format(hint)}?" if hint else ""
