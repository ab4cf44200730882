"""Render the figures of README.md and docs/benchmarks.md from benchmarks/results/*.json.

Each figure sits in a page between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``; this
script rewrites what lies between from the result file, so prose and data cannot drift.

    python tools/docs_figures.py          # rewrite the blocks in place
    python tools/docs_figures.py --check  # exit 1 when a block differs from its result file

tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = ("README.md", "docs/benchmarks.md", "docs/live.md", "docs/models.md")
BLOCK = re.compile(r"(<!-- figures:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _link(page: str, name: str) -> str:
    prefix = "benchmarks/results/" if page == "README.md" else "../benchmarks/results/"
    return f"[`{name}`]({prefix}{name})"


def _cpu(data: dict) -> str:
    info = data["machine_info"]["cpu"]
    return f"{info['count']}-core {info['brand_raw']}"


def _bench(data: dict, name: str) -> dict:
    return next(b for b in data["benchmarks"] if b["name"] == name)


def _extra(data: dict, name: str) -> dict:
    return _bench(data, name)["extra_info"]


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


# --- the README's headline figures ------------------------------------------------------------


def headline(page: str) -> str:
    rows = [_row("what", "figure", "machine", "result file"), _row(*["---"] * 4)]
    name = "extract_cpu_torch_vs_opencv_2core.json"
    d = _load(name)
    e = _extra(d, "test_extract_torch_cpu_vs_opencv")
    rows.append(_row("`flowkit extract`, SPEC-default TV-L1: torch solver vs OpenCV's",
                     f"{e['torch_extract_pairs_per_s']:.2f} vs {e['opencv_extract_pairs_per_s']:.2f} pairs/s "
                     f"({e['torch_over_opencv']:.2f}x)", _cpu(d), _link(page, name)))
    name = "gpu_check_h100.json"
    d = _load(name)
    tp = {impl: {r["batch"]: r["pairs_per_s"] for r in rs} for impl, rs in d["throughput"].items()}
    rows.append(_row("TV-L1 solver alone on CUDA, SPEC defaults, batch 4096: `triton-strips` (`auto`) vs `eager`",
                     f"{tp['triton-strips'][4096]:,.0f} vs {tp['eager'][4096]:,.0f} pairs/s",
                     d["environment"]["device"], _link(page, name)))
    name = "flow_agreement_cpu.json"
    d = _load(name)["results"]
    rows.append(_row("torch vs OpenCV flow, mean end-point error, k = 6 / 18 (OpenCV vs itself with 1e-3 grey-level "
                     "noise)", f"{d['k6']['torch_vs_opencv_epe']['mean']:.3f} / "
                     f"{d['k18']['torch_vs_opencv_epe']['mean']:.3f} px "
                     f"({d['k6']['opencv_perturbed_vs_opencv_epe']['mean']:.3f} / "
                     f"{d['k18']['opencv_perturbed_vs_opencv_epe']['mean']:.3f} px)", "any", _link(page, name)))
    name = "inference_cpu_2core.json"
    d = _load(name)
    e = _extra(d, "test_inference_windows_per_second[64-cpu]")
    n = _extra(d, "test_parameter_count_vs_table3")
    rows.append(_row(f"SOFTNet inference, batch 64 ({n['n_params']:,} parameters; Table 3: {n['table3_m']} M)",
                     f"{e['windows_per_s_median']:,.0f} windows/s", _cpu(d), _link(page, name)))
    name = "causal_vs_offline_synth.json"
    d = _load(name)["overall"]
    rows.append(_row("spotting F1 overall on the demo's synthetic LOSO run: offline (SPEC 7) / live causal "
                     "(default rule)",
                     f"{d['offline']['f1']:.4f} / {d['quantile q=0.95']['f1']:.4f}", "any", _link(page, name)))
    name = "pipeline_dask_cpu_2core.json"
    d = _load(name)
    e = _extra(d, "test_scaling[dask-cluster2]")
    rows.append(_row("`flowkit extract` on a running Dask cluster of 2 workers vs the local 2-worker engine",
                     f"{e['pairs_per_s']:.2f} vs {e['local_workers2_pairs_per_s']:.2f} pairs/s "
                     f"(overhead {100 * e['dask_overhead']:+.1f} %)", _cpu(d), _link(page, name)))
    return "\n".join(rows) + "\n"


# --- docs/benchmarks.md ----------------------------------------------------------------------


def flow_cpu(page: str) -> str:
    rows = [_row("machine", "OpenCV, its own threads", "OpenCV, 2 processes", "torch, batch 8", "torch, batch 32",
                 "result file"), _row(*["---"] * 6)]
    for name in ("flow_cpu_2core.json", "flow_cpu_2core_xeon.json"):
        d = _load(name)
        rate = {b["name"]: b["extra_info"]["pairs_per_s_median"] for b in d["benchmarks"]}
        rows.append(_row(_cpu(d), *(f"{rate[t]:.2f}" for t in ("test_opencv_cpu_own_threads",
                                                                "test_opencv_cpu_process_pool", "test_torch_cpu[8]",
                                                                "test_torch_cpu[32]")), _link(page, name)))
    return "\n".join(rows) + "\n"


def extract_cpu(page: str) -> str:
    rows = [_row("machine", "`extract` vs raw OpenCV TV-L1 (pairs/s, ratio)",
                 "torch vs OpenCV backend (pairs/s, ratio)", "result files"), _row(*["---"] * 4)]
    for suffix in ("", "_xeon"):
        raw_name, vs_name = f"extract_cpu_2core{suffix}.json", f"extract_cpu_torch_vs_opencv_2core{suffix}.json"
        raw, vs = _load(raw_name), _load(vs_name)
        e, t = _extra(raw, "test_extract_vs_raw_opencv"), _extra(vs, "test_extract_torch_cpu_vs_opencv")
        rows.append(_row(_cpu(raw), f"{e['extract_pairs_per_s']:.2f} vs {e['raw_opencv_pairs_per_s']:.2f}, "
                         f"{e['ratio']:.3f}", f"{t['torch_extract_pairs_per_s']:.2f} vs "
                         f"{t['opencv_extract_pairs_per_s']:.2f}, {t['torch_over_opencv']:.2f}x",
                         f"{_link(page, raw_name)}, {_link(page, vs_name)}"))
    return "\n".join(rows) + "\n"


def pipeline(page: str) -> str:
    name = "pipeline_cpu_2core.json"
    d = _load(name)
    rows = [_row("case", "pairs/s", "ratio"), _row(*["---"] * 3)]
    for b in d["benchmarks"]:
        e = b["extra_info"]
        if b["name"].endswith("-flowkit]"):
            rows.append(_row(f"decoder-bound {e['input']}: `extract` vs decode once + raw OpenCV on 2 processes",
                             f"{e['pairs_per_s']:.2f} vs {e['reference_pairs_per_s']:.2f}", f"{e['ratio']:.3f}"))
        elif b["name"].startswith("test_scaling"):
            case = b["name"].split("[")[1].rstrip("]")
            ratio = f"Dask overhead {100 * e['dask_overhead']:.1f} %" if "dask_overhead" in e else ""
            rows.append(_row(f"scaling, {case}", f"{e['pairs_per_s']:.2f}", ratio))
    dask_name = "pipeline_dask_cpu_2core.json"
    for b in _load(dask_name)["benchmarks"]:
        e = b["extra_info"]
        what = {"test_scaling[dask-cluster2]": "running Dask cluster, 2 workers, vs local 2-worker run (paired rounds)",
                "test_cli_local_cluster": "command `--scheduler local:2` vs `--workers 2` (paired rounds)"}[b["name"]]
        rows.append(_row(what, f"{e['pairs_per_s']:.2f} vs {e['local_workers2_pairs_per_s']:.2f}",
                         f"Dask overhead {100 * e['dask_overhead']:.1f} %"))
    return "\n".join(rows) + f"\n\nMachine: {_cpu(d)}; {_link(page, name)}, {_link(page, dask_name)}.\n"


def inference(page: str) -> str:
    rows = [_row("machine", "batch 1", "batch 64", "batch 512", "result file"), _row(*["---"] * 5)]
    for name in ("inference_cpu_2core.json", "inference_cpu_2core_xeon.json"):
        d = _load(name)
        rate = {b["extra_info"].get("batch"): b["extra_info"].get("windows_per_s_median") for b in d["benchmarks"]}
        rows.append(_row(_cpu(d), *(f"{rate[b]:,.0f}" for b in (1, 64, 512)), _link(page, name)))
    return "\n".join(rows) + "\n"


def table3(page: str) -> str:
    name = "table3_cpu_2core.json"
    d = _load(name)
    rows = [_row("backbone", "parameters", "Table 3", "windows/s", "time / SOFTNet's", "paper's ratio"),
            _row(*["---"] * 6)]
    for b in d["benchmarks"]:
        e = b["extra_info"]
        rows.append(_row(e["backbone"], f"{e['n_params']:,}", f"{e['table3_params_m']} M", f"{e['windows_per_s']:,.0f}",
                         f"{e['ratio_to_softnet']:.2f}", f"{e['table3_ratio_to_softnet']:.2f}"))
    return "\n".join(rows) + f"\n\nMachine: {_cpu(d)}; {_link(page, name)}.\n"


def live(page: str) -> str:
    name = "live_cpu_2core.json"
    d = _load(name)
    rows = [_row("TV-L1", "pairs/s", "share of real time (30 fps, two k)"), _row(*["---"] * 3)]
    for b in d["benchmarks"]:
        e = b["extra_info"]
        rows.append(_row(e["preset"], f"{e['pairs_per_s']:.2f}", f"{e['realtime_factor']:.3f}"))
    return "\n".join(rows) + f"\n\nMachine: {_cpu(d)}; {_link(page, name)}.\n"


def strain(page: str) -> str:
    name = "strain_kornia_cpu.json"
    d = _load(name)
    e = _extra(d, "test_strain_flowkit_vs_kornia[1]")
    return (f"flowkit's strain {e['flowkit_ms_median']:.1f} ms against kornia's filter2d "
            f"{e['kornia_ms_median']:.1f} ms "
            f"for {e['batch']} flows ({e['kornia_over_flowkit']:.1f}x; max difference {e['max_abs_diff']}), one "
            f"thread, {_cpu(d)}; {_link(page, name)}.\n")


def training(page: str) -> str:
    name = "training_cpu_2core.json"
    d = _load(name)
    info = {b["name"]: b["extra_info"] for b in d["benchmarks"]}
    rate = {n: e["windows_per_s_median"] for n, e in info.items()}
    stacked = ", ".join(f"{f} folds {rate[f'test_parallel[cpu-{f}folds-1thr]']:,.0f} "
                        f"({info[f'test_parallel[cpu-{f}folds-1thr]']['ratio_to_sequential']:.2f}x)" for f in (1, 4, 8))
    return (f"LOSO training, all folds' steps counted: the sequential trainer {rate['test_sequential']:,.0f} "
            f"windows/s; folds stacked on one thread: {stacked}; the store reader alone "
            f"{rate['test_reader[store]']:,.0f} windows/s, from memory {rate['test_reader[memory]']:,.0f}; "
            f"{_cpu(d)}; {_link(page, name)}.\n")


def gpu_throughput(page: str) -> str:
    rows = [_row("device", "implementation", "B = 64", "256", "1024", "4096", "result file"), _row(*["---"] * 7)]
    for name in ("gpu_check_h100.json", "gpu_check_h200.json"):
        d = _load(name)
        for impl, rs in d["throughput"].items():
            rate = {r["batch"]: r["pairs_per_s"] for r in rs}
            rows.append(_row(d["environment"]["device"], f"`{impl}`",
                             *(f"{rate[b]:,.0f}" if b in rate else "-" for b in (64, 256, 1024, 4096)),
                             _link(page, name)))
    return "\n".join(rows) + "\n"


def causal(page: str) -> str:
    name = "causal_vs_offline_synth.json"
    d = _load(name)
    rows = [_row("type", "spotter", "TP", "FP", "FN", "F1", "latency after the end / onset, median (max)"),
            _row(*["---"] * 7)]
    spotters = (("offline", "offline (SPEC 7)"), ("quantile q=0.95", "causal, quantile 0.95 (default)"),
                ("meanmax", "causal, meanmax"))
    for kind in ("macro", "micro"):
        for key, label in spotters:
            r = d["types"][kind][key]
            late = "at the end of the video"
            if "latency_after_end_s" in r:
                end, onset = r["latency_after_end_s"], r["latency_after_onset_s"]
                late = (f"{end['median']:.2f} / {onset['median']:.2f} s ({end['max']:.2f} / {onset['max']:.2f} s)")
            rows.append(_row(kind, label, str(r["tp"]), str(r["fp"]), str(r["fn"]), f"{r['f1']:.4f}", late))
    for key, label in spotters:
        r = d["overall"][key]
        rows.append(_row("overall", label, str(r["tp"]), str(r["fp"]), str(r["fn"]), f"{r['f1']:.4f}", ""))
    return "\n".join(rows) + f"\n\n{_link(page, name)}.\n"


def backbones(page: str) -> str:
    name = "backbones_synth_cpu.json"
    d = _load(name)
    rows = [_row("backbone", "parameters", "epochs", "LOSO time, 6 folds", "F1 macro", "F1 micro", "F1 overall"),
            _row(*["---"] * 7)]
    for r in d["rows"]:
        rows.append(_row(r["backbone"], f"{r['params']:,}", str(r["epochs"]), f"{r['train_seconds']:.0f} s",
                         f"{r['macro']:.4f}", f"{r['micro']:.4f}", f"{r['overall']:.4f}"))
    return "\n".join(rows) + f"\n\n{_link(page, name)}.\n"


FIGURES = {f.__name__: f for f in (headline, flow_cpu, extract_cpu, pipeline, inference, table3, live, strain,
                                   training, gpu_throughput, causal,
                                   backbones)}


def render(text: str, page: str) -> str:
    """``text`` with every figure block rewritten from its result file."""

    def one(match: re.Match) -> str:
        name = match["name"]
        if name not in FIGURES:
            raise KeyError(f"figure block should name one of {sorted(FIGURES)}, got {name!r}")
        return match.group(1) + FIGURES[name](page) + match.group(4)

    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page differs from its result files")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new = render(text, page)
        if new != text:
            stale.append(page)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"figures should match benchmarks/results, got stale blocks in {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
