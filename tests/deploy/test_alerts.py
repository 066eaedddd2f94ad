"""deploy/prometheus/alerts.yml: well-formed rules over metrics that GET /metrics really exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from apps.core import metrics

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"

# PromQL words that look like metric names: aggregations, keywords, set operators.
PROMQL_WORDS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "limit_ratio",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords, labels or durations)."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery durations
    expr = _LABEL_LIST.sub(" ", expr)  # label lists of by/without/on/ignoring
    expr = re.sub(r"\boffset\s+-?\d+[a-z]+", " ", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        word = match.group(1)
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function call
        if word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def label_names(expr: str) -> dict[str, set[str]]:
    """Label names each metric is matched on in the expression (``metric{label="..."}``)."""
    out: dict[str, set[str]] = {}
    for metric, matchers in _SELECTOR.findall(_STRING.sub('""', expr)):
        out.setdefault(metric, set()).update(_MATCHER.findall(matchers))
    return out


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip() for group in _LABEL_LIST.findall(expr) for label in group.split(",") if label.strip()
    }


def exported_families(text: str) -> tuple[dict[str, str], set[str]]:
    """``{family: type}`` from the TYPE lines and the names of the samples of a scrape."""
    types: dict[str, str] = {}
    samples: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind.strip()
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return types, samples


def is_exported(name: str, types: dict[str, str], samples: set[str]) -> bool:
    """Whether a query for ``name`` finds series of this exporter (the suffix rules of the text format)."""
    if name in samples:
        return True
    for family, kind in types.items():
        if kind == "counter":
            # prometheus_client names the family with _total; other exporters may not.
            series = {family if family.endswith("_total") else f"{family}_total"}
        elif kind == "histogram":
            series = {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
        elif kind == "summary":
            series = {family, f"{family}_count", f"{family}_sum"}
        else:
            series = {family}
        if name in series:
            return True
    return False


def known_labels() -> dict[str, set[str]]:
    """Label names of Keel's metrics, under every series name a query can use."""
    out: dict[str, set[str]] = {"keel_celery_queue_length": {"queue"}}
    for name, metric in metrics._registered.items():
        labels = set(metric._labelnames)
        kind = metric._type
        if kind == "counter":
            out[f"{name}_total"] = labels
        elif kind == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_count"] = out[f"{name}_sum"] = labels
        else:
            out[name] = labels
    return out


def load_rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


# --- The file ---------------------------------------------------------------


def test_alert_rules_are_well_formed():
    document = yaml.safe_load(ALERTS.read_text())

    assert set(document) == {"groups"}
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = []
    for group in document["groups"]:
        assert set(group) <= {"name", "rules", "interval"}
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert re.fullmatch(r"Keel[A-Z][A-Za-z0-9]+", rule["alert"])
            alerts.append(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            assert re.fullmatch(r"\d+[smhdwy]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"].strip()
            assert rule["annotations"]["description"].strip()
    assert len(alerts) == len(set(alerts))


def test_the_required_alerts_are_there():
    by_name = {rule["alert"]: " ".join(rule["expr"].split()) for rule in load_rules()}

    p95 = by_name["KeelHighLatencyP95"]
    assert "histogram_quantile( 0.95" in p95 or "histogram_quantile(0.95" in p95
    assert "keel_http_request_duration_seconds_bucket" in p95 and p95.endswith("> 0.5")
    errors = by_name["KeelHighServerErrorRatio"]
    assert 'keel_http_requests_total{status_class="5xx"}' in errors and "> 0.001" in errors
    assert "keel_auth_login_failures_total" in by_name["KeelFailedLoginSpike"]
    assert "keel_celery_queue_length" in by_name["KeelCeleryQueueBacklog"]
    push = by_name["KeelPushFailureRatio"]
    assert 'keel_push_deliveries_total{status="failed"}' in push
    assert "sum(rate(keel_push_deliveries_total[15m]))" in push


@pytest.mark.django_db
def test_every_metric_an_alert_uses_is_exported_by_metrics(client):
    client.get("/healthz")  # so that the request metrics have samples, not only TYPE lines
    response = client.get("/metrics")
    assert response.status_code == 200
    types, samples = exported_families(response.content.decode())

    for rule in load_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        for name in names:
            assert is_exported(name, types, samples), f"{rule['alert']}: {name} is not exported by /metrics"


def test_every_label_an_alert_uses_exists_on_its_metric():
    labels = known_labels()

    for rule in load_rules():
        used = metric_names(rule["expr"])
        for metric, matched in label_names(rule["expr"]).items():
            assert matched <= labels[metric], (
                f"{rule['alert']}: {metric} has no label {matched - labels[metric]}"
            )
        available = set().union(*(labels[name] for name in used))
        assert grouping_labels(rule["expr"]) <= available, rule["alert"]


# --- The checker itself (so that the test above can fail) -------------------


def test_metric_names_skips_functions_keywords_labels_and_durations():
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{route=~"/api.*"}[5m] offset 1h)))'
        " > on (route) group_left max without (job) (b_total) and ignoring(x) c unless d or vector(1)"
    )

    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}
    assert label_names(expr) == {"a_bucket": {"route"}}
    assert grouping_labels(expr) == {"le", "route", "job", "x"}


@pytest.mark.parametrize(
    ("name", "exported"),
    [
        ("keel_http_requests_total", True),
        ("keel_http_requests", False),  # a counter is queried with _total
        ("keel_http_request_duration_seconds_bucket", True),
        ("keel_http_request_duration_seconds_count", True),
        ("keel_http_request_duration_seconds", False),  # a histogram has no bare series
        ("keel_push_deliveries_total", True),  # declared: TYPE line even before the first push
        ("keel_celery_queue_length", True),
        ("keel_celery_queue_length_total", False),  # a gauge has no _total
        ("keel_push_failures_total", False),
    ],
)
def test_is_exported_follows_the_suffix_rules(name, exported):
    text = "\n".join(
        [
            "# HELP keel_http_requests_total HTTP responses.",
            "# TYPE keel_http_requests_total counter",
            'keel_http_requests_total{status_class="2xx"} 1.0',
            "# HELP keel_http_request_duration_seconds Latency.",
            "# TYPE keel_http_request_duration_seconds histogram",
            'keel_http_request_duration_seconds_bucket{le="+Inf"} 1.0',
            "# HELP keel_push_deliveries_total Pushes.",
            "# TYPE keel_push_deliveries_total counter",
            "# HELP keel_celery_queue_length Waiting tasks.",
            "# TYPE keel_celery_queue_length gauge",
        ]
    )

    assert is_exported(name, *exported_families(text)) is exported
