#!/usr/bin/env bash
# The project's GitHub Pages, built in one place so that nothing deployed overwrites another part:
#   /simple/   the PEP 503 index of the newest release's llcuda wheel variants (uv picks the backend by GPU;
#              PyPI may not take variant files), from that release's assets;
#   /          the documentation (docs/, Sphinx).
#
#   bash ci/pages-site.sh SITE_DIR        (GH_TOKEN and GITHUB_REPOSITORY set, as in .github/workflows/pages.yml)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
site=${1:?usage: ci/pages-site.sh SITE_DIR}
mkdir -p "$site"
assets=$(mktemp -d)
trap 'rm -rf "$assets"' EXIT
# The newest release's variant files and the plain llcuda wheel (release.yml attaches them with their sums).
if gh release download --repo "$GITHUB_REPOSITORY" --dir "$assets" \
    --pattern 'llcuda-*-variants.json' --pattern 'llcuda-*-py3-none-any*.whl' --pattern 'SHA256SUMS'; then
    PYTHONPATH="$here/factory" python3 -m llcuda_factory variants-index "$assets" "$site"
else
    echo "pages-site: no release with wheel variants yet; the site has no /simple/" >&2
fi
# The documentation at / (the same build as `nox -s docs`, whose tests CI runs; here only the build).
venv=$(mktemp -d)
trap 'rm -rf "$assets" "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q "pip>=25.1"
"$venv/bin/pip" install -q --group "$here/pyproject.toml:docs" -e "$here"
"$venv/bin/sphinx-build" -W --keep-going -n -q -b html "$here/docs" "$site"
touch "$site/.nojekyll"
