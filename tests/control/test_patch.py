"""The three patch formats, with cases modelled on upstream's strategic merge patch tests."""

from __future__ import annotations

import pytest

from control.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch


def pod(*containers: dict) -> dict:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": list(containers)}}


# -- RFC 7386 ------------------------------------------------------------------


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_does_not_mutate_the_target() -> None:
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"b": 2}})
    assert target == {"a": {"b": 1}}


# -- RFC 6902 ------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = {"foo": ["bar", "baz"], "obj": {"k": 1}}
    result = json_patch(
        doc,
        [
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "add", "path": "/foo/-", "value": "end"},
            {"op": "replace", "path": "/obj/k", "value": 2},
            {"op": "copy", "from": "/obj", "path": "/copied"},
            {"op": "move", "from": "/foo/0", "path": "/first"},
            {"op": "remove", "path": "/obj"},
            {"op": "test", "path": "/copied/k", "value": 2},
            {"op": "add", "path": "/a~1b", "value": "slash"},
        ],
    )
    assert result == {"foo": ["qux", "baz", "end"], "copied": {"k": 2}, "first": "bar", "a/b": "slash"}
    assert doc == {"foo": ["bar", "baz"], "obj": {"k": 1}}


@pytest.mark.parametrize(
    "ops, message",
    [
        ([{"op": "test", "path": "/a", "value": 2}], "test operation failed"),
        ([{"op": "remove", "path": "/missing"}], "not found"),
        ([{"op": "replace", "path": "/missing", "value": 1}], "not found"),
        ([{"op": "add", "path": "/list/5", "value": 1}], "out of range"),
        ([{"op": "frobnicate", "path": "/a"}], "unknown JSON patch operation"),
        ([{"op": "add", "path": "/a"}], "has no 'value'"),
        ({"op": "add"}, "must be an array"),
    ],
)
def test_json_patch_errors_name_the_problem(ops: object, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        json_patch({"a": 1, "list": []}, ops)


# -- strategic merge patch -----------------------------------------------------


def test_containers_merge_by_name_and_ports_by_container_port() -> None:
    original = pod(
        {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
        {"name": "b", "image": "b:1"},
    )
    patch = {
        "spec": {
            "containers": [
                {"name": "a", "image": "a:2", "ports": [{"containerPort": 443}]},
                {"name": "c", "image": "c:1"},
            ]
        }
    }
    result = strategic_merge_patch(original, patch, "Pod")
    assert result["spec"]["containers"] == [
        {"name": "a", "image": "a:2", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]},
        {"name": "b", "image": "b:1"},
        {"name": "c", "image": "c:1"},
    ]


def test_patch_delete_directive_removes_list_element() -> None:
    original = pod({"name": "a", "image": "a"}, {"name": "b", "image": "b"})
    result = strategic_merge_patch(original, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}, "Pod")
    assert result["spec"]["containers"] == [{"name": "b", "image": "b"}]


