"""Conformance tests for dataset readers and loggers, the two kinds a run only reads from or writes to.

Why: a run reads every record of a dataset reader before the first step and prepares it in the format
its algorithm declares (prompts, conversations, preference pairs); it hands every logger each step's
metrics and, at the end, closes it. A reader that returns something else, or records no format
accepts, or a logger that breaks on a step's metrics, fails the run at its start or end. Subclass:

    from reinforge.testing.conformance_data import DatasetReaderConformance, LoggerConformance

    class TestMyReader(DatasetReaderConformance):
        reader = staticmethod(my_reader)     # called as reader(options), or reader() without
        reader_options = MyReaderConfig(path="tests/data/small.jsonl")

    class TestMyLogger(LoggerConformance):
        logger_name = "my_logger"            # a registered logger, built as a run builds it
        logger_options = None                # its logger.logger_cfg entry

`reinforge plugins check NAME` runs them against an installed reader (one that needs no options) or logger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reinforge.core.registry import Registry


class DatasetReaderConformance:
    """Set `reader` (and `reader_options`) or override `read`."""

    reader: ClassVar[Any] = None
    reader_options: ClassVar[Any] = None

    def read(self) -> list[Any]:
        if self.reader is None:
            raise NotImplementedError("set reader on the test class, or override read()")
        return list(self.reader() if self.reader_options is None else self.reader(self.reader_options))

    def test_returns_records_as_mappings(self) -> None:
        records = self.read()
        assert records, "the reader returned no records"
        for i, record in enumerate(records):
            assert isinstance(record, Mapping) and all(isinstance(k, str) for k in record), f"record {i}: {record!r:.120}"

    def test_reads_the_same_records_twice(self) -> None:
        assert self.read() == self.read(), "two reads must give the same records (a seeded shuffle is fine)"

    def test_some_record_format_accepts_the_records(self, tiny_model_dir: Path) -> None:
        from transformers import AutoTokenizer

        from reinforge.core.errors import ReinforgeError
        from reinforge.core.model_config import ModelConfig
        from reinforge.core.records import RecordFormat
        from reinforge.core.run_config import DataConfig
        from reinforge.data.preparation import prepare_records

        records = [dict(r) for r in self.read()[:16]]
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        model = ModelConfig(model_name=str(tiny_model_dir), max_total_sequence_length=100_000)
        data = DataConfig(max_input_seq_length=100_000)
        why = {}
        for kind in ("prompts", "conversations", "preference_pairs"):
            try:
                items, _ = prepare_records(RecordFormat(kind=kind), records, tokenizer, data=data, model=model, source="the reader")
            except (ReinforgeError, KeyError, TypeError, ValueError) as exc:
                why[kind] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            assert len(items) == len(records)
            return
        pytest.fail(f"no record format accepts the records (GRPO: problem/prompt; SFT: messages; DPO: prompt/chosen/rejected): {why}")


class LoggerConformance:
    """Set `logger_name` (a registered logger) and `logger_options` (its `logger.logger_cfg` entry)."""

    logger_name: ClassVar[str | None] = None
    logger_options: ClassVar[Any] = None
    registry: ClassVar[Registry | None] = None

    @pytest.fixture
    def logger(self, tmp_path: Path) -> Any:
        from reinforge.core.run_config import LoggerConfig
        from reinforge.loggers import MultiLogger

        if self.logger_name is None:
            raise NotImplementedError("set logger_name on the test class")
        options = {} if self.logger_options is None else {self.logger_name: self.logger_options}
        config = LoggerConfig(loggers=(self.logger_name,), log_dir=str(tmp_path / "logs"), logger_cfg=options)
        built = MultiLogger.from_config(config, self.registry or Registry.create(), run_name="conformance", total_steps=2)
        assert len(built.loggers) == 1
        return built.loggers[0]

    def test_logs_a_run_and_closes(self, logger: Any) -> None:
        metrics = {"train/loss": 0.5, "train/reward_mean": 0.25, "timing/total": 1.5, "train/num_rollouts": 16.0}
        logger.log(metrics, 1)
        logger.log({**metrics, "val/accuracy": 0.5}, 2)
        # Optional methods: a logger may leave them out.
        if hasattr(logger, "log_samples"):
            logger.log_samples([{"problem": "What is 2 + 3?", "response": "5", "reward": 1.0}], 2)
        if hasattr(logger, "log_config"):
            logger.log_config({"algorithm": "grpo", "policy": {"model_name": "m"}})
        logger.close()

    def test_takes_non_finite_and_integer_values(self, logger: Any) -> None:
        """A run's metrics may hold NaN, inf or ints (`reinforge.loggers.values` converts them for each target)."""
        logger.log({"train/grad_norm": math.inf, "train/steps": 3, "train/nan": math.nan}, 1)
        logger.close()
