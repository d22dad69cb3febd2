#!/usr/bin/env bash
# Fail when a checkout differs from its commit: a tracked file modified or deleted, or a file that git neither
# tracks nor ignores. `.ci/run` ends with it, so that CI never rewrites the tree it tests: a run's measurements go
# to benchmarks/latest/ (ignored), and `nox -s record` copies them into benchmarks/results/ on purpose.
#
#   bash ci/check-clean-tree.sh [DIR]      default: the checkout this script belongs to
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
dirty=$(git -C "$dir" status --porcelain=v1 --untracked-files=all)
if [ -n "$dirty" ]; then
    {
        echo "check-clean-tree: the run left $dir different from its commit; write outputs to an ignored folder"
        echo "(benchmarks/latest/ for measurements) or add them to .gitignore:"
        printf '%s\n' "$dirty"
    } >&2
    exit 1
fi
echo "check-clean-tree: $dir is as committed ($(git -C "$dir" rev-parse --short HEAD))"
