#!/usr/bin/env bash
# cibuildwheel's hooks for the backend wheels ([tool.cibuildwheel] in pyproject.toml). They run inside the
# manylinux_2_28 container; the target is the backend project's directory name (python/backends/<target>).
#
#   ci/cibw.sh before-all PACKAGE          the target's CUDA toolkit (none for cpu; the recipe's pinned .deb files,
#                                          unpacked with ar and tar), ccache and patchelf
#   ci/cibw.sh repair WHEEL DEST PACKAGE   the factory's finish: auditwheel with the CUDA excludes, the audit gate
#   ci/cibw.sh test PROJECT PACKAGE        the runtime from PROJECT, then the smoke tests on the installed wheel
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# repair and test run with the build's CPython first on PATH; before-all has only the image's interpreters.
py=python
factory() { PYTHONPATH="$here/../factory" "$py" -m llcuda_factory "$@"; }

cmd=${1:?usage: ci/cibw.sh before-all|repair|test ...}
shift
case "$cmd" in
before-all)
    py=/opt/python/cp312-cp312/bin/python
    target=$(basename "$1")
    dnf install -y -q binutils xz curl patchelf
    dnf install -y -q ccache 2>/dev/null || true  # EPEL; the cross-build runs without it too
    if factory cuda --target "$target"; then
        "$py" -m pip install -q "platformdirs>=3"  # a toolkit of NVIDIA's wheels goes to llcuda's cache dir
        PYTHON="$py" bash "$here/install-cuda-toolkit.sh" --target "$target"  # the version of the row
    fi
    ;;
repair)
    wheel=$1 dest=$2 target=$(basename "$3")
    # the factory's tools from pyproject.toml's "build" dependency group (pip >= 25.1 reads groups)
    "$py" -m pip install -q "pip>=25.1"
    "$py" -m pip install -q --group "$here/../pyproject.toml:build"
    work=$(mktemp -d)
    # the recipe's own step (llcuda_factory.pipeline.finish): repair, the dependencies, the audit gate
    factory finish "$wheel" --target "$target" --out "$work" --report "$work/audit.json"
    mv "$work"/*.whl "$dest/"
    ;;
test)
    project=$1 target=$(basename "$2")
    "$py" -m pip install -q "$project"
    "$py" -m pytest -p no:cacheprovider -q "$project/tests/wheels/test_smoke.py" --expect-backend "$target"
    ;;
*)
    echo "ci/cibw.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
