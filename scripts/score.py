#!/usr/bin/env python3
"""Score every event kind on one half of the development datasets, with its baselines.

    python3 scripts/score.py [--half test|tune] [--bin target/release/wanwatch] [--datasets ../shared/datasets]

The halves are committed in scripts/splits.json; every choice is made on the tune half and the
README quotes the test half only. Runs `wanwatch replay` (the agent's own pipeline) and prints,
per event kind:
  * level shifts, RIPE Atlas RTT (hand-labelled change points, tolerance 12 min, merge 1 h):
    the online shift detector, the 24 h z-score, and an offline change-point anchor (ruptures'
    binary segmentation on log RTT, seeing each whole series; penalty chosen on the tune half);
    median confirmation delay;
  * anomalies, NAB (labelled windows, merge 1 h, first 15% unscored): the ensemble against the
    24 h z-score, the difference's spread over series resamples (is the margin larger than the
    noise?), and the ablations: the ensemble without each learned member;
  * prediction, RIPE + Netrics: Brier skill of the hour-ahead outlook against the time-of-week
    climatology, with the outlook's own ablations;
  * the healthy home link (Netrics): notifications a day and level shifts a week.
"""
import argparse, csv, glob, json, math, os, random, subprocess, sys, tempfile
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
SPLITS = json.load(open(os.path.join(HERE, "splits.json")))
# The agent's line-up leaves the forecaster and the forest out (they were ablated on the tune
# half); the table shows the ensemble with each put back and without the autoencoder.
ABLATIONS = [("with", "forecaster"), ("with", "forest"), ("with", "autoencoder")]
# The penalty of the offline anchor, in units of the series' log-RTT variance times log n, chosen
# on the tune half (`--half tune --anchor-pen-grid`).
ANCHOR_PEN = 32.0


