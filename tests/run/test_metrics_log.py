"""mtcli.run.metrics_log: the stopped record a pruner leaves, checked on reading and found by last_stop."""

import json

import pytest

from mtcli.core.errors import DataError
from mtcli.run.metrics_log import last_stop, read_metrics

STEP = {"type": "step", "step": 1, "epoch_progress": 0.5, "loss": {"a": 1.0}}


def _log(tmp_path, *records):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_last_stop_is_the_last_stopped_record_or_none(tmp_path):
    assert last_stop(read_metrics(_log(tmp_path, STEP))) is None
    records = read_metrics(_log(tmp_path, STEP, {"type": "stopped", "step": 1, "reason": "first"},
                                {"type": "stopped", "step": 2, "reason": "pruned after 64 examples a batch slot"}))
    assert last_stop(records) == {"step": 2, "reason": "pruned after 64 examples a batch slot"}


@pytest.mark.parametrize("record", [{"type": "stopped", "step": 2}, {"type": "stopped", "step": 2, "reason": 7},
                                    {"type": "stopped", "reason": "pruned"}])
def test_a_stopped_record_without_its_step_or_reason_is_damage_on_its_line(tmp_path, record):
    with pytest.raises(DataError, match=r"metrics.jsonl:2: a stopped record needs step and reason"):
        read_metrics(_log(tmp_path, STEP, record, STEP))