def test_patch_replace_directive_in_list_replaces_whole_list() -> None:
    original = pod({"name": "a", "image": "a"}, {"name": "b", "image": "b"})
    patch = {"spec": {"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]}}
    assert strategic_merge_patch(original, patch, "Pod")["spec"]["containers"] == [{"name": "z", "image": "z"}]


def test_patch_replace_directive_on_map_replaces_map() -> None:
    original = {"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}}
    patch = {"metadata": {"labels": {"c": "3", "$patch": "replace"}}}
    assert strategic_merge_patch(original, patch, "ConfigMap")["metadata"]["labels"] == {"c": "3"}


def test_patch_delete_directive_on_map_removes_it() -> None:
    original = {"metadata": {"name": "x"}, "spec": {"selector": {"a": "b"}, "type": "ClusterIP"}}
    result = strategic_merge_patch(original, {"spec": {"selector": {"$patch": "delete"}}}, "Service")
    assert result["spec"] == {"type": "ClusterIP"}


def test_null_deletes_field_and_unknown_lists_are_replaced() -> None:
    original = {"metadata": {"name": "x", "labels": {"a": "1", "tier": "fe"}}, "spec": {"args": ["x", "y"]}}
    result = strategic_merge_patch(original, {"metadata": {"labels": {"tier": None}}, "spec": {"args": ["z"]}}, "Pod")
    assert result["metadata"]["labels"] == {"a": "1"}
    assert result["spec"]["args"] == ["z"]


def test_service_ports_merge_by_port() -> None:
    original = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    patch = {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}
    assert strategic_merge_patch(original, patch, "Service")["spec"]["ports"] == [
        {"port": 80, "name": "http"},
        {"port": 443, "name": "https", "targetPort": 8443},
    ]


def test_env_volume_mounts_and_deployment_template_paths() -> None:
    original = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"mountPath": "/data", "name": "d"}],
                        }
                    ],
                    "volumes": [{"name": "d", "emptyDir": {}}],
                }
            }
        }
    }
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                            "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "e", "emptyDir": {}}],
                }
            }
        }
    }
    result = strategic_merge_patch(original, patch, "Deployment")["spec"]["template"]["spec"]
    assert result["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert result["containers"][0]["volumeMounts"] == [{"mountPath": "/data", "name": "d", "readOnly": True}]
    assert [v["name"] for v in result["volumes"]] == ["d", "e"]


def test_conditions_merge_by_type() -> None:
    original = {
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}
    }
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert strategic_merge_patch(original, patch, "Pod")["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]


def test_set_element_order_reorders_merged_list() -> None:
    original = pod({"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"})
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
            "containers": [{"name": "c", "image": "c2"}],
        }
    }
    result = strategic_merge_patch(original, patch, "Pod")
    assert [(c["name"], c["image"]) for c in result["spec"]["containers"]] == [("c", "c2"), ("a", "a"), ("b", "b")]


def test_set_element_order_keeps_server_only_elements_in_place() -> None:
    original = pod({"name": "a", "image": "a"}, {"name": "server", "image": "s"}, {"name": "b", "image": "b"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}
    names = [c["name"] for c in strategic_merge_patch(original, patch, "Pod")["spec"]["containers"]]
    assert names == ["b", "server", "a"]


def test_retain_keys_drops_fields_not_listed() -> None:
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(original, patch, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_primitive_list_merge_and_delete_from_primitive_list() -> None:
    original = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    merged = strategic_merge_patch(original, {"metadata": {"finalizers": ["b", "c"]}}, "Pod")
    assert merged["metadata"]["finalizers"] == ["a", "b", "c"]
    deleted = strategic_merge_patch(merged, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "c"]}}, "Pod")
    assert deleted["metadata"]["finalizers"] == ["b"]


def test_kubectl_apply_style_patch() -> None:
    """The §4.10 example: a label dropped from the manifest is nulled; live-only labels survive."""
    live = {"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe", "owner": "ops"}}}
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "labels": {"tier": None},
        }
    }
    result = strategic_merge_patch(live, patch, "Deployment")
    assert result["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in result["metadata"]["annotations"]


def test_directives_inside_new_values_are_not_stored() -> None:
    result = strategic_merge_patch(
        {}, {"spec": {"containers": [{"name": "a", "$patch": "merge", "image": "a"}]}}, "Pod"
    )
    assert result == {"spec": {"containers": [{"name": "a", "image": "a"}]}}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"spec": {"containers": [{"image": "x"}]}}, "lacks the merge key 'name'"),
        ({"spec": {"$patch": "explode"}}, "unknown \\$patch directive"),
        ({"spec": {"$frob": 1}}, "unknown directive"),
        ([1], "must be a JSON object"),
    ],
)
def test_strategic_errors_name_the_problem(patch: object, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        strategic_merge_patch(pod({"name": "a", "image": "a"}), patch, "Pod")
