#!/usr/bin/env bash
# Make sure Debian's Chromium is on this machine for Ketch's browser tests, then run
# a command (see ci-debian-package.sh). Playwright cannot download its own browser
# here, so the tests drive Debian's `chromium` through its executable path.
#
#   scripts/ci-chromium.sh .venv/bin/pytest -n auto   # install Chromium if needed, run the tests
#   scripts/ci-chromium.sh                            # only install it (exit 1 when it cannot be had)
#
# KETCH_TEST_BROWSER=off skips the installation on purpose.
exec "$(dirname "${BASH_SOURCE[0]}")/ci-debian-package.sh" chromium chromium KETCH_TEST_BROWSER "$@"
