#!/bin/bash
# SPDX-License-Identifier: MIT
# Test runner: every unit program under $BUILD/tests/, then every
# tests/integ/test-*.sh (or the names given as arguments).  Each test runs
# with a time limit; its output goes to $BUILD/test-logs/NAME.log and is
# shown when it fails.  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD TOP=$PWD
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LOGS=$BUILD/test-logs
mkdir -p "$LOGS"
TEST_TIMEOUT=${TEST_TIMEOUT:-900}

tests=()
if [ $# -gt 0 ]; then
	for t in "$@"; do
		if [ -x "$BUILD/tests/$t" ]; then tests+=("$BUILD/tests/$t")
		elif [ -f "tests/integ/$t" ]; then tests+=("tests/integ/$t")
		elif [ -f "tests/integ/$t.sh" ]; then tests+=("tests/integ/$t.sh")
		else echo "no such test: $t" >&2; exit 2
		fi
	done
else
	for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && tests+=("$t"); done
	# A .py with a .sh of the same name is run by that wrapper.
	for t in tests/integ/test-*.sh tests/integ/test-*.py; do
		[ -f "$t" ] || continue
		case "$t" in *.py) [ -f "${t%.py}.sh" ] && continue ;; esac
		tests+=("$t")
	done
fi

pass=0 failn=0 failed=()
for t in "${tests[@]}"; do
	name=$(basename "$t")
	log=$LOGS/$name.log
	start=$(date +%s)
	case "$t" in
	*.py) cmd=(/usr/bin/python3 "$t") ;;
	*.sh) cmd=(bash "$t") ;;
	*) cmd=("$t") ;;
	esac
	if timeout -k 10 "$TEST_TIMEOUT" "${cmd[@]}" >"$log" 2>&1; then
		pass=$((pass + 1))
		echo "ok   $name ($(( $(date +%s) - start ))s)"
	else
		rc=$?
		failn=$((failn + 1))
		failed+=("$name")
		echo "FAIL $name (exit $rc, $(( $(date +%s) - start ))s); last lines of $log:"
		tail -n 40 "$log" | sed 's/^/    /'
	fi
done
echo "$pass passed, $failn failed"
[ "$failn" -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
