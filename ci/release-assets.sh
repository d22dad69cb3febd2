#!/usr/bin/env bash
# Attach the llcuda wheel's variants, their variants.json, the plain llcuda wheel and SHA256SUMS to the GitHub
# release TAG: the files ci/pages-site.sh indexes at /simple/ on the project's Pages. Every file is checked
# against the tested sums first.
#
#   bash ci/release-assets.sh TAG DIST_DIR        (GH_TOKEN and GITHUB_REPOSITORY set)
set -euo pipefail
tag=${1:?usage: ci/release-assets.sh TAG DIST_DIR}
dist=${2:?usage: ci/release-assets.sh TAG DIST_DIR}
(cd "$dist" && sha256sum --check --strict --quiet SHA256SUMS)
shopt -s nullglob
files=("$dist"/llcuda-*-variants.json "$dist"/llcuda-*-py3-none-any*.whl "$dist/SHA256SUMS")
[ "${#files[@]}" -ge 3 ] || { echo "release-assets: no wheel variants in $dist" >&2; exit 1; }
gh release upload --repo "$GITHUB_REPOSITORY" --clobber "$tag" "${files[@]}"
