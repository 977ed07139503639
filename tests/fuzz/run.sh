#!/bin/sh
# run.sh RUNS SECS HARNESS...: each libFuzzer harness from its corpus (tests/fuzz/corpus/
# NAME, new inputs kept in build/fuzz/work/NAME) for RUNS inputs (0: no count) and SECS
# seconds at most; prints the executions of each; a crash stops it, exit 1.
runs=$1 secs=$2
shift 2
for f in "$@"; do
    name=$(basename "$f")
    work=build/fuzz/work/$name log=build/fuzz/$name.log
    mkdir -p "$work"
    if [ "$runs" -gt 0 ]; then limit="-runs=$runs"; else limit=""; fi
    if ! "$f" $limit -max_total_time="$secs" -timeout=5 -artifact_prefix=build/fuzz/ \
            -print_final_stats=1 "$work" "tests/fuzz/corpus/$name" >/dev/null 2>"$log"; then
        tail -30 "$log"
        echo "fuzz: $name failed (log: $log)"
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    secs_run=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz: $name: $execs inputs ($secs_run a second), no crash"
done
echo "fuzz: $# harnesses, no crash"
