#!/usr/bin/env python3
"""Score every detector on the development datasets, side by side.

    python3 scripts/score.py [--bin target/release/wanwatch] [--datasets ../shared/datasets]

Runs `wanwatch replay` (the agent's own pipeline) over
  * NAB, all 58 series: event-level precision / recall / F1 from ../shared/datasets/score_events.py
    (1 h merge gap, first 15% of each series unscored, as NAB's probation);
  * the 10 RIPE Atlas RTT traces that onnx/train.py holds out (never trained on): hand-labelled
    change points widened by 1 h;
  * the Netrics home link (healthy, unlabelled): alarms per day, the false-alarm rate a family
    would live with.
and prints one table: ensemble, each detector alone, and the rolling 24 h z-score baseline.
"""
import argparse, csv, glob, json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = []  # --replay-args
DETECTORS = ["ensemble", "forecast", "autoencoder", "forest", "rules", "predict", "zscore", "zweek"]


def replay(binary, files, root, out_dir, cols=("timestamp", "value"), extra=()):
    cmd = [binary, "replay", *files, *EXTRA, "--name-root", root, "--out-dir", out_dir,
           "--timestamp-col", cols[0], "--value-col", cols[1], *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("replay failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return r.stderr.strip().splitlines()[-1]


def score(scorer, labels, alarms, data_root, merge, skip, tolerance):
    cmd = [sys.executable, scorer, "--labels", labels, "--alarms", alarms, "--merge-gap", str(merge),
           "--tolerance", str(tolerance)]
    if skip:
        cmd += ["--skip-first-frac", str(skip), "--data-root", data_root]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "wanwatch"))
    ap.add_argument("--datasets", default=os.path.join(HERE, "..", "..", "shared", "datasets"))
    ap.add_argument("--only", choices=["nab", "ripe", "netrics"], action="append")
    ap.add_argument("--json", help="also write the table here")
    ap.add_argument("--replay-args", default="", help='extra replay flags, e.g. "--alarms-per-week 2"')
    a = ap.parse_args()
    EXTRA.extend(a.replay_args.split())
    ds = os.path.abspath(a.datasets)
    scorer = os.path.join(ds, "score_events.py")
    tmp = tempfile.mkdtemp(prefix="wanwatch-score-")
    table = {}

    if not a.only or "nab" in a.only:
        root = os.path.join(ds, "nab", "data")
        files = sorted(glob.glob(os.path.join(root, "*", "*.csv")))
        out = os.path.join(tmp, "nab")
        print("NAB: %d series ... %s" % (len(files), replay(a.bin, files, root, out)), flush=True)
        labels = os.path.join(ds, "nab", "labels", "combined_windows.json")
        table["NAB"] = {d: score(scorer, labels, os.path.join(out, d + ".json"), root, 3600, 0.15, 0)
                        for d in DETECTORS}

    if not a.only or "ripe" in a.only:
        root = os.path.join(ds, "ripe-rtt")
        files = sorted(glob.glob(os.path.join(root, "*.csv")))[15:]  # train.py trains on the first 15
        out = os.path.join(tmp, "ripe")
        # RIPE marks timeouts as -3: a missing value, which replay reads as "not a number" only if
        # it is not one, so give replay a copy with the timeouts blanked.
        clean = os.path.join(tmp, "ripe-clean")
        os.makedirs(clean, exist_ok=True)
        windows = {}
        for f in files:
            name = os.path.basename(f)
            rows = list(csv.DictReader(open(f)))
            with open(os.path.join(clean, name), "w", newline="") as g:
                w = csv.writer(g)
                w.writerow(["timestamp", "rtt_ms"])
                for r in rows:
                    w.writerow([r["timestamp"], r["rtt_ms"] if float(r["rtt_ms"]) > 0 else ""])
            windows[name] = [[r["timestamp"], r["timestamp"]] for r in rows if r["is_changepoint"] == "1"]
        labels = os.path.join(tmp, "ripe-labels.json")
        json.dump(windows, open(labels, "w"))
        cf = sorted(glob.glob(os.path.join(clean, "*.csv")))
        print("RIPE held out: %d traces ... %s" % (len(cf), replay(a.bin, cf, clean, out, ("timestamp", "rtt_ms"))),
              flush=True)
        table["RIPE (held out)"] = {d: score(scorer, labels, os.path.join(out, d + ".json"), clean, 3600, 0, 3600)
                                    for d in DETECTORS}

    if not a.only or "netrics" in a.only:
        root = os.path.join(ds, "netrics-hyde-park")
        f = os.path.join(root, "hyde_park__google_rtt_max_ms.csv")
        out = os.path.join(tmp, "netrics")
        print("Netrics: %s" % replay(a.bin, [f], root, out), flush=True)
        rows = list(csv.reader(open(f)))[1:]
        from datetime import datetime
        days = (datetime.fromisoformat(rows[-1][0]) - datetime.fromisoformat(rows[0][0])).total_seconds() / 86400
        per_day = {}
        for d in DETECTORS:
            alarms = json.load(open(os.path.join(out, d + ".json")))
            per_day[d] = dict(alarms=sum(len(v) for v in alarms.values()), days=days)
        table["Netrics"] = per_day

    print()
    print("%-12s" % "detector" + "".join("%-30s" % k for k in table))
    sub = "".join("%-30s" % ("P     R     F1    events" if k != "Netrics" else "alarms/day (alarms, days)")
                  for k in table)
    print("%-12s" % "" + sub)
    for d in DETECTORS:
        line = "%-12s" % d
        for k, v in table.items():
            s = v[d]
            if k == "Netrics":
                line += "%-30s" % ("%.2f  (%d in %.1f d)" % (s["alarms"] / s["days"], s["alarms"], s["days"]))
            else:
                line += "%-30s" % ("%.2f  %.2f  %.2f  %d" % (s["precision"], s["recall"], s["f1"],
                                                             s["true_alarms"] + s["false_alarms"]))
        print(line)
    if a.json:
        json.dump(table, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
