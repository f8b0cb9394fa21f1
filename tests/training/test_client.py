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
