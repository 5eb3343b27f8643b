#!/usr/bin/env python3
"""Writes apiscope's Prometheus rule files (dashboards/rules/*.yaml) and Grafana dashboards
(dashboards/*.json) from the definitions below, so that the selectors, SLO thresholds and panel
layout are written once.

    python3 dashboards/generate.py          # rewrite the files
    python3 dashboards/generate.py --check  # fail if a committed file differs (make check-rules)
    python3 dashboards/generate.py --panel-rules  # every panel query as a rule file, for promtool

Standard library only. The promtool unit tests (dashboards/rules/tests/*.yaml) are hand-written:
they state the expected alerts independently of this generator.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------
# Selectors and SLO settings, as kubernetes-mixin's _config names them (rules/kube_apiserver-config)
# ---------------------------------------------------------------------------------------------

JOB = 'job="apiscope"'
READ = 'verb=~"LIST|GET"'
WRITE = 'verb=~"POST|PUT|PATCH|DELETE"'
NON_STREAMING = 'subresource!~"proxy|attach|log|exec|portforward"'
# apiscope's prometheus-client writes bucket bounds as floats and Prometheus 3 stores every `le`
# of a histogram in that form (it rewrites a Go exporter's le="1" to le="1.0" too), so the
# thresholds are matched as "1.0", "5.0", "30.0" (measured with Prometheus 3.16.0).
READ_RESOURCE_LE = "1.0"
READ_NAMESPACE_LE = "5.0"
READ_CLUSTER_LE = "30.0"
WRITE_LE = "1.0"
SCOPE_RESOURCE = 'scope=~"resource|"'
SCOPE_NAMESPACE = 'scope="namespace"'
SCOPE_CLUSTER = 'scope="cluster"'
LE_READ_RESOURCE = f'le="{READ_RESOURCE_LE}"'
LE_READ_NAMESPACE = f'le="{READ_NAMESPACE_LE}"'
LE_READ_CLUSTER = f'le="{READ_CLUSTER_LE}"'
LE_WRITE = f'le="{WRITE_LE}"'
CODE_5XX = 'code=~"5.."'
SLI_VERBS = 'verb=~"LIST|GET|POST|PUT|PATCH|DELETE"'
WATCH = 'verb="WATCH"'
# apiscope_response_sizes_bytes' 1e6 bucket as Prometheus 3 stores it (checked by the e2e test).
RESPONSE_1MB = 'le="1e+06"'
CLUSTER = "cluster"  # the label that tells clusters apart (an external label; absent is fine)
SLO_TARGET = 0.99
SLO_DAYS = 30
# kubernetes-mixin's SLOs.apiserver.windows: (severity, long, short, factor, for)
BURN_WINDOWS = [
    ("critical", "1h", "5m", 14.4, "2m"),
    ("critical", "6h", "30m", 6, "15m"),
    ("warning", "1d", "2h", 3, "1h"),
    ("warning", "3d", "6h", 1, "3h"),
]

REQUESTS = "apiscope_request_total"
DURATION = "apiscope_request_duration_seconds"
# Where the alerts' runbooks are: this repository's page, relative; point it at wherever your copy
# of the docs is served (then run this generator again).
DOCS = "docs/dashboards.md"


def code_is(pattern):
    return f'code=~"{pattern}"'


def sel(*parts):
    return "{" + ",".join(p for p in parts if p) + "}"


def burn_windows():
    return sorted({w for _, long, short, _, _ in BURN_WINDOWS for w in (long, short)},
                  key=lambda w: int(w[:-1]) * {"m": 60, "h": 3600, "d": 86400}[w[-1]])


def fast_reads(metric, window, extra="", by=CLUSTER, indent="      "):
    """Read requests within their scope's threshold: one `or` of the three bucket selections
    (disjoint label sets, so `or` is their union) summed once. A scope without traffic then adds
    nothing instead of emptying the sum, which the mixin works around with `or vector(0)`."""
    base = [JOB, READ, NON_STREAMING, extra]
    parts = [
        f"rate({metric}_bucket{sel(*base, SCOPE_RESOURCE, LE_READ_RESOURCE)}[{window}])",
        f"rate({metric}_bucket{sel(*base, SCOPE_NAMESPACE, LE_READ_NAMESPACE)}[{window}])",
        f"rate({metric}_bucket{sel(*base, SCOPE_CLUSTER, LE_READ_CLUSTER)}[{window}])",
    ]
    joint = f"\n{indent}or\n{indent}"
    return f"sum by ({by}) (\n{indent}" + joint.join(parts) + f"\n{indent[:-2]})"


def burnrate_read(window):
    return f"""(
  (
    # too slow
    sum by ({CLUSTER}) (rate({DURATION}_count{sel(JOB, READ, NON_STREAMING)}[{window}]))
    -
    ({fast_reads(DURATION, window)}
    or
    # no read within its threshold at all (still a series, so the difference stays defined)
    min by ({CLUSTER}) (apiscope_inflight_requests{sel(JOB)}) * 0)
  )
  +
  # errors
  (sum by ({CLUSTER}) (rate({REQUESTS}{sel(JOB, READ, CODE_5XX)}[{window}]))
    or min by ({CLUSTER}) (apiscope_inflight_requests{sel(JOB)}) * 0)
)
/
sum by ({CLUSTER}) (rate({REQUESTS}{sel(JOB, READ)}[{window}]))
"""


def burnrate_write(window):
    return f"""(
  (
    # too slow
    sum by ({CLUSTER}) (rate({DURATION}_count{sel(JOB, WRITE, NON_STREAMING)}[{window}]))
    -
    (sum by ({CLUSTER}) (rate({DURATION}_bucket{sel(JOB, WRITE, NON_STREAMING, LE_WRITE)}[{window}]))
      or min by ({CLUSTER}) (apiscope_inflight_requests{sel(JOB)}) * 0)
  )
  +
  # errors
  (sum by ({CLUSTER}) (rate({REQUESTS}{sel(JOB, WRITE, CODE_5XX)}[{window}]))
    or min by ({CLUSTER}) (apiscope_inflight_requests{sel(JOB)}) * 0)
)
/
sum by ({CLUSTER}) (rate({REQUESTS}{sel(JOB, WRITE)}[{window}]))
"""


def slo_rules():
    days = f"{SLO_DAYS}d"
    budget = round(1 - SLO_TARGET, 5)
    burnrate = [
        {"record": f"apiscope_request:burnrate{w}", "expr": burnrate_read(w), "labels": {"verb": "read"}}
        for w in burn_windows()
    ] + [
        {"record": f"apiscope_request:burnrate{w}", "expr": burnrate_write(w), "labels": {"verb": "write"}}
        for w in burn_windows()
    ]
    histogram = [
        {
            "record": f"{CLUSTER}_quantile:{DURATION}:histogram_quantile",
            "expr": f"histogram_quantile(0.99, sum by ({CLUSTER}, le, resource) "
                    f"(rate({DURATION}_bucket{sel(JOB, selector, NON_STREAMING)}[5m]))) > 0\n",
            "labels": {"verb": verb, "quantile": "0.99"},
        }
        for verb, selector in (("read", READ), ("write", WRITE))
    ]
    inc_days = f"increase{days}"
    avail_all = f"""1 - (
  (
    # write too slow
    (sum by ({CLUSTER}) ({CLUSTER}_verb_scope:{DURATION}_count:{inc_days}{sel(WRITE)}) or vector(0))
    -
    (sum by ({CLUSTER}) ({CLUSTER}_verb_scope_le:{DURATION}_bucket:{inc_days}{sel(WRITE, LE_WRITE)}) or vector(0))
  )
  +
  (
    # read too slow
    (sum by ({CLUSTER}) ({CLUSTER}_verb_scope:{DURATION}_count:{inc_days}{sel(READ)}) or vector(0))
    -
    ({fast_days()} or vector(0))
  )
  +
  # errors
  (sum by ({CLUSTER}) (code:{REQUESTS}:{inc_days}{{code=~"5.."}}) or vector(0))
)
/
(sum by ({CLUSTER}) (code:{REQUESTS}:{inc_days}) or vector(1))
"""
    avail_read = f"""1 - (
  (sum by ({CLUSTER}) ({CLUSTER}_verb_scope:{DURATION}_count:{inc_days}{sel(READ)}) or vector(0))
  -
  # within threshold
  ({fast_days()} or vector(0))
  +
  # errors
  (sum by ({CLUSTER}) (code:{REQUESTS}:{inc_days}{{verb="read",code=~"5.."}}) or vector(0))
)
/
(sum by ({CLUSTER}) (code:{REQUESTS}:{inc_days}{{verb="read"}}) or vector(1))
"""
    avail_write = f"""1 - (
  (
    # too slow
    (sum by ({CLUSTER}) ({CLUSTER}_verb_scope:{DURATION}_count:{inc_days}{sel(WRITE)}) or vector(0))
    -
    (sum by ({CLUSTER}) ({CLUSTER}_verb_scope_le:{DURATION}_bucket:{inc_days}{sel(WRITE, LE_WRITE)}) or vector(0))
  )
  +
  # errors
  (sum by ({CLUSTER}) (code:{REQUESTS}:{inc_days}{{verb="write",code=~"5.."}}) or vector(0))
)
/
(sum by ({CLUSTER}) (code:{REQUESTS}:{inc_days}{{verb="write"}}) or vector(1))
"""
    availability = [
        # The mixin writes this as four rules, one per code class, which promtool's lint reports
        # as duplicates (same name, no label apart): one rule over the same codes here.
        {
            "record": f"code_verb:{REQUESTS}:increase1h",
            "expr": f"sum by ({CLUSTER}, code, verb) (increase({REQUESTS}{sel(JOB, SLI_VERBS, code_is('[2-5]..'))}[1h]))\n",
        }
    ] + [
        {
            "record": f"code_verb:{REQUESTS}:{inc_days}",
            "expr": f"avg_over_time(code_verb:{REQUESTS}:increase1h[{days}]) * 24 * {SLO_DAYS}\n",
        }
    ] + [
        {
            "record": f"code:{REQUESTS}:{inc_days}",
            "expr": f"sum by ({CLUSTER}, code) (code_verb:{REQUESTS}:{inc_days}{sel(selector)})\n",
            "labels": {"verb": verb},
        }
        for verb, selector in (("read", READ), ("write", WRITE))
    ] + [
        {
            "record": f"{CLUSTER}_verb_scope_le:{DURATION}_bucket:increase1h",
            "expr": f"sum by ({CLUSTER}, verb, scope, le) (increase({DURATION}_bucket{sel(JOB, NON_STREAMING)}[1h]))\n",
        },
        {
            "record": f"{CLUSTER}_verb_scope_le:{DURATION}_bucket:{inc_days}",
            "expr": f"sum by ({CLUSTER}, verb, scope, le) (avg_over_time({CLUSTER}_verb_scope_le:{DURATION}_bucket:increase1h[{days}]) * 24 * {SLO_DAYS})\n",
        },
        {
            "record": f"{CLUSTER}_verb_scope:{DURATION}_count:increase1h",
            "expr": f'sum by ({CLUSTER}, verb, scope) ({CLUSTER}_verb_scope_le:{DURATION}_bucket:increase1h{{le="+Inf"}})\n',
        },
        {
            "record": f"{CLUSTER}_verb_scope:{DURATION}_count:{inc_days}",
            "expr": f'sum by ({CLUSTER}, verb, scope) ({CLUSTER}_verb_scope_le:{DURATION}_bucket:{inc_days}{{le="+Inf"}})\n',
        },
        {"record": f"apiscope_request:availability{days}", "expr": avail_all, "labels": {"verb": "all"}},
        {"record": f"apiscope_request:availability{days}", "expr": avail_read, "labels": {"verb": "read"}},
        {"record": f"apiscope_request:availability{days}", "expr": avail_write, "labels": {"verb": "write"}},
    ] + [
        {
            "record": f"code_resource:{REQUESTS}:rate5m",
            "expr": f"sum by ({CLUSTER}, code, resource) (rate({REQUESTS}{sel(JOB, selector)}[5m]))\n",
            "labels": {"verb": verb},
        }
        for verb, selector in (("read", READ), ("write", WRITE))
    ]
    alerts = [
        {
            "alert": "KubeAPIErrorBudgetBurn",
            "expr": f"sum by ({CLUSTER}) (apiscope_request:burnrate{long}) > ({factor} * {budget})\n"
                    f"and on ({CLUSTER})\n"
                    f"sum by ({CLUSTER}) (apiscope_request:burnrate{short}) > ({factor} * {budget})\n",
            "for": for_,
            # `source` keeps it apart from the mixin's alert of the same name where both run
            # (Alertmanager would otherwise merge the two, their other labels being equal).
            "labels": {"severity": severity, "long": long, "short": short, "source": "apiscope"},
            "annotations": {
                "summary": "The API server is burning its error budget (measured by apiscope).",
                "description": (
                    f"Over the last {long} (and still over the last {short}) the API server failed or was too "
                    f"slow for {{{{ $value | humanizePercentage }}}} of its requests, {factor} times the "
                    f"{budget:.0%} a {SLO_TARGET:.0%} {SLO_DAYS}-day SLO allows: at this rate the budget is "
                    f"gone in {SLO_DAYS / factor:.1f} days. Too slow means a read over 1 s (one object), "
                    f"5 s (a namespace) or 30 s (the cluster), a write over 1 s; streaming subresources "
                    f"(proxy, attach, log, exec, portforward) are left out."
                ),
                "runbook": (
                    "Open the apiscope API server dashboard: Read/Write SLI panels show whether errors (5xx "
                    "by resource) or latency (p99 by resource) burn the budget. The Clients dashboard shows "
                    "which client sends the failing or slow requests; a client storm or heavy LISTs usually "
                    "come first. Then look at etcd latency and the apiserver's own logs for the resources named."
                ),
                "runbook_url": f"{DOCS}#kubeapierrorbudgetburn",
            },
        }
        for severity, long, short, factor, for_ in BURN_WINDOWS
    ]
    return [
        {"name": "apiscope-kube-apiserver-burnrate.rules", "rules": burnrate},
        {"name": "apiscope-kube-apiserver-histogram.rules", "rules": histogram},
        {"name": "apiscope-kube-apiserver-availability.rules", "interval": "3m", "rules": availability},
        {"name": "apiscope-kube-apiserver-slos", "rules": alerts},
    ]


def fast_days():
    inc = f"{CLUSTER}_verb_scope_le:{DURATION}_bucket:increase{SLO_DAYS}d"
    parts = [
        f'{inc}{sel(READ, SCOPE_RESOURCE, LE_READ_RESOURCE)}',
        f'{inc}{sel(READ, SCOPE_NAMESPACE, LE_READ_NAMESPACE)}',
        f'{inc}{sel(READ, SCOPE_CLUSTER, LE_READ_CLUSTER)}',
    ]
    return f"sum by ({CLUSTER}) (\n      " + "\n      or\n      ".join(parts) + "\n    )"


# ---------------------------------------------------------------------------------------------
# What the mixin cannot say without a client dimension, and apiscope's own health
# ---------------------------------------------------------------------------------------------

# Starting points; an operator tunes them to the cluster's normal traffic.
STORM_RATE = 50  # requests/s from one client
STORM_SHARE = 0.5  # of all requests
CLIENT_BURN_FACTOR = 14.4  # the fast-burn factor of the mixin
CLIENT_MIN_RATE = 0.1  # requests/s below which a ratio says little
THROTTLED_RATE = 0.1  # 429s/s of one client
WATCH_CHURN_RATE = 0.5  # ended watches/s of one client on one resource

# (counter, stage) of every loss the capture counts.
CAPTURE_LOSSES = [
    ("apiscope_capture_ringbuf_full_drops_total", "ring buffer full"),
    ("apiscope_capture_payload_read_failures_total", "payload unreadable"),
    ("apiscope_capture_read_arguments_unreadable_total", "read arguments unreadable"),
    ("apiscope_capture_read_records_unreadable_total", "TLS records unreadable"),
    ("apiscope_capture_malformed_events_total", "malformed events"),
    ("apiscope_capture_queue_full_drops_total", "queue full"),
    ("apiscope_capture_header_blocks_failed_total", "header blocks lost"),
]


def ratio(numerator, denominator, by, window):
    return (f"sum by ({by}) (rate({numerator}[{window}]))\n"
            f"/\nsum by ({by}) (rate({denominator}[{window}]))")


def slow_ratio(window, by):
    """Share of requests over their threshold (reads by scope, writes 1 s), per `by`."""
    fast = [
        f"rate({DURATION}_bucket{sel(JOB, READ, NON_STREAMING, SCOPE_RESOURCE, LE_READ_RESOURCE)}[{window}])",
        f"rate({DURATION}_bucket{sel(JOB, READ, NON_STREAMING, SCOPE_NAMESPACE, LE_READ_NAMESPACE)}[{window}])",
        f"rate({DURATION}_bucket{sel(JOB, READ, NON_STREAMING, SCOPE_CLUSTER, LE_READ_CLUSTER)}[{window}])",
        f"rate({DURATION}_bucket{sel(JOB, WRITE, NON_STREAMING, LE_WRITE)}[{window}])",
    ]
    total = f"sum by ({by}) (rate({DURATION}_count{sel(JOB, SLI_VERBS, NON_STREAMING)}[{window}]))"
    return (f"1 - (\n  (sum by ({by}) (\n    " + "\n    or\n    ".join(fast) + "\n  ) or 0 * " + total
            + ")\n  /\n  " + total + "\n)\n")


def client_rules():
    by_client = f"{CLUSTER}, client"
    by_client_verb = f"{CLUSTER}, client, verb"
    records = [
        {
            "record": f"{CLUSTER}_client_verb:apiscope_request_errors:ratio_rate{w}",
            "expr": f"(sum by ({by_client_verb}) (rate({REQUESTS}{sel(JOB, CODE_5XX)}[{w}]))\n"
                    f"  or 0 * sum by ({by_client_verb}) (rate({REQUESTS}{sel(JOB)}[{w}])))\n"
                    f"/\nsum by ({by_client_verb}) (rate({REQUESTS}{sel(JOB)}[{w}]))\n",
        }
        for w in ("5m", "1h")
    ] + [
        {"record": f"{CLUSTER}_verb:apiscope_request_slow:ratio_rate{w}", "expr": slow_ratio(w, f"{CLUSTER}, verb")}
        for w in ("5m", "1h")
    ]
    budget = round(1 - SLO_TARGET, 5)
    alerts = [
        {
            "alert": "ApiscopeClientRequestStorm",
            "expr": f"sum by ({by_client}) (rate({REQUESTS}{sel(JOB)}[5m])) > {STORM_RATE}\n"
                    f"and\n"
                    f"sum by ({by_client}) (rate({REQUESTS}{sel(JOB)}[5m]))\n"
                    f"  / on ({CLUSTER}) group_left\n"
                    f"sum by ({CLUSTER}) (rate({REQUESTS}{sel(JOB)}[5m])) > {STORM_SHARE}\n",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Client {{ $labels.client }} floods the API server.",
                "description": (
                    f"{{{{ $labels.client }}}} has sent {{{{ $value | humanize }}}} requests/s for 10 minutes, "
                    f"over {STORM_RATE}/s and more than {STORM_SHARE:.0%} of all the API server's requests."
                ),
                "runbook": (
                    "The Clients dashboard shows this client's requests by verb and resource. A controller in a "
                    "hot loop (a LIST or GET it repeats, a write that conflicts) or a script polling instead of "
                    "watching is the usual cause: find its pods by the User-Agent's component name, read their "
                    "logs, and scale it down or give it its own APF flow schema with a small priority level."
                ),
                "runbook_url": f"{DOCS}#apiscopeclientrequeststorm",
            },
        },
        {
            "alert": "ApiscopeClientErrorBudgetBurn",
            "expr": f"{CLUSTER}_client_verb:apiscope_request_errors:ratio_rate1h > ({CLIENT_BURN_FACTOR} * {budget})\n"
                    f"and\n"
                    f"{CLUSTER}_client_verb:apiscope_request_errors:ratio_rate5m > ({CLIENT_BURN_FACTOR} * {budget})\n"
                    f"and\n"
                    f"sum by ({by_client_verb}) (rate({REQUESTS}{sel(JOB)}[5m])) > {CLIENT_MIN_RATE}\n",
            "for": "2m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.verb }} requests of {{ $labels.client }} fail with 5xx.",
                "description": (
                    "{{ $value | humanizePercentage }} of the {{ $labels.verb }} requests "
                    "{{ $labels.client }} sent in the last hour (and in the last 5 minutes) got a 5xx, "
                    f"{CLIENT_BURN_FACTOR} times a {SLO_TARGET:.0%} SLO's budget."
                ),
                "runbook": (
                    "The mixin's budget burn sums all clients, so one client's failures can hide in it. On the "
                    "Clients dashboard, look at this client's errors by resource; the spans of its failed "
                    "requests (status Error, k8s.apiserver.status.reason) say what the apiserver answered. "
                    "Webhooks and aggregated APIs that only this client's requests reach are common causes."
                ),
                "runbook_url": f"{DOCS}#apiscopeclienterrorbudgetburn",
            },
        },
        {
            "alert": "ApiscopeVerbLatencyBudgetBurn",
            "expr": f"{CLUSTER}_verb:apiscope_request_slow:ratio_rate1h > ({CLIENT_BURN_FACTOR} * {budget})\n"
                    f"and\n"
                    f"{CLUSTER}_verb:apiscope_request_slow:ratio_rate5m > ({CLIENT_BURN_FACTOR} * {budget})\n"
                    f"and\n"
                    f"sum by ({CLUSTER}, verb) (rate({DURATION}_count{sel(JOB, NON_STREAMING)}[5m])) > {CLIENT_MIN_RATE}\n",
            "for": "2m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.verb }} requests are too slow.",
                "description": (
                    "{{ $value | humanizePercentage }} of {{ $labels.verb }} requests in the last hour (and "
                    "in the last 5 minutes) took longer than the SLO allows (reads: 1 s for one object, 5 s "
                    f"for a namespace, 30 s for the cluster; writes: 1 s), {CLIENT_BURN_FACTOR} times a "
                    f"{SLO_TARGET:.0%} SLO's budget."
                ),
                "runbook": (
                    "The API server dashboard's latency panels show which resources are slow for this verb; "
                    "slow LISTs usually come from clients listing without a resourceVersion (served by etcd, "
                    "not the watch cache) — see heavy LISTs by client on the Clients dashboard. Slow writes "
                    "point at etcd or admission webhooks."
                ),
                "runbook_url": f"{DOCS}#apiscopeverblatencybudgetburn",
            },
        },
        {
            "alert": "ApiscopeClientThrottled",
            "expr": f"sum by ({CLUSTER}, client, flow_schema_uid, priority_level_uid) "
                    f"(rate(apiscope_request_throttled_total{sel(JOB)}[5m])) > {THROTTLED_RATE}\n",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Client {{ $labels.client }} is throttled (429).",
                "description": (
                    "{{ $labels.client }} has received {{ $value | humanize }} 429 responses/s for 10 minutes "
                    "(flow schema {{ $labels.flow_schema_uid }}, priority level {{ $labels.priority_level_uid }})."
                ),
                "runbook": (
                    "The Throttling dashboard shows which priority level rejects and who else shares it. If "
                    "the client is the storm, fix the client; if it is a victim of another client in the same "
                    "priority level, give one of them its own FlowSchema. `kubectl get flowschemas,"
                    "prioritylevelconfigurations -o wide` maps the UIDs to names."
                ),
                "runbook_url": f"{DOCS}#apiscopeclientthrottled",
            },
        },
        {
            "alert": "ApiscopeWatchChurn",
            "expr": f"sum by ({CLUSTER}, client, resource) "
                    f"(rate({REQUESTS}{sel(JOB, WATCH)}[10m])) > {WATCH_CHURN_RATE}\n",
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Client {{ $labels.client }} re-opens watches on {{ $labels.resource }}.",
                "description": (
                    "{{ $labels.client }} ends {{ $value | humanize }} watches/s on {{ $labels.resource }}; "
                    "a healthy informer keeps one open for minutes."
                ),
                "runbook": (
                    "Short watches mean the client re-lists and re-watches: a resourceVersion too old (410 "
                    "Gone), a timeout on a proxy between client and apiserver, or a crash loop. The Watches "
                    "dashboard shows watch durations by resource; the watch spans carry the event counts and "
                    "the status the apiserver ended them with."
                ),
                "runbook_url": f"{DOCS}#apiscopewatchchurn",
            },
        },
    ]
    return [{"name": "apiscope-clients.rules", "rules": records},
            {"name": "apiscope-clients", "rules": alerts}]


def health_rules():
    by = f"{CLUSTER}, job, instance"
    alerts = [
        {
            "alert": "ApiscopeDown",
            "expr": f"up{sel(JOB)} == 0\n",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "apiscope on {{ $labels.instance }} is not scraped.",
                "description": "Prometheus has not scraped apiscope's /metrics on {{ $labels.instance }} for 5 minutes.",
                "runbook": (
                    "Check the exporter's pod or service on that node (logs, restarts); it exits when it cannot "
                    "load its probes. Without it the dashboards and SLO alerts of this node's API server are blind."
                ),
                "runbook_url": f"{DOCS}#apiscopedown",
            },
        },
        {
            "alert": "ApiscopeNotAttached",
            "expr": f"apiscope_capture_attached_processes{sel(JOB)} == 0\n",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "apiscope on {{ $labels.instance }} traces no API server.",
                "description": "apiscope runs on {{ $labels.instance }} but has had its probes attached to no process for 5 minutes.",
                "runbook": (
                    "apiscope's log says why: no kube-apiserver process found (wrong --pid or process name, "
                    "not hostPID), or attaching failed (apiscope_capture_attach_failures_total; capabilities, a "
                    "Go release newer than the offsets table). `apiscope doctor` lists what it finds."
                ),
                "runbook_url": f"{DOCS}#apiscopenotattached",
            },
        },
    ] + [
        # One rule per stage (the same alert, told apart by `stage`): rate() drops the metric
        # name, so one selector over all the loss counters would collide on identical labels.
        {
            "alert": "ApiscopeCaptureLoss",
            "expr": f"sum by ({by}) (rate({metric}{sel(JOB)}[5m])) > 0\n",
            "for": "10m",
            "labels": {"severity": "warning", "stage": stage},
            "annotations": {
                "summary": "apiscope on {{ $labels.instance }} loses captured data ({{ $labels.stage }}).",
                "description": (
                    "apiscope has lost {{ $value | humanize }} events/s for 10 minutes at stage "
                    "{{ $labels.stage }}: some requests are missing or incomplete in its metrics and traces."
                ),
                "runbook": (
                    "The apiscope health dashboard shows which stage loses. A full ring buffer or queue means "
                    "the exporter cannot keep up: give it more CPU, raise the ring buffer size, or capture "
                    "less body data with the capture policy. Unreadable payloads or arguments point at a Go "
                    "release the offsets do not match."
                ),
                "runbook_url": f"{DOCS}#apiscopecaptureloss",
            },
        }
        for metric, stage in CAPTURE_LOSSES
    ] + [
        {
            # A desync alone is expected: every connection opened before apiscope attached starts
            # desynced, and the header hooks supply its headers. Headers are lost only where a
            # traced process has no hooks.
            "alert": "ApiscopeHeaderDesyncs",
            "expr": f"sum by ({by}) (rate(apiscope_exchange_header_desyncs_total{sel(JOB)}[10m])) > 0\n"
                    f"and on ({by}) sum by ({by}) (apiscope_capture_header_hooks_unavailable_total{sel(JOB)}) > 0\n",
            "for": "10m",
            "labels": {"severity": "info"},
            "annotations": {
                "summary": "apiscope on {{ $labels.instance }} loses HTTP/2 headers.",
                "description": (
                    "Connection directions lost their HPACK state {{ $value | humanize }} times/s while a traced "
                    "process has no header hooks: requests on those connections miss headers (verb, path, user agent)."
                ),
                "runbook": (
                    "`apiscope doctor` says why the hooks are unavailable (a Go release newer than the offsets "
                    "table, no x/net HTTP/2 server). Until then, connections opened before apiscope attached, "
                    "and any after a capture gap (see ApiscopeCaptureLoss), lose their headers."
                ),
                "runbook_url": f"{DOCS}#apiscopeheaderdesyncs",
            },
        },
        {
            # apiscope creates a signal's failed and dropped series together, so `+` finds both.
            "alert": "ApiscopeOtlpExportFailing",
            "expr": f"sum by ({by}, signal) (rate(apiscope_otlp_failed_total{sel(JOB)}[5m]) "
                    f"+ rate(apiscope_otlp_dropped_total{sel(JOB)}[5m])) > 0\n",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "apiscope on {{ $labels.instance }} loses {{ $labels.signal }} on the way to the collector.",
                "description": (
                    "{{ $value | humanize }} {{ $labels.signal }} items/s have failed to export or were dropped "
                    "by a full queue for 5 minutes."
                ),
                "runbook": (
                    "Failed exports: the collector is down, unreachable or rejects (apiscope's log has the "
                    "error). Drops with no failures: the collector is slower than the request rate; raise "
                    "--otlp-max-queue-size or scale the collector."
                ),
                "runbook_url": f"{DOCS}#apiscopeotlpexportfailing",
            },
        },
        {
            "alert": "ApiscopeOtlpMetricExportFailing",
            "expr": f"sum by ({by}) (rate(apiscope_otlp_metric_export_failures_total{sel(JOB)}[5m])) > 0\n",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "apiscope on {{ $labels.instance }} cannot export its metrics over OTLP.",
                "description": "apiscope's OTLP metric exports have failed for 10 minutes; /metrics still serves them.",
                "runbook": (
                    "Same causes as ApiscopeOtlpExportFailing. Metrics are cumulative, so nothing is lost once "
                    "an export succeeds again; only the collector's view is stale meanwhile."
                ),
                "runbook_url": f"{DOCS}#apiscopeotlpmetricexportfailing",
            },
        },
        {
            "alert": "ApiscopeRequestLabelOverflow",
            "expr": f"sum by ({by}, label) (increase(apiscope_request_label_overflow_total{sel(JOB)}[1h])) > 0\n",
            "labels": {"severity": "info"},
            "annotations": {
                "summary": "apiscope folds {{ $labels.label }} values into \"other\".",
                "description": (
                    "{{ $value | humanize }} requests in the last hour had a {{ $labels.label }} beyond the "
                    "label's bound and are counted as \"other\"."
                ),
                "runbook": (
                    "Expected for URL-derived labels when clients send many distinct bad paths (404s). For "
                    "client, many User-Agents: the dashboards then show the busiest ones and \"other\"."
                ),
                "runbook_url": f"{DOCS}#apiscoperequestlabeloverflow",
            },
        },
    ]
    return [{"name": "apiscope-health", "rules": alerts}]


# ---------------------------------------------------------------------------------------------
# Grafana dashboards
# ---------------------------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every panel query selects one apiscope job and its instances (the nodes it runs on).
S = 'job="$job",instance=~"$instance"'
RI = "$__rate_interval"
CLIENT_SEL = 'client=~"$client"'
NOT_LONG_RUNNING = 'verb!~"WATCH|CONNECT"'
HAS_RESOURCE = 'resource!=""'
ERROR_CODES = 'code=~"[45].."'
LIST = 'verb="LIST"'
LE_INF = 'le="+Inf"'


def target(expr, legend="", instant=False):
    t = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    return t


# Span attributes (docs/telemetry.md) that carry what a metric label says, for trace links.
SPAN_ATTRIBUTE = {"client": "k8s.apiserver.component", "resource": "k8s.apiserver.resource",
                  "verb": "k8s.apiserver.metric_verb", "code": "http.response.status_code"}


def trace_links(*labels):
    """A data link from a series to its requests' spans in Jaeger's search (the `jaeger`
    variable), by the series' labels, over the dashboard's time range."""
    tags = ",".join(f'"{SPAN_ATTRIBUTE[label]}":"${{__field.labels.{label}}}"' for label in labels)
    encoded = "%7B" + tags.replace('"', "%22").replace(":", "%3A").replace(",", "%2C") + "%7D"
    # The encoding above also hit the ${...} placeholders' own characters: restore them.
    for label in labels:
        encoded = encoded.replace(f"${{__field.labels.{label}}}".replace(":", "%3A"),
                                  f"${{__field.labels.{label}:percentencode}}")
    return [{"title": "Requests in Jaeger (" + ", ".join(labels) + ")", "targetBlank": True,
             "url": "${jaeger}/search?service=kube-apiserver&start=${__from}000&end=${__to}000"
                    "&limit=100&tags=" + encoded}]


def timeseries(title, description, targets, unit="short", width=12, links=()):
    return {"type": "timeseries", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "min": 0, "links": trace_links(*links) if links else []},
                            "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "_width": width}


def stat(title, description, targets, unit="short", width=6):
    return {"type": "stat", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area"},
            "_width": width}


def table(title, description, targets, width=12):
    return {"type": "table", "title": title, "description": description, "targets": targets,
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
            "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            "_width": width}


def query_variable(name, label, query, multi=True):
    v = {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
         "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "sort": 1,
         "multi": multi, "includeAll": multi, "hide": 0, "current": {}, "options": [], "regex": ""}
    if multi:
        v["allValue"] = ".*"
        v["current"] = {"text": "All", "value": "$__all"}
    return v


def variables(*extra):
    base = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": [], "regex": ""},
        query_variable("job", "Job", "label_values(apiscope_capture_attached_processes, job)", multi=False),
        query_variable("instance", "Instance",
                       'label_values(apiscope_capture_attached_processes{job="$job"}, instance)'),
        {"name": "jaeger", "label": "Jaeger URL", "type": "textbox", "query": "http://localhost:16686",
         "current": {"text": "http://localhost:16686", "value": "http://localhost:16686"}, "hide": 0,
         "options": [], "description": "Where trace links open a search of the series' requests"},
    ]
    return base + list(extra)


CLIENT_VARIABLE = query_variable("client", "Client", 'label_values(apiscope_request_total{job="$job"}, client)')


def dashboard(uid, title, description, rows, extra_variables=()):
    panels, y, next_id = [], 0, 1
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "collapsed": False, "id": next_id,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x, line_height = 0, 0
        for panel in row_panels:
            panel = dict(panel)
            width = panel.pop("_width")
            height = 4 if panel["type"] == "stat" else 8
            if x + width > 24:
                x, y, line_height = 0, y + line_height, 0
            line_height = max(line_height, height)
            panel.update({"id": next_id, "datasource": DATASOURCE,
                          "gridPos": {"h": height, "w": width, "x": x, "y": y}})
            for ref, t in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", panel["targets"]):
                t["refId"] = ref
            next_id += 1
            panels.append(panel)
            x += width
        y += line_height
    return {
        "uid": uid, "title": title, "description": description, "tags": ["apiscope", "kube-apiserver"],
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "timezone": "",
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "annotations": {"list": []}, "links": [],
        "templating": {"list": variables(*extra_variables)},
        "panels": panels,
    }


def req(*extra):
    return f"apiscope_request_total{sel(S, *extra)}"


def dur_bucket(*extra):
    return f"{DURATION}_bucket{sel(S, *extra)}"


def share_5xx(by, *extra):
    """5xx share per `by`, 0 (not absent) where there were requests but no 5xx."""
    return (f"(sum by ({by}) (rate({req(CODE_5XX, *extra)}[{RI}])) or 0 * sum by ({by}) (rate({req(*extra)}[{RI}])))\n"
            f"/\nsum by ({by}) (rate({req(*extra)}[{RI}]))")


def sli_row(name, verbs, selector):
    return (f"{name} SLI ({verbs})", [
        timeseries(f"{name} requests by code", f"{name} requests per second by HTTP status code.",
                   [target(f"sum by (code) (rate({req(selector)}[{RI}]))", "{{code}}")], "reqps", 8),
        timeseries(f"{name} 5xx share by resource", f"Share of {name.lower()} requests answered 5xx, per resource.",
                   [target(share_5xx("resource", selector), "{{resource}}")], "percentunit", 8, ("resource",)),
        timeseries(f"{name} p99 duration by resource",
                   f"99th percentile of {name.lower()} request duration (first request byte to last response byte), "
                   "streaming subresources left out.",
                   [target(f"histogram_quantile(0.99, sum by (resource, le) (rate({dur_bucket(selector, NON_STREAMING)}[{RI}])))",
                           "{{resource}}")], "s", 8, ("resource",)),
    ])


def overview():
    avail = "apiscope_request:availability30d"
    quantiles = [target(f"histogram_quantile({q}, sum by (verb, le) (rate({dur_bucket(NOT_LONG_RUNNING)}[{RI}])))",
                        f"p{int(q * 100)} {{{{verb}}}}") for q in (0.5, 0.95, 0.99)]
    rows = [
        ("Availability (kubernetes-mixin SLO, 30 days)", [
            stat("Availability (30d)", "Requests neither failed (5xx) nor too slow, over 30 days (recording rules).",
                 [target(f'{avail}{{verb="all"}}')], "percentunit"),
            stat("Error budget left (30d)", f"Share of the {1 - SLO_TARGET:.0%} error budget not used yet.",
                 [target(f'({avail}{{verb="all"}} - {SLO_TARGET}) / (1 - {SLO_TARGET})')], "percentunit"),
            stat("Read availability (30d)", "GET and LIST requests neither failed nor too slow.",
                 [target(f'{avail}{{verb="read"}}')], "percentunit"),
            stat("Write availability (30d)", "POST, PUT, PATCH and DELETE requests neither failed nor too slow.",
                 [target(f'{avail}{{verb="write"}}')], "percentunit"),
            timeseries("Error budget burn rate", "Budget burn rates of the multi-window alerts (1 = exactly on budget).",
                       [target(f'apiscope_request:burnrate{w}', f"{{{{verb}}}} {w}") for w in ("5m", "1h", "6h")],
                       "short", 24),
        ]),
        sli_row("Read", "GET, LIST", READ),
        sli_row("Write", "POST, PUT, PATCH, DELETE", WRITE),
        ("Traffic", [
            timeseries("Requests by verb", "Requests per second by verb.",
                       [target(f"sum by (verb) (rate({req(CLIENT_SEL)}[{RI}]))", "{{verb}}")], "reqps"),
            timeseries("Requests by code class", "Requests per second by status class.",
                       [target(f"sum(rate({req(CLIENT_SEL, code_is(c[0] + '..'))}[{RI}]))", c)
                        for c in ("2xx", "3xx", "4xx", "5xx")], "reqps"),
            timeseries("Requests by resource (top 10)", "The ten busiest resources.",
                       [target(f"topk(10, sum by (group, resource) (rate({req(CLIENT_SEL, HAS_RESOURCE)}[{RI}])))",
                               "{{resource}}.{{group}}")], "reqps"),
            timeseries("Requests by client (top 10)",
                       "The ten busiest clients (the User-Agent's component; the apiserver's own metrics have no client label).",
                       [target(f"topk(10, sum by (client) (rate({req(CLIENT_SEL)}[{RI}])))", "{{client}}")], "reqps", links=("client",)),
            timeseries("Errors by verb and code", "4xx and 5xx responses per second.",
                       [target(f"sum by (verb, code) (rate({req(CLIENT_SEL, ERROR_CODES)}[{RI}]))",
                               "{{verb}} {{code}}")], "reqps", links=("verb", "code")),
            timeseries("Non-resource requests by path", "/healthz, /openapi, discovery... (not in apiscope_request_total's resources).",
                       [target(f"sum by (path) (rate(apiscope_nonresource_request_total{sel(S)}[{RI}]))", "{{path}}")], "reqps"),
        ]),
        ("Latency", [
            timeseries("Duration p50, p95, p99 by verb", "Request duration quantiles per verb; WATCH and CONNECT left out.",
                       quantiles, "s"),
            timeseries("p99 duration by verb and resource (top 10)", "The ten slowest verb and resource pairs.",
                       [target(f"topk(10, histogram_quantile(0.99, sum by (verb, resource, le) (rate({dur_bucket(NOT_LONG_RUNNING)}[{RI}]))))",
                               "{{verb}} {{resource}}")], "s", links=("verb", "resource")),
        ]),
        ("Concurrency", [
            timeseries("In-flight requests", "Started, not yet answered, long-running ones excluded (as the apiserver's max-in-flight counts them).",
                       [target(f"sum by (request_kind) (apiscope_inflight_requests{sel(S)})", "{{request_kind}}")]),
            timeseries("Long-running requests by verb and resource", "Open watches, exec, attach, log, port-forward and proxy requests.",
                       [target(f"sum by (verb, resource) (apiscope_longrunning_requests{sel(S)})", "{{verb}} {{resource}}")]),
        ]),
    ]
    return dashboard("apiscope-apiserver", "apiscope / API server",
                     "kube-apiserver requests as apiscope sees them: the kubernetes-mixin API server panels plus the client dimension.",
                     rows, [CLIENT_VARIABLE])


def clients():
    c = CLIENT_SEL
    rows = [
        ("Who sends requests", [
            table("Top clients by requests", "Requests per client over the dashboard's time range.",
                  [target(f"topk(20, sum by (client) (increase({req(c)}[$__range])))", instant=True)]),
            timeseries("Requests by client", "Requests per second, the ten busiest clients.",
                       [target(f"topk(10, sum by (client) (rate({req(c)}[{RI}])))", "{{client}}")], "reqps", links=("client",)),
            timeseries("Requests by client and verb", "The ten busiest client and verb pairs.",
                       [target(f"topk(10, sum by (client, verb) (rate({req(c)}[{RI}])))", "{{client}} {{verb}}")], "reqps",
                       links=("client", "verb")),
            timeseries("Requests by client and resource", "The ten busiest client and resource pairs.",
                       [target(f"topk(10, sum by (client, resource) (rate({req(c, HAS_RESOURCE)}[{RI}])))",
                               "{{client}} {{resource}}")], "reqps", links=("client", "resource")),
        ]),
        ("Errors", [
            timeseries("Errors by client and code", "4xx and 5xx responses per second per client.",
                       [target(f"sum by (client, code) (rate({req(c, ERROR_CODES)}[{RI}]))", "{{client}} {{code}}")], "reqps",
                       links=("client", "code")),
            timeseries("5xx share by client", "Share of each client's requests answered 5xx.",
                       [target(share_5xx("client", c), "{{client}}")], "percentunit", links=("client",)),
        ]),
        ("Heavy requests", [
            table("Heavy LISTs by client and resource", "LIST requests per client, resource and scope over the time range; "
                  "cluster-scoped LISTs of large resources are what loads the apiserver and etcd.",
                  [target(f"topk(20, sum by (client, resource, scope) (increase({req(c, LIST)}[$__range])))", instant=True)]),
            timeseries("LISTs by client", "LIST requests per second per client.",
                       [target(f"topk(10, sum by (client, scope) (rate({req(c, LIST)}[{RI}])))", "{{client}} {{scope}}")], "reqps"),
            timeseries("Slowest verb and resource (p99)", "Duration has no client label (bounded cardinality): the slowest "
                       "verb and resource pairs here, the requests themselves in the traces.",
                       [target(f"topk(10, histogram_quantile(0.99, sum by (verb, resource, le) (rate({dur_bucket(NOT_LONG_RUNNING)}[{RI}]))))",
                               "{{verb}} {{resource}}")], "s", links=("verb", "resource")),
            timeseries("Watches ended by client", "Watches that ended per second; an informer keeps one open for minutes.",
                       [target(f"sum by (client, resource) (rate({req(c, WATCH)}[{RI}]))", "{{client}} {{resource}}")], "reqps"),
            timeseries("Throttled (429) by client", "Requests rejected by max-in-flight or APF.",
                       [target(f"sum by (client) (rate(apiscope_request_throttled_total{sel(S, c)}[{RI}]))", "{{client}}")], "reqps"),
            timeseries("Non-resource requests by client", "/healthz, /openapi, discovery per client.",
                       [target(f"sum by (client, path) (rate(apiscope_nonresource_request_total{sel(S, c)}[{RI}]))",
                               "{{client}} {{path}}")], "reqps"),
        ]),
    ]
    return dashboard("apiscope-clients", "apiscope / Clients",
                     "Which client (User-Agent component) sends what, fails, LISTs and re-watches.", rows, [CLIENT_VARIABLE])


def watches():
    rows = [("Watches", [
        timeseries("Open watches by resource", "Watches open now.",
                   [target(f"sum by (group, resource) (apiscope_longrunning_requests{sel(S, WATCH)})", "{{resource}}.{{group}}")]),
        timeseries("Watch events by resource and type", "Events per second sent on watches (counted when a watch ends).",
                   [target(f"sum by (resource, type) (rate(apiscope_watch_events_total{sel(S)}[{RI}]))", "{{resource}} {{type}}")], "ops"),
        timeseries("Watch bytes by resource", "Watch response body bytes per second (counted when a watch ends).",
                   [target(f"sum by (resource) (rate(apiscope_watch_response_bytes_total{sel(S)}[{RI}]))", "{{resource}}")], "Bps"),
        timeseries("Watches ended by client and resource", "Many short watches: a client re-listing and re-watching.",
                   [target(f"sum by (client, resource) (rate({req(WATCH)}[{RI}]))", "{{client}} {{resource}}")], "reqps"),
        timeseries("Watch duration p50 and p99 by resource", "How long ended watches stayed open.",
                   [target(f"histogram_quantile({q}, sum by (resource, le) (rate({dur_bucket(WATCH)}[{RI}])))", f"p{int(q * 100)} {{{{resource}}}}")
                    for q in (0.5, 0.99)], "s", 24),
    ])]
    return dashboard("apiscope-watches", "apiscope / Watches", "Open watches, the events they carry and how long they last.", rows)


def throttling():
    rows = [("Throttling and API Priority and Fairness", [
        timeseries("429s by priority level and flow schema", "Rejected requests per second (max-in-flight or APF); "
                   "`kubectl get flowschemas,prioritylevelconfigurations -o wide` maps UIDs to names.",
                   [target(f"sum by (priority_level_uid, flow_schema_uid) (rate(apiscope_request_throttled_total{sel(S)}[{RI}]))",
                           "{{priority_level_uid}} {{flow_schema_uid}}")], "reqps"),
        timeseries("429s by client, verb and resource", "Who is throttled.",
                   [target(f"sum by (client, verb, resource) (rate(apiscope_request_throttled_total{sel(S)}[{RI}]))",
                           "{{client}} {{verb}} {{resource}}")], "reqps"),
        timeseries("429 share of all requests", "Throttled requests as a share of all requests.",
                   [target(f'sum(rate({req(code_is("429"))}[{RI}]))\n/\nsum(rate({req()}[{RI}]))')], "percentunit"),
        timeseries("APF-classified requests by priority level and code",
                   "Responses carrying X-Kubernetes-PF-* headers, per priority level and status.",
                   [target(f"sum by (priority_level_uid, code) (rate(apiscope_apf_requests_total{sel(S)}[{RI}]))",
                           "{{priority_level_uid}} {{code}}")], "reqps"),
        timeseries("APF-classified requests by flow schema", "Per flow schema.",
                   [target(f"sum by (flow_schema_uid) (rate(apiscope_apf_requests_total{sel(S)}[{RI}]))", "{{flow_schema_uid}}")], "reqps"),
        timeseries("In-flight requests", "What max-in-flight limits count.",
                   [target(f"sum by (request_kind) (apiscope_inflight_requests{sel(S)})", "{{request_kind}}")]),
    ])]
    return dashboard("apiscope-throttling", "apiscope / Throttling", "429s and API Priority and Fairness.", rows)


def payloads():
    size = "apiscope_response_sizes_bytes"
    rows = [("Response sizes", [
        timeseries("Response size p50 and p99 by verb and resource", "Sizes as sent (compressed if gzip); GET, LIST and ?watch=true.",
                   [target(f"histogram_quantile({q}, sum by (verb, resource, le) (rate({size}_bucket{sel(S)}[{RI}])))",
                           f"p{int(q * 100)} {{{{verb}}}} {{{{resource}}}}") for q in (0.5, 0.99)], "bytes", 24),
        timeseries("Response bytes by verb and resource", "Bytes per second sent in responses.",
                   [target(f"topk(10, sum by (verb, resource) (rate({size}_sum{sel(S)}[{RI}])))", "{{verb}} {{resource}}")], "Bps"),
        timeseries("Mean LIST response size by resource", "Bytes per LIST response.",
                   [target(f"sum by (resource) (rate({size}_sum{sel(S, LIST)}[{RI}]))\n/\n"
                           f"sum by (resource) (rate({size}_count{sel(S, LIST)}[{RI}]))", "{{resource}}")], "bytes"),
        timeseries("Responses over 1 MB by resource", "Responses per second larger than 1 MB.",
                   [target(f'sum by (resource) (rate({size}_bucket{sel(S, LE_INF)}[{RI}]))\n-\n'
                           f'sum by (resource) (rate({size}_bucket{sel(S, RESPONSE_1MB)}[{RI}]))', "{{resource}}")], "reqps"),
        timeseries("Watch bytes by resource", "Watch response body bytes per second.",
                   [target(f"sum by (resource) (rate(apiscope_watch_response_bytes_total{sel(S)}[{RI}]))", "{{resource}}")], "Bps"),
    ])]
    return dashboard("apiscope-payloads", "apiscope / Payload sizes", "How much the apiserver sends, by verb and resource.", rows)


def health():
    def rate_of(metric, legend):
        return target(f"sum by (instance) (rate({metric}{sel(S)}[{RI}]))", f"{legend} {{{{instance}}}}")

    losses = [rate_of(metric, stage) for metric, stage in CAPTURE_LOSSES]
    rows = [
        ("Capture", [
            stat("Attached processes", "Processes with probes attached (0: apiscope traces nothing).",
                 [target(f"sum by (instance) (apiscope_capture_attached_processes{sel(S)})", "{{instance}}")], "short", 8),
            stat("Open TLS connections", "TLS connections tracked now.",
                 [target(f"sum by (instance) (apiscope_capture_open_connections{sel(S)})", "{{instance}}")], "short", 8),
            stat("Requests decoded/s", "API requests decoded per second.",
                 [target(f"sum by (instance) (rate(apiscope_decode_api_requests_total{sel(S)}[{RI}]))", "{{instance}}")], "reqps", 8),
            timeseries("Events captured", "Ring-buffer events per second and plaintext bytes copied per second.",
                       [rate_of("apiscope_capture_events_total", "events/s"),
                        rate_of("apiscope_capture_captured_bytes_total", "bytes/s")]),
            timeseries("Events lost or dropped, by stage", "Every loss is counted: ring buffer full, unreadable payload "
                       "or arguments, malformed events, full queues, header blocks lost in the kernel.", losses, "ops"),
            timeseries("Bytes not captured or not kept", "Stream bytes seen but not copied, gaps passed on, body bytes over --max-body-bytes.",
                       [rate_of("apiscope_capture_not_captured_bytes_total", "not captured"),
                        rate_of("apiscope_reassembly_gap_bytes_total", "gaps"),
                        rate_of("apiscope_exchange_body_over_limit_bytes_total", "body over limit")], "Bps"),
            timeseries("Probe hits per request", "Uprobe hits per decoded request, per probe: each hit is a trap in an apiserver thread.",
                       [target(f"sum by (instance, probe) (rate(apiscope_capture_probe_hits_total{sel(S)}[{RI}]))\n"
                               f"/ on (instance) group_left\nsum by (instance) (rate(apiscope_decode_api_requests_total{sel(S)}[{RI}]))",
                               "{{probe}} {{instance}}")]),
            timeseries("Attach failures", "Failed attempts to attach probes.",
                       [rate_of("apiscope_capture_attach_failures_total", "failures/s")], "ops"),
            timeseries("Time in the probes per request",
                       "Time inside each probe's eBPF program per decoded request, as the kernel accounts it: counted only while "
                       "BPF run-time statistics are on (apiscope's --probe-run-time, or sysctl kernel.bpf_stats_enabled=1), 0 otherwise. "
                       "The trap around each hit is not included (see Probe hits per request).",
                       [target(f"sum by (instance, probe) (rate(apiscope_capture_probe_run_seconds_total{sel(S)}[{RI}]))\n"
                               f"/ on (instance) group_left\nsum by (instance) (rate(apiscope_decode_api_requests_total{sel(S)}[{RI}]))",
                               "{{probe}} {{instance}}")], "s"),
        ]),
        ("Decode", [
            timeseries("Desynced connections", "Connection directions that lost their HPACK state; header fields and blocks the hooks lost.",
                       [rate_of("apiscope_exchange_header_desyncs_total", "desyncs"),
                        rate_of("apiscope_capture_header_fields_dropped_total", "header fields dropped"),
                        rate_of("apiscope_capture_header_blocks_failed_total", "header blocks failed")], "ops"),
            timeseries("Incomplete requests and evictions", "Requests without a complete response; streams and connections forgotten early.",
                       [rate_of("apiscope_decode_incomplete_requests_total", "incomplete"),
                        rate_of("apiscope_exchange_streams_evicted_total", "streams evicted"),
                        rate_of("apiscope_capture_connections_evicted_total", "connections evicted (table full)"),
                        rate_of("apiscope_reassembly_evicted_excess_connections_total", "connections evicted (max decoded)"),
                        rate_of("apiscope_reassembly_evicted_memory_connections_total", "connections evicted (memory)")], "ops"),
            timeseries("Decoder memory", "Bytes held by the decode stages, connections being decoded.",
                       [target(f"sum by (instance) (apiscope_reassembly_buffered_bytes{sel(S)})", "bytes {{instance}}"),
                        target(f"sum by (instance) (apiscope_reassembly_connections{sel(S)})", "connections {{instance}}")]),
            timeseries("Label values folded into other", "Requests whose label value was over its bound.",
                       [target(f"sum by (label) (rate(apiscope_request_label_overflow_total{sel(S)}[{RI}]))", "{{label}}")], "ops"),
        ]),
        ("Export", [
            timeseries("OTLP items by signal and outcome", "Spans and log records exported, failed after retries, dropped by a full queue.",
                       [target(f"sum by (signal) (rate(apiscope_otlp_{o}_total{sel(S)}[{RI}]))", f"{{{{signal}}}} {o}")
                        for o in ("exported", "failed", "dropped")], "ops"),
            timeseries("OTLP queue", "Items queued or being exported.",
                       [target(f"sum by (signal) (apiscope_otlp_queued{sel(S)})", "{{signal}}")]),
            timeseries("OTLP metric export failures", "Failed metric exports (the next success carries the totals).",
                       [rate_of("apiscope_otlp_metric_export_failures_total", "failures/s")], "ops"),
            timeseries("Scrape", "Whether Prometheus scrapes apiscope.", [target(f"up{sel(S)}", "{{instance}}")]),
        ]),
    ]
    return dashboard("apiscope-health", "apiscope / Health", "apiscope's own health: capture, loss, decode, export.", rows)


GRAFANA_BUILTINS = {"__rate_interval", "__range", "__from", "__to", "__field"}


def validate(d):
    """What Grafana needs to import and lay out a dashboard, checked on the generated JSON: unique
    panel ids, panels inside the 24-column grid and not overlapping, every query with a refId
    and the ${datasource} data source, every variable it uses defined."""
    problems = []
    defined = {v["name"] for v in d["templating"]["list"]} | GRAFANA_BUILTINS
    ids, cells = set(), {}
    for panel in d["panels"]:
        where = f"{d['uid']}: {panel['title']}"
        if panel["id"] in ids:
            problems.append(f"{where}: duplicate id {panel['id']}")
        ids.add(panel["id"])
        g = panel["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"{where}: outside the grid {g}")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{where}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = panel["title"]
            else:
                continue
            break
        if panel["type"] == "row":
            continue
        texts = [json.dumps(panel.get("fieldConfig", {}))]
        for t in panel["targets"]:
            if not t.get("refId") or not t.get("expr") or t.get("datasource") != DATASOURCE:
                problems.append(f"{where}: a target without refId, expr or ${{datasource}}")
            texts.append(t.get("expr", ""))
        for text in texts:
            for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
                if name not in defined:
                    problems.append(f"{where}: undefined variable ${name}")
    return problems


def dashboard_files():
    dashboards = [overview(), clients(), watches(), throttling(), payloads(), health()]
    problems = [p for d in dashboards for p in validate(d)]
    if len({d["uid"] for d in dashboards}) != len(dashboards):
        problems.append("two dashboards share a uid")
    if problems:
        raise SystemExit("\n".join(problems))
    return {f"{d['uid'].removeprefix('apiscope-')}.json": json.dumps(d, indent=2) + "\n" for d in dashboards}


# ---------------------------------------------------------------------------------------------
# A minimal YAML writer for the rule files (block scalars for expressions)
# ---------------------------------------------------------------------------------------------


def yaml_string(text):
    return json.dumps(text, ensure_ascii=False)


def rule_file(title, groups):
    out = [f"# {title}", "# Generated by dashboards/generate.py: edit that file, then run it.", "groups:"]
    for group in groups:
        out.append(f"  - name: {group['name']}")
        if "interval" in group:
            out.append(f"    interval: {group['interval']}")
        out.append("    rules:")
        for rule in group["rules"]:
            kind = "record" if "record" in rule else "alert"
            out.append(f"      - {kind}: {rule[kind]}")
            out.append("        expr: |")
            out.extend(("          " + line).rstrip() for line in rule["expr"].rstrip("\n").split("\n"))
            if "for" in rule:
                out.append(f"        for: {rule['for']}")
            for key in ("labels", "annotations"):
                if key in rule:
                    out.append(f"        {key}:")
                    out.extend(f"          {k}: {yaml_string(v)}" for k, v in rule[key].items())
    return "\n".join(out) + "\n"


def rule_files():
    return {
        "rules/kube-apiserver-slos.yaml": rule_file(
            "kubernetes-mixin's API server SLO rules and KubeAPIErrorBudgetBurn alerts on apiscope's metrics",
            slo_rules()),
        "rules/apiscope-clients.yaml": rule_file(
            "Alerts the mixin cannot express without apiscope's client label", client_rules()),
        "rules/apiscope-health.yaml": rule_file("apiscope's own health", health_rules()),
    }


# Values for the dashboards' template variables when their queries are checked without Grafana
# (here and in tests/tests/telemetry.rs, which sets the intervals to its workload window).
PANEL_VARIABLES = {"$job": "apiscope", "$instance": ".*", "$client": ".*",
                   "$__rate_interval": "1m", "$__range": "1h"}


def panel_rules():
    """Every panel query as a recording rule, so that `promtool check rules` parses them too."""
    rules = []
    for name, text in dashboard_files().items():
        for panel in json.loads(text)["panels"]:
            for t in panel.get("targets", []):
                expr = t["expr"]
                for variable, value in PANEL_VARIABLES.items():
                    expr = expr.replace(variable, value)
                if "$" in expr:
                    raise SystemExit(f"{name}: {panel['title']}: unknown variable in {expr}")
                uid = name.removesuffix(".json").replace("-", "_")
                rules.append({"record": f"panel:{uid}:{panel['id']}_{t['refId']}", "expr": expr + "\n"})
    return rule_file("Every dashboard panel query (checked by promtool only)", [{"name": "panels", "rules": rules}])


def main():
    if sys.argv[1:2] == ["--panel-rules"]:
        sys.stdout.write(panel_rules())
        return
    files = rule_files()
    files.update(dashboard_files())
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in files.items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python3 dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
