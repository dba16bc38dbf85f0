"""Dassl is optional: `import trainers` never fails, and registers nothing without a usable Dassl.
Runs with or without Dassl installed (an unusable Dassl is simulated in a subprocess)."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_import_without_dassl_registers_nothing():
    out = run("""
        import sys
        sys.modules["dassl"] = None          # as if Dassl were missing or failed to import
        import trainers, trainers.coop, trainers.maple, trainers.restore_trainers
        from restore.methods import registry
        assert not trainers.DASSL_AVAILABLE
        assert isinstance(trainers.dassl_import_error(), ImportError)
        assert list(trainers.TRAINERS) == registry.names()  # one generated class per method
        assert all(cls.__name__ == name for name, cls in trainers.TRAINERS.items())
        try:
            trainers.MaPLe(None)
        except ImportError as err:
            print(err)
        else:
            raise SystemExit("building a trainer without Dassl must fail")
    """)
    assert "needs Dassl" in out and "--engine native" in out


def test_import_with_broken_dassl_keeps_the_reason():
    out = run("""
        import sys, types
        broken = types.ModuleType("dassl")
        broken.__path__ = []                 # a package whose engine cannot be imported
        sys.modules["dassl"] = broken
        sys.modules["dassl.engine"] = None
        import trainers
        assert not trainers.DASSL_AVAILABLE
        print(repr(trainers.dassl_import_error()))
    """)
    assert "dassl.engine" in out