def replay(binary, files, root, out_dir, cols=("timestamp", "value"), without="", extra=(), with_=""):
    cmd = [binary, "replay", *files, "--name-root", root, "--out-dir", out_dir,
           "--timestamp-col", cols[0], "--value-col", cols[1], *extra]
    if without:
        cmd += ["--without", without]
    if with_:
        cmd += ["--with", with_]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("replay failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return r.stderr.strip().splitlines()[-1]


def load(out_dir, name):
    return json.load(open(os.path.join(out_dir, name + ".json")))


def scorer(ds):
    sys.path.insert(0, ds)
    import score_events
    return score_events


def ts(s):
    return datetime.fromisoformat(s.replace("T", " ").replace("Z", "")).timestamp()


def f1_line(s):
    return "P %.2f  R %.2f  F1 %.2f  (%d alarm events)" % (s["precision"], s["recall"], s["f1"],
                                                            s["true_alarms"] + s["false_alarms"])


def ripe_clean(ds, names, tmp):
    """RIPE marks timeouts as -3: give replay a copy with them blank; labels as point windows."""
    clean = os.path.join(tmp, "ripe-clean")
    os.makedirs(clean, exist_ok=True)
    labels, series = {}, {}
    for name in names:
        rows = list(csv.DictReader(open(os.path.join(ds, "ripe-rtt", name))))
        with open(os.path.join(clean, name), "w", newline="") as g:
            w = csv.writer(g)
            w.writerow(["timestamp", "rtt_ms"])
            for r in rows:
                w.writerow([r["timestamp"], r["rtt_ms"] if float(r["rtt_ms"]) > 0 else ""])
        labels[name] = [[r["timestamp"], r["timestamp"]] for r in rows if r["is_changepoint"] == "1"]
        series[name] = [(r["timestamp"], float(r["rtt_ms"])) for r in rows if float(r["rtt_ms"]) > 0]
    return clean, labels, series


def anchor(series, pen):
    """Offline binary segmentation (ruptures) on log RTT, whole series at once."""
    import numpy as np
    import ruptures as rpt
    out = {}
    for name, pts in series.items():
        y = np.log(np.array([v for _, v in pts]))
        # robust variance of the noise: from the first differences
        sig = 1.4826 * np.median(np.abs(np.diff(y))) / math.sqrt(2) or 1e-3
        bk = rpt.Binseg(model="l2", min_size=3, jump=1).fit(y.reshape(-1, 1)).predict(
            pen=pen * sig * sig * math.log(len(y)))
        out[name] = [pts[i][0] for i in bk[:-1]]
    return out


def confirmation_delays(labels, onsets, confirmed, tol):
    """For each labelled change hit by an onset: confirmed time - labelled time, in minutes."""
    d = []
    for name, wins in labels.items():
        pairs = list(zip(onsets.get(name, []), confirmed.get(name, [])))
        for a, _ in wins:
            t = ts(a)
            hits = [ts(c) - t for o, c in pairs if abs(ts(o) - t) <= tol]
            if hits:
                d.append(min(hits) / 60)
    d.sort()
    return d[len(d) // 2] if d else float("nan")


def brier_skill(tallies):
    bs = sum(t["brier"] for t in tallies)
    bc = sum(t["brier_climatology"] for t in tallies)
    n = sum(t["n"] for t in tallies)
    return (1 - bs / bc if bc else float("nan")), n


def reliability(tallies):
    bins = [[0.0, 0, 0] for _ in range(10)]
    for t in tallies:
        for i, (sp, k, n) in enumerate(t["bins"]):
            bins[i][0] += sp; bins[i][1] += k; bins[i][2] += n
    return ["%.2f->%.2f (%d)" % (sp / n, k / n, n) for sp, k, n in bins if n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "wanwatch"))
    ap.add_argument("--datasets", default=os.path.join(HERE, "..", "..", "shared", "datasets"))
    ap.add_argument("--half", choices=["tune", "test"], default="test")
    ap.add_argument("--only", choices=["shift", "anomaly", "outlook", "netrics"], action="append")
    ap.add_argument("--no-ablations", action="store_true", help="skip the ablation replays (faster)")
    ap.add_argument("--anchor-pen-grid", action="store_true", help="(tune half) print the anchor's F1 per penalty")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    want = lambda k: not a.only or k in a.only
    ds = os.path.abspath(a.datasets)
    se = scorer(ds)
    tmp = tempfile.mkdtemp(prefix="wanwatch-score-")
    fig = {"half": a.half}
    print("half: %s (scripts/splits.json)" % a.half)

    # --- level shifts and the outlook on RIPE ---------------------------------------------------
    ripe_names = SPLITS["ripe-rtt"][a.half]
    clean, labels, series = ripe_clean(ds, ripe_names, tmp)
    files = [os.path.join(clean, n) for n in ripe_names]
    if want("shift") or want("outlook"):
        out = os.path.join(tmp, "ripe")
        print("RIPE: %d traces ... %s" % (len(files), replay(a.bin, files, clean, out, ("timestamp", "rtt_ms"))),
              flush=True)
    if want("shift"):
        tol, merge = 720, 3600
        sc = lambda alarms: se.score(labels, alarms, tolerance=tol, merge_gap=merge)[0]
        shift = sc(load(out, "shift"))
        delay = confirmation_delays(labels, load(out, "shift"), load(out, "shift_confirmed"), tol)
        z = sc(load(out, "zscore"))
        ens = sc(load(out, "ensemble"))
        anc = sc(anchor(series, ANCHOR_PEN))
        print("\nLEVEL SHIFTS, RIPE %s half (%d traces, %d labelled changes; tolerance 12 min, merge 1 h)"
              % (a.half, len(files), sum(len(v) for v in labels.values())))
        print("  shift detector (online)  %s  median confirmation delay %.0f min" % (f1_line(shift), delay))
        print("  24 h z-score             %s" % f1_line(z))
        print("  anomaly ensemble         %s" % f1_line(ens))
        print("  offline binseg (anchor)  %s" % f1_line(anc))
        fig["shift"] = dict(shift=shift, delay_min=delay, zscore=z, ensemble=ens, anchor=anc)
        if a.anchor_pen_grid:
            for pen in [16, 32, 64, 128]:
                print("    anchor pen %-3g %s" % (pen, f1_line(sc(anchor(series, pen)))))

    # --- anomalies on NAB ------------------------------------------------------------------------
    if want("anomaly"):
        root = os.path.join(ds, "nab", "data")
        nab = [os.path.join(root, f) for f in SPLITS["nab"][a.half]]
        nlabels = json.load(open(os.path.join(ds, "nab", "labels", "combined_windows.json")))
        nlabels = {k: v for k, v in nlabels.items() if k in SPLITS["nab"][a.half]}
        spans = {}
        for f in nab:
            rows = list(csv.reader(open(f)))[1:]
            spans[os.path.relpath(f, root)] = (ts(rows[0][0]), ts(rows[-1][0]))
        sc = lambda alarms, names=None: se.score(
            {k: v for k, v in nlabels.items() if names is None or k in names},
            {k: v for k, v in alarms.items() if names is None or k in names},
            merge_gap=3600, spans=spans, skip_frac=0.15)[0]
        out = os.path.join(tmp, "nab")
        print("NAB: %d series ... %s" % (len(nab), replay(a.bin, nab, root, out)), flush=True)
        ens, z = load(out, "ensemble"), load(out, "zscore")
        rows = {"ensemble": sc(ens), "24 h z-score": sc(z), "week z-score (gated)": sc(load(out, "zweek"))}
        # the margin against the noise: F1(ensemble) - F1(z) over 200 resamples of the series
        rng = random.Random(1)
        names = sorted(nlabels)
        diffs = []
        for _ in range(200):
            pick = set(rng.choice(names) for _ in names)
            diffs.append(sc(ens, pick)["f1"] - sc(z, pick)["f1"])
        m = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / len(diffs))
        if not a.no_ablations:
            for how, member in ABLATIONS:
                o2 = os.path.join(tmp, "nab-%s-%s" % (how, member))
                replay(a.bin, nab, root, o2, **({"with_": member} if how == "with" else {"without": member}))
                rows["ensemble %s %s" % (how, member)] = sc(load(o2, "ensemble"))
                if member == "autoencoder":
                    # off the agent's alarm path, it runs only when put back
                    rows["autoencoder alone"] = sc(load(o2, "autoencoder"))
        print("\nANOMALIES, NAB %s half (%d series, merge 1 h, first 15%% unscored)" % (a.half, len(nab)))
        for k, v in rows.items():
            print("  %-30s %s" % (k, f1_line(v)))
        print("  ensemble - z-score F1: %.3f, spread over series resamples (sd) %.3f" % (
            rows["ensemble"]["f1"] - rows["24 h z-score"]["f1"], sd))
        fig["anomaly"] = dict(rows=rows, diff_sd=sd)

    # --- the healthy home link -------------------------------------------------------------------
    net = SPLITS["netrics-hyde-park"]
    split_at = ts(net["split_at"])
    nroot = os.path.join(ds, "netrics-hyde-park")
    in_half = lambda t: (ts(t) < split_at) == (a.half == "tune")
    # The tune half is the recording up to the split; the test half replays it all (the detectors
    # keep their history, as the agent would) but counts and scores only from the split on.
    nfiles = []
    for s_ in net["series"]:
        if a.half == "test":
            nfiles.append(os.path.join(nroot, s_))
            continue
        os.makedirs(os.path.join(tmp, "netrics-tune"), exist_ok=True)
        cut = os.path.join(tmp, "netrics-tune", s_)
        rows = list(csv.reader(open(os.path.join(nroot, s_))))
        csv.writer(open(cut, "w", newline="")).writerows([rows[0]] + [r for r in rows[1:] if in_half(r[0])])
        nfiles.append(cut)
    nroot = os.path.dirname(nfiles[0])
    nextra = ("--outlook-from", net["split_at"]) if a.half == "test" else ()
    if want("netrics") or want("outlook"):
        out_n = os.path.join(tmp, "netrics")
        print("Netrics: %s" % replay(a.bin, nfiles, nroot, out_n, extra=nextra), flush=True)
    if want("netrics"):
        print("\nHEALTHY HOME LINK, Netrics %s half (%s the %s)" % (
            a.half, "before" if a.half == "tune" else "from", net["split_at"]))
        fig["netrics"] = {}
        for f in nfiles:
            name = os.path.basename(f)
            rows = [r[0] for r in list(csv.reader(open(f)))[1:] if in_half(r[0])]
            days = (ts(rows[-1]) - ts(rows[0])) / 86400
            count = lambda d: [t for t in load(out_n, d).get(name, []) if in_half(t)]
            shifts = count("shift")
            # what a family hears: outages, degradation episodes, anomalies, warnings one by one;
            # level shifts in one daily digest
            notes = len(count("rules")) + len(count("degradation")) + len(count("ensemble")) + len(count("predict"))
            notes += len(set(t[:10] for t in shifts))
            print("  %-34s %.2f notifications/day, %.2f level shifts/week (%.1f days)" % (
                name, notes / days, len(shifts) / days * 7, days))
            fig["netrics"][name] = dict(per_day=notes / days, shifts_per_week=len(shifts) / days * 7, days=days)

    # --- the outlook -----------------------------------------------------------------------------
    if want("outlook"):
        def skill(ripe_out, net_out):
            t = [v for v in load(ripe_out, "outlook").values()]
            t += [v for v in load(net_out, "outlook").values()]
            return brier_skill(t), reliability(t)
        print("\nPREDICTION (trouble within 60 min), RIPE %s half + Netrics; scored after each series' first week"
              % a.half)
        (s, n), rel = skill(os.path.join(tmp, "ripe"), out_n)
        print("  outlook                      Brier skill vs time-of-week climatology %+.3f  (%d predictions)" % (s, n))
        print("  reliability (predicted->observed (n)): %s" % ", ".join(rel))
        ts_ = [v for v in load(os.path.join(tmp, "ripe"), "outlook").values()] + list(load(out_n, "outlook").values())
        wsum = [sum(t["weights"][i] * t["n"] for t in ts_) / max(1, sum(t["n"] for t in ts_))
                for i in range(len(ts_[0]["weights"]))]
        print("  weights at the end, mean over series by predictions (the tune half's is the prior): %s"
              % ", ".join("%.2f" % w for w in wsum))
        st = [[sum(t["states"][i][j] for t in ts_ if t.get("states")) for j in range(2)] for i in range(3)]
        print("  trouble rate by state at prediction (in trouble, out of it < 6 h, quiet): %s" % ", ".join(
            "%.3f (%d)" % (k / max(1, n_), n_) for k, n_ in st))
        bs = [[sum(t["by_state"][i][j] for t in ts_ if t.get("by_state")) for j in range(3)] for i in range(3)]
        print("  Brier skill by state at prediction: %s" % ", ".join(
            "%s %+.3f (%d)" % (name, 1 - b[1] / b[2] if b[2] else float("nan"), b[0])
            for name, b in zip(["in trouble", "just after", "quiet"], bs)))
        fig["outlook"] = dict(skill=s, n=n, reliability=rel, by_state=bs)
        if not a.no_ablations:
            for how, member in [("without", "present"), ("with", "forecaster")]:
                kw = {"with_": member} if how == "with" else {"without": member}
                o1, o2 = os.path.join(tmp, "ripe-%s-%s" % (how, member)), os.path.join(tmp, "net-%s-%s" % (how, member))
                replay(a.bin, files, clean, o1, ("timestamp", "rtt_ms"), **kw)
                replay(a.bin, nfiles, nroot, o2, extra=nextra, **kw)
                (s2, _), _ = skill(o1, o2)
                print("  outlook %s %-12s Brier skill %+.3f" % (how, member, s2))
                fig["outlook"]["%s %s" % (how, member)] = s2
    if a.json:
        json.dump(fig, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
