"""`check_dataset_file` and `report_overlong`: what a data file or a prompt set can get wrong, named precisely."""

from __future__ import annotations

import logging

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.data.file_checks import check_dataset_file
from reinforge.data.prompts import report_overlong


def test_a_row_over_the_limit_names_its_line_and_a_row_at_the_limit_passes(tmp_path):
    path = tmp_path / "d.jsonl"
    row = '{"problem": "' + "x" * 20 + '"}'  # 35 bytes
    path.write_text(f'{{"problem": "a"}}\n{row}\n')
    check_dataset_file(path, max_row_bytes=len(row))
    with pytest.raises(ReinforgeError, match=r"line 2 of dataset file .* is longer than 34 bytes"):
        check_dataset_file(path, max_row_bytes=len(row) - 1)


def test_a_json_document_on_one_long_line_is_not_a_row(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"problem": "' + "x" * 100 + '", "answer": "1"}]')
    check_dataset_file(path, max_row_bytes=10)  # a .json file is one document: only .jsonl lines are rows


def test_windows_line_ends_blank_lines_and_a_byte_order_mark_are_fine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"problem": "a"}\r\n\r\n{"problem": "b"}\r\n')
    check_dataset_file(path, max_row_bytes=19)  # 16 bytes of JSON, plus the 3-byte mark on line 1


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", r"is empty \(no rows\)"),
        (b'{"a": 1}\n\x80\n', "line 2 of dataset file .* is not UTF-8 text \\(byte 0x80 at column 1\\)"),
        (b'{"a": 1}\n"just a string"\n', r"line 2 \(row 1, counting from 0\) .* is a JSON str, not an object"),
        (b'{"a": 1}\n\n{"a": \n', r"line 3 \(row 1, counting from 0\) .* is not valid JSON"),
    ],
)
def test_bad_jsonl_files(tmp_path, content, words):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(ReinforgeError, match=words):
        check_dataset_file(path)


def test_dropped_prompts_are_reported_and_too_many_is_an_error(caplog):
    stats = {"records": 40, "prompts": 11, "dropped_overlong": 29, "truncated_overlong": 0}
    with pytest.raises(ReinforgeError) as err:
        report_overlong(stats, split="training", limit="data.max_input_seq_length=36", max_dropped_share=0.5)
    assert str(err.value).startswith("29 of 40 prompts exceed data.max_input_seq_length=36 and were dropped (training set)")
    with caplog.at_level(logging.WARNING, logger="reinforge.data.prompts"):
        report_overlong(stats, split="training", limit="data.max_input_seq_length=36", max_dropped_share=29 / 40)
        report_overlong({"records": 8, "truncated_overlong": 3}, split="validation", limit="x=1", max_dropped_share=0.0)
        report_overlong({"records": 8, "dropped_overlong": 0}, split="validation", limit="x=1", max_dropped_share=0.0)
    assert [r.getMessage() for r in caplog.records] == [
        "29 of 40 prompts exceed data.max_input_seq_length=36 and were dropped (training set)",
        "3 of 8 prompts exceed x=1 and were truncated (validation set; they are rolled out but not trained on)",
    ]
