#!/usr/bin/env bash
# How the recordings beside this script were made, with an installed backend's own test-backend-ops (no GPU on the
# recording machine). Each file starts with "# exit N", the tool's exit status (negative: killed by that signal).
#
#   bash tests/unit/data/test-backend-ops/record.sh SITE-PACKAGES/llcuda_cpu/bin/test-backend-ops
#
#   pass.txt    -b CPU: the CPU device tested against the CPU backend, a real passing run of every MUL_MAT
#               case with a q4_K weight, and of ADD and RMS_NORM
#   no-gpu.txt  no device option on a machine without a GPU: the CPU is skipped, nothing is compared
#   crash.txt   the run of pass.txt killed with SIGSEGV while a MUL_MAT case ran: what a driver fault looks like
#   fail.txt    not recorded here (a wrong result needs a faulty GPU): pass.txt with the device a T4, as CUDA0,
#               and one MUL_MAT line in the FAIL format of test-backend-ops.cpp's console printer
#               ("[MUL_MAT] NMSE = ... > ... FAIL"), the counts and the summary as that printer writes them
set -euo pipefail
tool=$1
here=$(cd "$(dirname "$0")" && pwd)
record() {  # NAME ARGS...
    local name=$1 rc=0
    shift
    out=$("$tool" "$@" 2>&1) || rc=$?
    { echo "# exit $rc"; printf '%s\n' "$out"; } >"$here/$name.txt"
}
record pass test -b CPU -o ADD,RMS_NORM,MUL_MAT -p 'type_a=q4_K'
record no-gpu test -o ADD
# the crash: the same run, killed once a MUL_MAT case has started
"$tool" test -b CPU -o MUL_MAT -p 'type_a=q4_K' >"$here/crash.out" 2>&1 &
pid=$!
until grep -q "MUL_MAT(" "$here/crash.out" 2>/dev/null; do sleep 0.05; done
sleep 0.3
kill -SEGV "$pid"
rc=0
wait "$pid" || rc=$?
{ echo "# exit -$((rc - 128))"; cat "$here/crash.out"; } >"$here/crash.txt"
rm "$here/crash.out"
