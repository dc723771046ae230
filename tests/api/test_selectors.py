"""Label and field selectors behave as apimachinery's tests say they do."""

from __future__ import annotations

import pytest

from control.api.errors import ApiError
from control.api.selectors import (
    Requirement,
    format_selector,
    fields_match,
    from_label_selector,
    labels_to_selector,
    matches,
    parse_field_selector,
    parse_label_selector,
)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a!=b", {"a": "c"}, True),
        ("a!=b", {}, True),  # != matches objects lacking the key
        ("env in (prod,qa)", {"env": "qa"}, True),
        ("env in (prod,qa)", {"env": "dev"}, False),
        ("tier notin (fe)", {}, True),
        ("tier notin (fe)", {"tier": "fe"}, False),
        ("key", {"key": ""}, True),
        ("key", {}, False),
        ("!key", {}, True),
        ("!key", {"key": "x"}, False),
        ("x>1", {"x": "2"}, True),
        ("x>1", {"x": "1"}, False),
        ("x<5", {"x": "4"}, True),
        ("x<5", {}, False),
        ("a=b,c in (d)", {"a": "b", "c": "d"}, True),
        ("a=b,c in (d)", {"a": "b", "c": "e"}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(parse_label_selector(selector), labels) is expected


@pytest.mark.parametrize("bad", ["x=a||y=b", "x==a==b", "!x=a", "x<a", "a=b,", "env in (a b"])
def test_invalid_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector(bad)
    assert err.value.code == 400
    assert err.value.reason == "BadRequest"


def test_structured_selector_and_service_selector() -> None:
    spec = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    selector = from_label_selector(spec)
    assert matches(selector, {"app": "web", "tier": "fe"})
    assert not matches(selector, {"app": "web", "tier": "fe", "canary": "1"})
    assert not matches(selector, {"app": "web"})
    assert matches(labels_to_selector({"app": "web"}), {"app": "web", "x": "y"})
    with pytest.raises(ApiError):
        from_label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_structured_selector_formats_as_kubernetes_and_parses_back() -> None:
    structured = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "canary", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    text = format_selector(from_label_selector(structured))
    assert text == "app=web,canary,env notin (dev),!legacy,tier in (back,front)"
    assert parse_label_selector(text) == (
        Requirement("app", "=", ("web",)),
        Requirement("canary", "exists"),
        Requirement("env", "notin", ("dev",)),
        Requirement("legacy", "!"),
        Requirement("tier", "in", ("back", "front")),
    )


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "web-0", "namespace": "default"}, "spec": {"nodeName": "worker1"}}
    assert fields_match(parse_field_selector("spec.nodeName=worker1", "pods"), pod)
    assert not fields_match(parse_field_selector("spec.nodeName!=worker1", "pods"), pod)
    assert fields_match(parse_field_selector("metadata.name==web-0,metadata.namespace=default", "pods"), pod)
    assert fields_match(parse_field_selector("spec.nodeName=", "pods"), {"metadata": {"name": "x"}})
    with pytest.raises(ApiError) as err:
        parse_field_selector("spec.foo=bar", "pods")
    assert err.value.code == 400
    assert "field label not supported: spec.foo" in str(err.value)
