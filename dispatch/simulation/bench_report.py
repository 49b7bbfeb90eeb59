"""The Markdown report and PNG plots of `python -m dispatch.simulation.bench`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import wilcoxon

from dispatch.simulation.batch_cycle import SizeResult

if TYPE_CHECKING:
    from dispatch.simulation.bench import BenchSettings, Regime


def _bench() -> Any:
    from dispatch.simulation import bench

    return bench


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def cycle_section(cycle: dict[str, Any]) -> list[str]:
    sizes: list[SizeResult] = cycle["sizes"]
    lines = [
        "## Batch cycle against the real Redis",
        "",
        "This is the matching engine's cycle alone. The dispatcher's own `run_cycle`, which"
        " writes the offers and their outbox events to PostgreSQL and publishes them, is"
        " measured beside it on the same batches in [real_cycle.md](real_cycle.md)"
        " (`flock /tmp/coop-bench.lock python -m dispatch.simulation.real_cycle`).",
        "",
        "One cycle = `GEOSEARCH coop:{bench}:drivers:geo FROMLONLAT 0 0 BYBOX 40075 40075 km"
        " WITHHASH` (the whole fleet in one round trip with integer geohash scores, decoded with"
        " array arithmetic; the dispatcher's own snapshot call) → k-d tree candidates →"
        " straight-line ETAs → OR-Tools linear sum assignment with LP-dual-guided widening"
        " (`plan_batch`) → one round trip writing the batch's offers as one hash"
        " `coop:{bench}:offers:<batch>` (ride → `<driver>:<eta>`) that expires after 30 s."
        " Drivers sit at real"
        " Uber pickups, requests at real taxi pickups (≈30 m jitter);"
        " requests have waited 0–60 s (all three radius steps), 5% have one declined driver."
        " Times are wall-clock over every cycle of every seed, after one warm-up cycle per seed;"
        " CPU is this process's CPU time over the cycle (Redis runs in its own process), which"
        " shows what the cycle costs when it does not share the two cores.",
        "",
        "| requests × drivers | cycles | cycle p50 ms | p99 ms | max ms | cycle CPU p50 / p99 ms "
        "| snapshot p50 ms | plan p50 ms | write p50 ms | candidate edges (median) "
        "| edges / request |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        total = [c.total_ms for c in size.cycles]
        cpu = [c.cpu_ms for c in size.cycles]
        edges = [c.candidate_edges for c in size.cycles]
        lines.append(
            f"| {size.n_requests:,} × {size.n_drivers:,} | {len(total)} | {np.median(total):.1f} "
            f"| {_pct(total, 99):.1f} | {max(total):.1f} "
            f"| {np.median(cpu):.1f} / {_pct(cpu, 99):.1f} "
            f"| {np.median([c.snapshot_ms for c in size.cycles]):.1f} "
            f"| {np.median([c.plan_ms for c in size.cycles]):.1f} "
            f"| {np.median([c.write_ms for c in size.cycles]):.1f} "
            f"| {np.median(edges):,.0f} | {np.median(edges) / size.n_requests:.1f} |"
        )
    lines += [
        "",
        "How `plan_batch` stays exact while touching few pairs: each request first lists its 4"
        " nearest drivers (more when requests outnumber drivers) from a k-d tree built once per"
        " batch; OR-Tools' `SimpleLinearSumAssignment` solves max-matches-then-min-cost on a"
        " doubled graph where every request may stay unmatched (first at a small cost, 2 × the"
        " largest ETA + 1, kept when Hopcroft-Karp confirms the matching is maximum, else at a"
        " cost above any augmenting path). Then the smallest LP duals of the plan are computed"
        " (driver prices by a worklist longest-path relaxation). A request whose dual exceeds the"
        " cheapest ETA any driver left off its list could have is the only place a better plan"
        " can hide, so only those lists grow (×2, ×4 if unmatched). A new pair that prices"
        " negative under the duals marks its request for re-planning; the round re-plans the"
        " two-hop neighbourhood of those requests and keeps it when the new duals certify it"
        " optimal for the whole batch (no free driver priced), else it re-solves their connected"
        " components whole. When no request is flagged, the plan is optimal over *every* pair"
        " within the radii and the ETA cap (exactly so for the straight-line model, whose ETA"
        " grows with distance).",
        "",
        "### Against the dense optimum",
        "",
        "Dense = scipy `linear_sum_assignment` over the full requests × drivers matrix with the"
        " same radius, ETA cap (1,800 s) and exclusions (disallowed pairs cost more than any"
        " matching, so it also maximises matches first). Same batches, same machine.",
        "",
        "| requests × drivers | seed | fast: matched | dense: matched | fast cost s | dense cost s "
        "| cost gap | fast plan ms | dense solve ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        for i, dense_ms in enumerate(size.dense_ms):
            gap = 100.0 * (size.sparse_cost[i] / size.dense_cost[i] - 1.0)
            lines.append(
                f"| {size.n_requests:,} × {size.n_drivers:,} | {i} | {size.sparse_matched[i]:,} "
                f"| {size.dense_matched[i]:,} | {size.sparse_cost[i]:,} | {size.dense_cost[i]:,} "
                f"| {gap:+.3f}% | {size.sparse_plan_ms[i]:.0f} | {dense_ms:,.0f} |"
            )
    geosearch = cycle["geosearch"]
    n_requests = cycle["geosearch_requests"]
    lines += [
        "",
        "### Why not one GEOSEARCH per request",
        "",
        f"`GEOSEARCH key FROMLONLAT … BYRADIUS 3000 m ASC COUNT 20`, one round trip per request,"
        f" {n_requests:,} requests at taxi pickups, drivers at Uber pickups:",
        "",
        "| drivers indexed | per request p50 ms | all requests, sequential ms "
        "| extrapolated to 2,000 requests ms |",
        "|---|---|---|---|",
    ]
    for n_drivers, median_ms, total_ms in geosearch:
        lines.append(
            f"| {n_drivers:,} | {median_ms:.2f} | {total_ms:,.0f} "
            f"| {total_ms / n_requests * 2000:,.0f} |"
        )
    lines += [
        "",
        "Each GEOSEARCH must gather and sort every driver inside the circle, so its cost grows"
        " with driver density; the snapshot reads the fleet once per batch, whatever the number"
        " of requests, and the k-d tree answers all requests in process.",
        "",
    ]
    return lines


def plot_cycle(cycle: dict[str, Any], out: Path) -> None:
    sizes: list[SizeResult] = cycle["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for size in sizes:
        edges = [c.candidate_edges for c in size.cycles]
        left.scatter(
            edges,
            [c.plan_ms for c in size.cycles],
            s=10,
            label=f"{size.n_requests:,} × {size.n_drivers:,}",
        )
    all_edges = np.array([c.candidate_edges for s in sizes for c in s.cycles], dtype=float)
    all_ms = np.array([c.plan_ms for s in sizes for c in s.cycles])
    slope = float(np.median(all_ms / all_edges))
    xs = np.linspace(0, all_edges.max() * 1.05, 10)
    left.plot(xs, slope * xs, "k--", lw=1, label=f"linear, {slope * 1000:.2f} ms per 1k edges")
    left.set_xlabel("candidate edges in the final solve")
    left.set_ylabel("plan_batch ms (candidates + ETA + solve)")
    left.set_title("Solve time grows with candidate edges")
    left.legend(fontsize=8)
    geosearch = cycle["geosearch"]
    right.plot(
        [g[0] for g in geosearch],
        [g[2] / cycle["geosearch_requests"] * 2000 for g in geosearch],
        "o-",
        label="one GEOSEARCH per request (2,000 requests)",
    )
    for size in sizes:
        if size.n_requests == 2000:
            right.axhline(
                float(np.median([c.total_ms for c in size.cycles])),
                color="green",
                ls="--",
                label=f"whole batch cycle, 2,000 × {size.n_drivers:,}",
            )
    right.set_xlabel("drivers indexed in Redis")
    right.set_ylabel("ms")
    right.set_yscale("log")
    right.set_title("Candidate search: per-request round trips vs one snapshot")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cycle_scaling.png", dpi=110)
    plt.close(fig)


def plot_sim(regimes: dict[str, Regime], weights: tuple[float, ...], out: Path) -> None:
    bench = _bench()
    # Wait-time distribution per policy.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, name in zip(axes, ("taxi-90", "uber-day"), strict=True):
        regime = regimes[name]
        for label, policy, weight in bench.policy_labels(regime):
            if policy == "batched-fair" and weight != weights[len(weights) // 2]:
                continue
            detailed = [r for r in regime.by_policy(policy, weight) if "waits" in r]
            if not detailed:
                continue
            waits = np.sort(detailed[0]["waits"]) / 60
            axis.plot(waits, np.linspace(0, 1, len(waits)), label=label)
        axis.set_xlabel("pickup wait (request to pickup), minutes")
        axis.set_ylabel("share of served riders")
        axis.set_title(regime.description, fontsize=8)
        axis.set_xlim(0, 30)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "wait_distribution.png", dpi=110)
    plt.close(fig)

    # Solve time versus batch size, from the simulations.
    fig, axis = plt.subplots(figsize=(6.5, 4.2))
    for name in ("taxi-90", "uber-day"):
        for row in regimes[name].by_policy("batched"):
            if "batch_requests" in row:
                axis.scatter(
                    row["batch_requests"], row["batch_solve_ms"], s=4, alpha=0.4, label=name
                )
    axis.set_xlabel("open requests in the batch")
    axis.set_ylabel("plan_batch ms")
    axis.set_title("Solve time per batch in simulation (seed 0)")
    axis.legend()
    fig.tight_layout()
    fig.savefig(out / "solve_time_vs_batch_size.png", dpi=110)
    plt.close(fig)

    # Earnings spread: Lorenz curves over the Uber day.
    regime = regimes["uber-day"]
    fig, axis = plt.subplots(figsize=(6.5, 4.2))
    for label, policy, weight in bench.policy_labels(regime):
        detailed = [r for r in regime.by_policy(policy, weight) if "earnings" in r]
        if not detailed or policy == "greedy-oldest":
            continue
        earnings = np.sort(detailed[0]["earnings"])
        share = np.concatenate([[0], np.cumsum(earnings) / earnings.sum()])
        axis.plot(np.linspace(0, 1, len(share)), share, label=label)
    axis.plot([0, 1], [0, 1], "k:", lw=1)
    axis.set_xlabel("share of drivers, lowest earners first")
    axis.set_ylabel("share of the day's fares")
    axis.set_title("Earnings spread over the Uber day (seed 0)")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "earnings_spread.png", dpi=110)
    plt.close(fig)

    # The fairness trade-off over the weight.
    base_wait = regime.metric("batched", "wait_mean_s")
    all_weights = [0.0, *weights]
    wait_change, gini, decile = [], [], []
    for w in all_weights:
        policy = "batched" if w == 0 else "batched-fair"
        fair_waits = regime.metric(policy, "wait_mean_s", w)
        wait_change.append([100 * (a / b - 1) for a, b in zip(fair_waits, base_wait, strict=True)])
        gini.append(regime.metric(policy, "earnings_gini", w))
        decile.append(regime.metric(policy, "lowest_decile_share_pct", w))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, values, title in zip(
        axes,
        (wait_change, gini, decile),
        ("mean pickup wait vs pure-ETA batching, %", "Gini of driver earnings",
         "lowest-earning decile's share, %"),
        strict=True,
    ):  # fmt: skip
        medians = [np.median(v) for v in values]
        low = [np.median(v) - min(v) for v in values]
        high = [max(v) - np.median(v) for v in values]
        axis.errorbar(all_weights, medians, yerr=[low, high], fmt="o-", capsize=3)
        axis.set_xscale("symlog", linthresh=0.5)
        axis.set_xlabel("fairness weight (s of pickup per $ earned above the lowest)")
        axis.set_title(title, fontsize=9)
    axes[0].axhline(5, color="red", ls="--", lw=1)
    fig.suptitle("Fairness trade-off, Uber day, median and range over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fairness_tradeoff.png", dpi=110)
    plt.close(fig)


def write(
    report: dict[str, Any], settings: BenchSettings, out: Path, command: str, machine: list[str]
) -> None:
    bench = _bench()
    regimes: dict[str, Regime] = report["regimes"]
    lines = [
        "# Matching benchmark",
        "",
        f"Generated by `{command}` (the `make bench` target) on {report['started']}, in"
        f" {report['elapsed_s'] / 60:.1f} minutes. Every figure is a median over seeds"
        f" {', '.join(map(str, settings.seeds))} with its range `[min–max]` unless noted.",
        "",
        "## Machine",
        "",
        *machine,
        f"- Load average (1/5/15 min) at start {report['load_start']}, at end {report['load_end']}."
        " The machine is shared with other test and load-test runs, so wall-clock times carry"
        " their noise.",
        "",
    ]
    lines += target_section(report, settings)
    if "cycle" in report:
        lines += cycle_section(report["cycle"])
        if "cycle_load_start" in report:
            started = report.get("cycle_started")
            lines += [
                (
                    f"Measured from {started} (`--render <raw results> --redo-cycle` re-measures"
                    " this section alone). "
                    if started
                    else ""
                )
                + f"Load average during this section: {report['cycle_load_start']} at its start,"
                f" {report['cycle_load_end']} at its end.",
                "",
            ]
        plot_cycle(report["cycle"], out)
        lines += ["![cycle scaling](cycle_scaling.png)", ""]
    lines += [
        "## Policies on real demand",
        "",
        "Same demand, same fleet start and the same seed for every policy in a row group. Drivers"
        " start where each cab's first trip of the taxi file starts (taxi) or at random pickups of"
        " the day (Uber); 10% of offers are declined; riders give up after 300 s without an"
        " accepted offer; batches every 2 s of simulated time; radius 3 km, 6 km after 20 s,"
        " 10 km after 40 s; pickup ETA cap 1,800 s; straight-line ETA 25 km/h × 1.3 circuity"
        " unless noted."
        " Wait = request to pickup (time to an accepted offer plus the drive).",
        "",
        "Taxi fleet sizes were calibrated on seed 0 with both greedy rules (best of the two):",
        "",
        "| drivers | " + " | ".join(f"{f:,}" for f, _ in report["calibration"]) + " |",
        "|---|" + "---|" * len(report["calibration"]),
        "| best greedy served % | "
        + " | ".join(f"{s:.1f}" for _, s in report["calibration"])
        + " |",
        "",
    ]
    lines += [
        "Policies: `greedy-oldest` / `greedy-nearest` offer each new request to the nearest free"
        " driver at once, and a driver who frees up while requests wait takes the oldest / the"
        " nearest of them (both within the waiting request's radius and the ETA cap); `batched`"
        " is `plan_batch` with the production defaults; `batched-priority w=0.1` adds"
        " `wait_priority=0.1` (a request is favoured by 0.1 s of pickup per second it has waited"
        " longer than the youngest, which only changes *who* is served when not all can be);"
        " `batched-fair w` adds `fairness_weight=w` (a driver's cost rises by w seconds per"
        " dollar earned today above the lowest-earning free driver). Earnings: NYC's 2013 meter,"
        " $2.50 + $1.55 per km of the trip. Empty km: straight-line × 1.3 to the pickup.",
        "",
    ]
    for regime in regimes.values():
        lines += [f"### {regime.description}", "", *bench.policy_table(regime), ""]
        if regime.name == "taxi-90-road" and report.get("road_rerun"):
            lines += [
                "The `batched` rows of this regime were re-run (same seeds and settings) after"
                " `plan_batch` learned to bound left-off drivers by the road model's fastest pace;"
                " the first run had listed drivers by straight-line order only, and its mean wait"
                " was 2.0% above the best greedy.",
                "",
            ]
    plot_sim(regimes, settings.fairness_weights, out)
    lines += [
        "![wait distribution](wait_distribution.png)",
        "",
        "![solve time versus batch size](solve_time_vs_batch_size.png)",
        "",
        "![earnings spread](earnings_spread.png)",
        "",
        "![fairness trade-off](fairness_tradeoff.png)",
        "",
        "## Reproduce",
        "",
        "```bash",
        f".venv/bin/{command.replace('python', 'python', 1)}",
        "# one policy run, e.g. the taxi peak at the 90% fleet:",
        f".venv/bin/python -m dispatch.simulation --trips ../shared/data/{bench.TAXI_FILE} "
        f"--start 2013-01-01T00:00 --end 2013-01-01T00:30 --fleet {report['fleets'][90.0]} "
        "--policies greedy-oldest,greedy-nearest,batched --seed 0",
        "```",
        "",
    ]
    (out / "matching.md").write_text("\n".join(lines))


def target_section(report: dict[str, Any], settings: BenchSettings) -> list[str]:
    bench = _bench()
    regimes: dict[str, Regime] = report["regimes"]
    lines = [
        "## Targets of issue 4",
        "",
        "`met?` judges the median over seeds; the range shows every seed.",
        "",
        "| target | measured | met? |",
        "|---|---|---|",
    ]
    for regime in regimes.values():
        for label, policy, weight in bench.policy_labels(regime):
            if policy not in ("batched", "batched-priority"):
                continue
            gap = bench.versus_best_greedy(regime, policy, weight)
            lines.append(
                f"| {label} never worse than the best greedy: {regime.description} "
                f"| served {bench.spread(gap['served'], 2)} pts, mean wait "
                f"{bench.spread(gap['wait'], 2)}% vs the best greedy rule of the same seed "
                f"| {'yes' if gap['ok'] else 'no'} |"
            )
    uber = regimes["uber-day"]
    surplus: Regime = report.get("surplus") or uber
    greedy_eta = bench.surplus_pickup_eta(surplus, "greedy-nearest")
    batched_eta = bench.surplus_pickup_eta(surplus, "batched")
    change = np.array([100 * (b / g - 1) for b, g in zip(batched_eta, greedy_eta, strict=True)])
    error = change.std(ddof=1) / np.sqrt(len(change)) if len(change) > 1 else float("nan")
    p_value = float(wilcoxon(change).pvalue) if len(change) > 1 else float("nan")
    lower = np.median(change) < 0 and p_value < 0.05
    lines.append(
        "| surplus hours (hours with fewer requests than the median hour): batched lowers mean"
        f" pickup ETA | over {len(change)} seeds: greedy-nearest {bench.spread(greedy_eta, 0)} s,"
        f" batched {bench.spread(batched_eta, 0)} s: {bench.spread(list(change), 2)}%; mean"
        f" {change.mean():+.2f}% ± {error:.2f} (standard error); lower on"
        f" {int((change < 0).sum())} of {len(change)} seeds; Wilcoxon signed-rank p ="
        f" {p_value:.3f} (two-sided) | {'yes' if lower else 'no'} |"
    )
    base_gini = uber.metric("batched", "earnings_gini")
    base_decile = uber.metric("batched", "lowest_decile_share_pct")
    base_wait = uber.metric("batched", "wait_mean_s")
    for w in settings.fairness_weights:
        g = uber.metric("batched-fair", "earnings_gini", w)
        d = uber.metric("batched-fair", "lowest_decile_share_pct", w)
        wait = uber.metric("batched-fair", "wait_mean_s", w)
        wait_cost = [100 * (a / b - 1) for a, b in zip(wait, base_wait, strict=True)]
        ok = (
            np.median(np.subtract(g, base_gini)) < 0
            and np.median(np.subtract(d, base_decile)) > 0
            and np.median(wait_cost) <= 5
        )
        lines.append(
            f"| fairness weight {w:g}: lower Gini, higher lowest decile, ≤5% more wait "
            f"| Gini {bench.spread(base_gini, 3)} → {bench.spread(g, 3)}; lowest decile "
            f"{bench.spread(base_decile, 2)}% → {bench.spread(d, 2)}%; wait "
            f"{bench.spread(wait_cost, 2)}% | {'yes' if ok else 'no'} |"
        )
    if "cycle" in report:
        for size in report["cycle"]["sizes"]:
            total = [c.total_ms for c in size.cycles]
            key = (size.n_requests, size.n_drivers)
            if key == (2000, 10000):
                ok = np.median(total) <= 50 and _pct(total, 99) <= 100
                cpu = [c.cpu_ms for c in size.cycles]
                lines.append(
                    f"| cycle 2,000 × 10,000 ≤ 50 ms median, ≤ 100 ms p99 | {np.median(total):.1f}"
                    f" ms median, {_pct(total, 99):.1f} ms p99 wall-clock (CPU"
                    f" {np.median(cpu):.1f} / {_pct(cpu, 99):.1f} ms) | {'yes' if ok else 'no'} |"
                )
            if key == (5000, 50000):
                ok = np.median(total) <= 300
                cpu = [c.cpu_ms for c in size.cycles]
                lines.append(
                    f"| cycle 5,000 × 50,000 ≤ 300 ms median | {np.median(total):.1f} ms median,"
                    f" {_pct(total, 99):.1f} ms p99 wall-clock (CPU {np.median(cpu):.1f} ms)"
                    f" | {'yes' if ok else 'no'} |"
                )
            for i in range(len(size.dense_ms)):
                same = size.sparse_matched[i] >= size.dense_matched[i]
                gap = 100.0 * (size.sparse_cost[i] / size.dense_cost[i] - 1.0)
                lines.append(
                    f"| {key[0]:,} × {key[1]:,} seed {i}: as many matches as the dense optimum,"
                    f" cost within 1% | {size.sparse_matched[i]:,} vs {size.dense_matched[i]:,}"
                    f" matched, cost gap {gap:+.3f}% | {'yes' if same and gap <= 1 else 'no'} |"
                )
    lines += ["", *same_batches_note(surplus), ""]
    return lines


def same_batches_note(surplus: Regime) -> list[str]:
    """Why the surplus-hour gain is small: on the same batches, the plan and nearest-first agree."""
    bench = _bench()
    paired = bench.surplus_paired_eta(surplus)
    if not paired:
        return []
    differing = bench.spread([p["differing_pct"] for p in paired], 2)
    extra = [p["only_batched"] - p["only_greedy"] for p in paired]
    longer = bench.spread([p["change_pct"] for p in paired], 2)
    return [
        "Why the surplus-hour gain is small: each `batched` run also worked out, for every"
        " request at its first batch, the offer nearest-first in arrival order would make on the"
        " same free drivers (the greedy rule at the same moment; a driver offered once is taken"
        f" for the batch). Over {bench.spread([p['requests'] for p in paired], 0)} quiet-hour"
        f" requests per run, the two offer a different driver (or one offers none) to only"
        f" {differing}% of them: a 2-second batch there rarely holds two requests that want the"
        " same driver. On those first batches the plan offers a driver to"
        f" {bench.spread(extra, 0)} more requests than nearest-first (negative: fewer), and its"
        f" offers to the requests both serve differ by {longer}% in total pickup ETA (negative:"
        " shorter). The lower mean pickup ETA over whole runs is what those few different"
        " decisions do to where the fleet is later; it is small, hence the 20 seeds and the"
        " signed-rank test.",
    ]
