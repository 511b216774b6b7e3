#!/usr/bin/env bash
# Run every fuzz target (or the ones named) with libFuzzer and print, per
# target, the executions, the coverage (edges "cov" and features "ft") and
# the crashes and leaks found.
#
#   fuzz/run.sh [-n RUNS] [-t SECONDS] [-j NICE] [target...]
#
#   -n RUNS     executions per target (default 10000000)
#   -t SECONDS  stop a target after this long even if RUNS is not reached
#               (default: no limit)
#   -j NICE     nice level (default 10: the machine is shared)
#
# The committed corpus (fuzz/corpus/<target>) seeds a working corpus in
# fuzz/corpus-run/<target> (not committed), so the seeds stay small. A
# crash or leak stops its target; its input is kept in
# fuzz/artifacts/<target>/ (commit it to fuzz/corpus/<target>/ as
# regression-<what>, with the fix). Exit status 1 when anything crashed.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); libFuzzer's instrumentation
# needs nightly flags, which RUSTC_BOOTSTRAP=1 allows on the pinned stable
# toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

runs=10000000
secs=0
nice_level=10
while getopts n:t:j: o; do
    case $o in
        n) runs=$OPTARG ;;
        t) secs=$OPTARG ;;
        j) nice_level=$OPTARG ;;
        *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(dhcp vrrp netconf_framing netconf_rpc bootstrap backup_wire)
fi

export RUSTC_BOOTSTRAP=1
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for t in "${targets[@]}"; do
    nice -n "$nice_level" cargo fuzz build -O "$t"
done
bin=target/x86_64-unknown-linux-gnu/release

failed=0
printf '%-16s %12s %8s %8s %7s %8s %s\n' target executions edges features crashes rss_mb seconds
for t in "${targets[@]}"; do
    mkdir -p "corpus-run/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    start=$(date +%s)
    set +e
    nice -n "$nice_level" "$bin/$t" "corpus-run/$t" "corpus/$t" \
        -runs="$runs" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        >"$log" 2>&1
    rc=$?
    set -e
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    # the last status line: "#N  DONE cov: E ft: F corp: ..."
    line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
    crashes=0
    if [ "$rc" -ne 0 ]; then
        crashes=1
        failed=1
        # an unfinished run stops before its final stats
        [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$line")
    fi
    printf '%-16s %12s %8s %8s %7s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "$crashes" "${rss:-?}" "$took"
    if [ "$rc" -ne 0 ]; then
        grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|panicked at|^artifact_prefix|Test unit written' "$log" |
            head -5 | sed 's/^/    /'
    fi
done
exit $failed
