#!/usr/bin/env bash
# Sums fuzz/campaign/runs.tsv per target into the Markdown table of fuzz/README.md:
# executions and seconds over all rounds, the largest coverage (libFuzzer's `cov`, edges
# reached, and `ft`, features) any round reached, the largest peak RSS, and whether every
# round ended cleanly. A target meets the campaign's bar with >= 10M executions, or with
# >= 3600 s when it is one of the slow ones.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
awk -F'\t' '
NR == 1 { next }
{
    t = $2
    if (!(t in runs)) order[++n] = t
    runs[t]++; secs[t] += $4; execs[t] += $5
    if ($6 + 0 > cov[t]) cov[t] = $6 + 0
    if ($7 + 0 > ft[t]) ft[t] = $7 + 0
    if ($9 + 0 > rss[t]) rss[t] = $9 + 0
    if ($10 != "ok") bad[t] = bad[t] " " $10
}
END {
    print "| target | rounds | executions | seconds | exec/s | cov (edges) | ft | peak RSS MB | result | bar |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
    # Sorted by name for a stable table.
    for (i = 1; i <= n; i++) names[i] = order[i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (names[j] < names[i]) { x = names[i]; names[i] = names[j]; names[j] = x }
    for (i = 1; i <= n; i++) {
        t = names[i]
        rate = secs[t] > 0 ? int(execs[t] / secs[t]) : 0
        bar = (execs[t] >= 10000000) ? "10M runs" : ((secs[t] >= 3600) ? "1 h" : "not yet")
        res = (t in bad) ? "FAILED:" bad[t] : "no crash, timeout or OOM"
        printf "| `%s` | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", t, runs[t], execs[t], secs[t], rate, cov[t], ft[t], rss[t], res, bar
    }
}' runs.tsv
