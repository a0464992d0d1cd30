"""Bad inputs through the Python API: `rf.Trainer(train_data=...)` in shapes people try first.

A dict of columns (what `datasets.Dataset.from_dict` takes) used to be iterated as its keys and fail
with a ValueError deep in compose.py; it is accepted now, and shapes that cannot be read are refused
naming `train_data` and the shapes accepted. Rows whose `problem` / `answer` mix types are warned
about at start, with the counts.
"""

from __future__ import annotations

import pytest

import reinforge as rf
from reinforge.core.errors import ReinforgeError
from tests.core.test_trainer_loop import FakeAlgorithm, FakePolicy


def trainer(model_dir, train_data) -> rf.Trainer:
    return rf.Trainer(
        algorithm=FakeAlgorithm(),
        policy=rf.backends.Training("fake", str(model_dir), instance=FakePolicy()),
        train_data=train_data,
        loggers=[],
    )


def test_a_dict_of_columns_is_read_as_rows(tiny_model_dir):
    built = trainer(tiny_model_dir, {"id": [7, 8, 9], "problem": ["a", "b", "c"]})
    assert sorted(built.run.train_prompts) == [7, 8, 9]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"id": [1, 2, 3], "problem": ["a", "b"]}, "train_data is a dict of columns of different lengths ('id': 3, 'problem': 2)"),
        ({"id": 5}, "train_data is a dict, read as columns, but its 'id' is a int, not a list"),
        ([1, 2, 3], "train_data row 0 is a int, not a dict"),
        ("problems.jsonl", "train_data must be a list of dicts (one per row), a dict of equal-length columns"),
    ],
    ids=["unequal-columns", "scalar-column", "list-of-ints", "a-string"],
)
def test_shapes_that_cannot_be_read_are_refused_naming_train_data(tiny_model_dir, data, words):
    with pytest.raises(ReinforgeError) as refused:
        trainer(tiny_model_dir, data)
    assert words in str(refused.value)


def test_columns_that_mix_types_are_warned_about_with_the_counts(tiny_model_dir, capsys):
    rows = [{"id": i, "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)]
    rows[3]["problem"] = 7
    rows[5]["answer"] = [6]
    rows[6]["answer"] = [7]
    trainer(tiny_model_dir, rows)
    err = " ".join(capsys.readouterr().err.split())
    assert "column 'problem' of the training data (the data passed in) mixes types: 7 str, 1 int (first str in row 0, int in row 3)" in err
    assert "column 'answer' of the training data (the data passed in) mixes types: 6 str, 2 list" in err
