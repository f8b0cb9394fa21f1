"""``ketch.training.client``, the deprecated alias of ``ketch.trainer.client``, still
gives what the README taught for one release."""

from __future__ import annotations

import ketch.trainer.client as current


def test_the_old_import_path_still_works() -> None:
    from ketch.training.client import CustomTrainer, TrainerClient

    assert CustomTrainer is current.CustomTrainer
    assert TrainerClient is current.TrainerClient
    import ketch.training.client as alias

    for name in current.__all__:
        assert getattr(alias, name) is getattr(current, name)


def test_a_trainjob_stored_before_the_split_still_finds_its_function_runner() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ketch.training.function_runner", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    new = subprocess.run(
        [sys.executable, "-m", "ketch.trainer.function_runner", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (new.returncode, new.stdout)
