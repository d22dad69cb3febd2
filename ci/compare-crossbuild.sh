#!/usr/bin/env bash
# Compare each backend wheel of the recipe (RECIPE_DIR) with cibuildwheel's build of the same target (OTHER_DIR):
# `python -m llcuda_factory compare-wheels` for every row of targets.toml; a target missing on either side fails.
#
#   bash ci/compare-crossbuild.sh RECIPE_DIR OTHER_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
recipe=${1:?usage: ci/compare-crossbuild.sh RECIPE_DIR OTHER_DIR} other=${2:?usage: ci/compare-crossbuild.sh RECIPE_DIR OTHER_DIR}
factory() { PYTHONPATH="$here/../factory" python -m llcuda_factory "$@"; }
status=0
for target in $(factory matrix | python -c 'import json, sys; print(" ".join(r["target"] for r in json.load(sys.stdin)["include"]))'); do
    a=$(find "$recipe" -name "llcuda_${target}-*.whl" | head -n 1)
    b=$(find "$other" -name "llcuda_${target}-*.whl" | head -n 1)
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo "compare-crossbuild: $target: no wheel in ${a:+$other}${a:-$recipe}" >&2
        status=1
        continue
    fi
    factory compare-wheels "$a" "$b" || status=1
done
exit "$status"
