import pytest

import loramem
from loramem import Document, Fact
from loramem.types import item_from_dict

# The public surface of the core package, pinned: adding or removing a name is a deliberate change here.
EXPECTED_ALL = [
    "Answer",
    "BaseModelMismatchError",
    "CapacityModel",
    "ConsolidationError",
    "ConsolidationPolicy",
    "Consolidator",
    "CorruptModuleError",
    "DeviceError",
    "Document",
    "Example",
    "Fact",
    "KnowledgeMemory",
    "LocalExecutor",
    "LoraSpec",
    "ModelConfig",
    "ModuleInfo",
    "ModuleStore",
    "PendingChangedError",
    "PendingItem",
    "PlanConfig",
    "RayExecutor",
    "ReadConfig",
    "Reader",
    "Recollection",
    "StoreBusyError",
    "StoreError",
    "StoreSchemaError",
    "SynthConfig",
    "TrainConfig",
    "WriteReport",
    "__version__",
    "build_reader",
    "calibrate",
]


def test_all_is_pinned_sorted_and_importable():
    assert loramem.__all__ == EXPECTED_ALL
    assert sorted(EXPECTED_ALL) == EXPECTED_ALL
    assert sorted(dir(loramem)) == EXPECTED_ALL
    for name in loramem.__all__:
        assert getattr(loramem, name) is not None


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, loramem; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_ids_are_stable_and_content_based():
    a = Fact("Ada", "birth year", "1815", metadata={"source": "x"})
    b = Fact("Ada", "birth year", "1815", metadata={"source": "y"})
    assert a.id == b.id and a.id.startswith("fact-")
    assert Fact("Ada", "birth year", "1816").id != a.id
    assert Document("hello world").id == Document("hello world").id
    assert Document("hello world", title="t").id != Document("hello world").id


def test_canonical_question_and_templates():
    f = Fact("Dr. Alma Vance", "phone number", "555-201-7733", question="What is the phone number of {subject}?")
    assert f.canonical_question == "What is the phone number of Dr. Alma Vance?"
    assert f.canonical_answer == "555-201-7733"
    assert Fact("Ada", "birth year", "1815").canonical_question == "What is the birth year of Ada?"


@pytest.mark.parametrize("bad", [{"subject": "", "relation": "r", "object": "o"}, {"text": "   "}])
def test_empty_text_is_refused(bad):
    with pytest.raises(ValueError, match="non-empty"):
        item_from_dict(bad)


def test_item_from_dict_errors():
    with pytest.raises(TypeError, match="expected a JSON object"):
        item_from_dict([1, 2])
    with pytest.raises(ValueError, match="missing \\['object'\\]"):
        item_from_dict({"subject": "a", "relation": "b"})
    assert isinstance(item_from_dict({"text": "x", "title": "t"}), Document)
    f = item_from_dict({"subject": "a", "relation": "b", "object": "c"})
    assert item_from_dict(f.to_dict()) == f
