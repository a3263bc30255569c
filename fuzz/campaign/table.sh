#!/usr/bin/env bash
# Sums fuzz/campaign/runs.tsv per target into the Markdown table of fuzz/README.md:
# executions and seconds over all rounds, the largest coverage (libFuzzer's `cov`, edges
# reached, and `ft`, features) any round reached, the largest peak RSS, and how the
# rounds ended. A target meets the campaign's bar with >= 10M executions, or with
# >= 3600 s when it is one of the slow ones, counted over the clean rounds after its last
# failing one (a failure is fixed, then the bar is met again from there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
awk -F'\t' '
NR == 1 { next }
{
    t = $2
    if (!(t in runs)) order[++n] = t
    runs[t]++; secs[t] += $4; execs[t] += $5
    if ($10 == "ok") { csecs[t] += $4; cexecs[t] += $5 }
    else { csecs[t] = 0; cexecs[t] = 0; bad[t] = bad[t] (bad[t] == "" ? "" : ", ") "round " runs[t] ": " $10; lastbad[t] = runs[t] }
    if ($6 + 0 > cov[t]) cov[t] = $6 + 0
    if ($7 + 0 > ft[t]) ft[t] = $7 + 0
    if ($9 + 0 > rss[t]) rss[t] = $9 + 0
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
        bar = (cexecs[t] >= 10000000) ? "10M runs" : ((csecs[t] >= 3600) ? "1 h" : "not yet")
        if (!(t in bad)) res = "no crash, timeout or OOM"
        else if (lastbad[t] == runs[t]) res = "FAILED (" bad[t] ")"
        else res = bad[t] " (fixed); clean since: " cexecs[t] " runs, " csecs[t] " s"
        printf "| `%s` | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", t, runs[t], execs[t], secs[t], rate, cov[t], ft[t], rss[t], res, bar
    }
}' runs.tsv
