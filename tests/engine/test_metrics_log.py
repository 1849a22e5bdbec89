import json

from atrous.engine.metrics_log import LOG_NAME, rewind_log


def test_rewind_drops_steps_after_the_checkpoint_and_half_lines(tmp_path):
    records = [{"kind": "train", "step": s} for s in (2, 4, 6)] + [{"kind": "val", "step": 4, "miou": 0.5}]
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"kind": "train", "st'  # killed mid-line
    (tmp_path / LOG_NAME).write_text(text)
    kept = rewind_log(tmp_path, 4)
    assert kept == [records[0], records[1], records[3]]
    assert [json.loads(x) for x in (tmp_path / LOG_NAME).read_text().splitlines()] == kept
    assert rewind_log(tmp_path / "none", 4) == []


def test_a_log_with_nothing_to_drop_is_left_as_it_is(tmp_path):
    path = tmp_path / LOG_NAME
    path.write_text('{"kind": "train", "step": 1}\n')
    before = path.stat().st_mtime_ns
    assert rewind_log(tmp_path, 5) == [{"kind": "train", "step": 1}]
    assert path.stat().st_mtime_ns == before
