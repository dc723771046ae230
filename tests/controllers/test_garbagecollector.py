"""Garbage collection decision: delete only when every owner is gone, else drop dangling references."""

from __future__ import annotations

from control.controllers.garbagecollector import dangling

A = {"kind": "ReplicaSet", "name": "a", "uid": "uid-a"}
B = {"kind": "ReplicaSet", "name": "b", "uid": "uid-b"}


def test_all_owners_gone_means_delete():
    assert dangling([A], {"uid-a": False}) == (True, [])
    assert dangling([A, B], {"uid-a": False, "uid-b": False}) == (True, [])


def test_some_owners_left_keeps_the_object_and_its_live_references():
    assert dangling([A, B], {"uid-a": False, "uid-b": True}) == (False, [B])
    assert dangling([A], {"uid-a": True}) == (False, [A])


def test_objects_without_owners_are_never_collected():
    assert dangling([], {}) == (False, [])
