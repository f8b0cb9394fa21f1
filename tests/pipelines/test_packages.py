"""packages_to_install: already-present packages take the fast path; others get a cached env."""

import importlib.util

import pytest
from kfp import dsl

import ketch


@dsl.component(packages_to_install=["scikit-learn"])
def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def test_already_installed_package_fast_path():
    import sklearn

    @dsl.pipeline(name="installed-package")
    def p() -> str:
        return sklearn_version().output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": sklearn.__version__}


@dsl.component(packages_to_install=["pyjokes==0.8.3"])
def tell_joke() -> list:
    import sys
    from importlib.metadata import version

    import pyjokes

    return [version("pyjokes"), pyjokes.__file__, sys.prefix]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("pyjokes") is not None,
    reason="pyjokes is installed in this environment; the test needs a missing package",
)
def test_missing_package_is_installed_and_env_is_reused():
    @dsl.pipeline(name="missing-package")
    def p() -> list:
        return tell_joke().output

    first = ketch.run(p, enable_caching=False)
    assert first.state == "SUCCEEDED", first.error
    version, location, prefix = first.outputs["Output"]
    assert version == "0.8.3"
    # installed for the task only, not into the environment running the tests
    assert importlib.util.find_spec("pyjokes") is None

    second = ketch.run(p, enable_caching=False)
    assert second.state == "SUCCEEDED", second.error
    assert second.tasks["tell-joke"].cached is False
    # the second run used the same prepared environment instead of installing again
    assert second.outputs["Output"] == [version, location, prefix]
    log = open(second.tasks["tell-joke"].log_path).read()
    assert "Successfully installed" not in log


@dsl.component(packages_to_install=["this-package-does-not-exist-ketch-test==0.0.1"])
def impossible() -> str:
    return "unreachable"


@pytest.mark.slow
def test_uninstallable_package_fails_the_task():
    @dsl.pipeline(name="bad-package")
    def p():
        impossible()

    run = ketch.run(p)
    assert run.state == "FAILED"
    assert run.tasks["impossible"].state == "FAILED"
    assert "impossible" in run.error
    assert "this-package-does-not-exist-ketch-test" in run.error
