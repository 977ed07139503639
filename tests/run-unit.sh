#!/bin/sh
# Runs each cmocka unit test binary in its own process with a time limit, and sums up.
set -u
pass=0; fail=0
for t in "$@"; do
    if timeout 120 "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" = 0 ]
