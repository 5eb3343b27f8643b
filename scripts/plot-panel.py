#!/usr/bin/env python3
"""Plots one Grafana dashboard panel from a real Prometheus, as an SVG.

Grafana cannot run on these machines (its licence keeps it out of the project), so the README's
dashboard picture is drawn from the same PromQL the panel holds, answered by a real Prometheus
(`make demo` runs one that scrapes apiscope every second). Standard library only.

    scripts/plot-panel.py --prometheus http://127.0.0.1:9090 --dashboard dashboards/apiserver.json \
        --panel "Requests by verb" --var job=apiscope --minutes 10 --out docs/images/panel.svg

Variables are substituted as Grafana would: `--var name=value` for each, `All` (a regex `.*`)
for the multi-value ones not given, `$__rate_interval` as four scrape intervals (Grafana's rule
for a 1 s scrape with a short range) unless `--rate-interval` says otherwise, `$__range` as the
plotted window (`--minutes`).
"""
import argparse
import html
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request

WIDTH, HEIGHT = 860, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 220, 40, 40
# Grafana's classic palette, so the picture reads like the dashboard.
COLOURS = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9",
           "#705DA0", "#508642", "#CCA300"]


def find_panel(dashboard, title):
    for panel in dashboard.get("panels", []):
        if panel.get("title") == title:
            return panel
        for inner in panel.get("panels", []):
            if inner.get("title") == title:
                return inner
    titles = [p.get("title") for p in dashboard.get("panels", []) if p.get("type") != "row"]
    sys.exit(f"no panel titled {title!r}; panels: {', '.join(titles)}")


def substitute(expr, variables, rate_interval, range_seconds):
    expr = expr.replace("$__rate_interval", rate_interval)
    # Grafana's $__range: the dashboard's whole time range (here the plotted window).
    expr = expr.replace("$__range", f"{int(range_seconds)}s")
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    left = re.findall(r"\$\{?\w+", expr)
    if left:
        sys.exit(f"variables without a value: {', '.join(sorted(set(left)))} (pass --var NAME=VALUE)")
    return expr


def query_range(prometheus, expr, start, end, step):
    url = prometheus.rstrip("/") + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        sys.exit(f"Prometheus refused {expr!r}: {body.get('error')}")
    return body["data"]["result"]


def legend_of(target, metric):
    template = target.get("legendFormat") or ""
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or target.get("refId", "")


def nice_ceiling(value):
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def format_value(value, unit):
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit in ("reqps", "ops"):
        return f"{value:g}/s"
    return f"{value:g}"


def render(title, series, start, end, unit):
    top = nice_ceiling(max((v for _, points in series for _, v in points), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t):
        return LEFT + (t - start) / max(end - start, 1) * plot_w

    def y(v):
        return TOP + plot_h - v / top * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#181b1f"/>',
           f'<text x="{LEFT}" y="24" fill="#ccccdc" font-size="14">{html.escape(title)}</text>']
    for i in range(5):
        value = top * i / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                   f'stroke="#2c3235"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" fill="#9fa7b3" text-anchor="end">'
                   f'{html.escape(format_value(value, unit))}</text>')
    for i in range(6):
        t = start + (end - start) * i / 5
        out.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 16}" fill="#9fa7b3" text-anchor="middle">'
                   f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    for index, (name, points) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for j, (t, v) in enumerate(points))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        legend_y = TOP + 14 + index * 18
        out.append(f'<rect x="{LEFT + plot_w + 16}" y="{legend_y - 9}" width="12" height="4" fill="{colour}"/>')
        out.append(f'<text x="{LEFT + plot_w + 34}" y="{legend_y - 3}" fill="#ccccdc">{html.escape(name[:28])}</text>')
    out.append(f'<text x="{WIDTH - 8}" y="{HEIGHT - 4}" fill="#6e7680" text-anchor="end" font-size="10">'
               f'UTC; data from a real Prometheus</text></svg>')
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--panel", required=True, help="the panel's title")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--step", type=float, default=5, help="seconds between points")
    parser.add_argument("--rate-interval", default="4s")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    with open(args.dashboard) as f:
        dashboard = json.load(f)
    variables = {v["name"]: ".*" for v in dashboard.get("templating", {}).get("list", [])
                 if v.get("includeAll") or v.get("multi")}
    for item in args.var:
        name, _, value = item.partition("=")
        variables[name] = value
    panel = find_panel(dashboard, args.panel)
    end = time.time()
    start = end - args.minutes * 60
    series = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], variables, args.rate_interval, args.minutes * 60)
        for result in query_range(args.prometheus, expr, start, end, args.step):
            points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points:
                series.append((legend_of(target, result["metric"]), points))
    if not series:
        sys.exit(f"panel {args.panel!r} returned no data in the last {args.minutes:g} minutes")
    series.sort(key=lambda s: -max(v for _, v in s[1]))
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    with open(args.out, "w") as f:
        f.write(render(args.panel, series[:len(COLOURS)], start, end, unit))
    print(f"{args.out}: {len(series)} series from {len(panel.get('targets', []))} queries")


if __name__ == "__main__":
    main()
