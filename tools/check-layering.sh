#!/bin/sh
# SPDX-License-Identifier: MIT
# Include layering: common <- crypto <- volume <- snapshot <- target, and
# tools/ includes only common/.  Prints each violation; exits 1 if any.
set -eu
cd "$(dirname "$0")/.."
rank() {
	case "$1" in
	common) echo 0 ;; crypto) echo 1 ;; volume) echo 2 ;; snapshot) echo 3 ;;
	target) echo 4 ;; tools) echo 5 ;; tests) echo 9 ;; *) echo -1 ;;
	esac
}
bad=0
for f in $(git ls-files '*.c' '*.h'); do
	mod=${f%%/*}
	r=$(rank "$mod")
	[ "$r" -ge 0 ] || continue
	[ "$mod" = tests ] && continue
	for inc in $(sed -n 's/^#include "\([a-z_]*\)\/.*"/\1/p' "$f"); do
		ri=$(rank "$inc")
		if [ "$mod" = tools ] && [ "$inc" != common ] && [ "$inc" != tools ]; then
			echo "$f includes $inc/: tools speak only JSON-RPC"; bad=1
		elif [ "$mod" != tools ] && [ "$ri" -gt "$r" ]; then
			echo "$f includes $inc/: $mod/ may not depend on $inc/"; bad=1
		fi
	done
done
[ $bad -eq 0 ] && echo "layering ok"
exit $bad
