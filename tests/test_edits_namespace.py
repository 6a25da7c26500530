"""forget, update and items without a namespace: an item id is a content id the store knows, so the memory finds
its namespace, and says which namespaces when one id sits in several (the "default" namespace is no trap)."""

from __future__ import annotations

import pytest

from loramem import Fact


def test_edits_find_the_namespace_of_an_item(mem, facts):
    mem.write(facts[:2], namespace="alpha")
    mem.write(facts[0], namespace="beta")
    assert "default" not in mem.namespaces()

    # items(): every namespace's items, each once; items(ns) stays per namespace.
    assert {it.id for it in mem.items()} == {facts[0].id, facts[1].id}
    assert [it.id for it in mem.items("beta")] == [facts[0].id]

    # One namespace keeps facts[1]: forget finds it (it raised KeyError for namespace 'default' before).
    report = mem.forget(facts[1].id, verify=False)
    assert report is not None and report.namespace == "alpha"
    assert [it.id for it in mem.items("alpha")] == [facts[0].id]

    # facts[0] sits in two namespaces: the error names both, and nothing changes.
    versions = {m.module_id: m.version for m in mem.ls()}
    with pytest.raises(ValueError, match=r"\['alpha', 'beta'\]"):
        mem.forget(facts[0].id)
    with pytest.raises(KeyError, match="no namespace"):
        mem.forget("fact-000000000000")
    with pytest.raises(KeyError, match="is a namespace"):
        mem.forget("alpha")
    assert {m.module_id: m.version for m in mem.ls()} == versions

    # update: the namespace holding the same key is found; a key in two namespaces is an error naming them.
    with pytest.raises(ValueError, match=r"\['alpha', 'beta'\]"):
        mem.update(Fact(facts[0].subject, facts[0].relation, "teal"))
    with pytest.raises(KeyError, match="no namespace holds"):
        mem.update(Fact("Nobody", "favourite colour", "teal"))
    mem.write(facts[2], namespace="beta")
    new = Fact(facts[2].subject, facts[2].relation, "teal")
    report = mem.update(new, verify=False)
    assert report.namespace == "beta"
    assert {it.id for it in mem.items("beta")} == {facts[0].id, new.id}
    assert mem.ask(new.canonical_question, namespace="beta").text == "teal"
